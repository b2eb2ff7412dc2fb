"""The main job's own safety rules: it never deletes a folder it did not write."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_sm_provider.demo import run_demo


def test_refuses_a_non_empty_folder_that_is_not_a_demo_output(tmp_path: Path) -> None:
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    with pytest.raises(SystemExit, match="not empty"):
        run_demo(tmp_path, tmp_path / "dags")
    assert precious.read_text() == "keep me"
