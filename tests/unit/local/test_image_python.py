"""Images and their Python: the known-image table, the --runtime option, and the vermin check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from airflow_sm_provider.local.runtimes import (
    Runtime,
    describe_runtimes,
    image_python,
    interpreter_version,
    newer_features,
    parse_runtime_options,
    python_notes,
)

SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
HERE = sys.version_info[:2]


@pytest.mark.parametrize(
    ("image", "python"),
    [
        (SKLEARN, (3, 9)),
        ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1", (3, 9)),
        ("sagemaker-scikit-learn:1.0-1-cpu-py3", (3, 7)),
        ("sagemaker-scikit-learn:1.4-2-cpu-py3", (3, 10)),
        (
            "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311-ubuntu20.04-sagemaker",
            (3, 11),
        ),
        ("sagemaker-scikit-learn:1.2-10-cpu-py3", None),  # not 1.2-1
        ("my/own:latest", None),
    ],
)
def test_image_python_from_the_tag_or_the_known_table(image, python):
    assert image_python(image) == python


def test_runtime_options_parse_in_order_and_name_a_bad_one(tmp_path):
    table = parse_runtime_options([f"*torch*={sys.executable}", f"*={sys.executable}"])
    assert list(table) == ["*torch*", "*"] and table["*"] == Runtime(python=sys.executable)
    with pytest.raises(ValueError, match="expected IMAGE_GLOB=PYTHON"):
        parse_runtime_options(["*torch*"])
    with pytest.raises(ValueError, match="is not an executable file"):
        parse_runtime_options([f"*={tmp_path / 'python'}"])


def test_describe_runtimes_names_each_pattern_and_the_default():
    lines = describe_runtimes({"*torch*": sys.executable})
    version = f"Python {HERE[0]}.{HERE[1]}"
    assert lines == [
        f"*torch* -> {sys.executable} ({version})",
        f"any other image -> {sys.executable} ({version})",
    ]
    assert interpreter_version("/no/such/python") is None


def test_newer_features_lists_what_the_target_python_lacks(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import sys\nmatch sys.argv:\n    case _:\n        pass\nprint('a'.removeprefix('b'))\n"
    )
    assert newer_features(script, (3, 9)) == ["line 2: pattern matching requires Python 3.10"]
    assert newer_features(script, (3, 8))[-1] == "line 5: 'str.removeprefix' member requires Python 3.9"
    assert newer_features(script, (3, 10)) == []
    script.write_text("def f(:\n    pass\n")
    assert newer_features(script, (3, 9))[0].startswith("line 1: invalid syntax")


def test_python_notes_say_when_the_interpreter_differs_and_warn_on_newer_features(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("pairs = list(zip([1], [2], strict=True))\n")
    notes = python_notes(SKLEARN, Runtime(), script)
    if HERE != (3, 9):
        assert notes[0].startswith(f"[local engine] image {SKLEARN} runs Python 3.9; this job runs with")
    assert notes[-1] == (
        "[local engine] warning: train.py line 1: 'zip(strict)' requires Python 3.10; "
        "the image runs Python 3.9, so it would fail in the real container"
    )
    assert python_notes("my/own:latest", Runtime(), script) == []  # no known Python: nothing to say


def test_python_notes_are_quiet_when_the_runtime_is_the_images_python(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("print('ok')\n")
    image = f"pytorch-training:2.3.0-cpu-py3{HERE[1]}"
    assert python_notes(image, Runtime(), script) == []
    assert python_notes(image, Runtime(), Path(tmp_path / "missing.py")) == []
