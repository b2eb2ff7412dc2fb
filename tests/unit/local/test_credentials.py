"""The engine's key: where it comes from, how it is kept, and which job keys it accepts."""

from __future__ import annotations

import stat

import pytest

from airflow_sm_provider.local import credentials
from airflow_sm_provider.local.auth import SigningKey
from airflow_sm_provider.local.credentials import ACCESS_KEY_ENV, SECRET_KEY_ENV, EngineCredentials, KeyRing


def test_generated_once_per_data_dir_readable_by_the_owner_only(tmp_path):
    first = credentials.resolve(tmp_path, environ={})
    path = tmp_path / credentials.FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert credentials.resolve(tmp_path, environ={}) == first  # kept across restarts
    (tmp_path / "other").mkdir()
    assert credentials.resolve(tmp_path / "other", environ={}) != first  # another data dir, another key
    assert len(first.access_key_id) == 20 and first.access_key_id.startswith("LOCAL")
    assert first.secret_access_key not in repr(first)


def test_environment_then_explicit_file_take_precedence(tmp_path):
    env = {ACCESS_KEY_ENV: "LOCALFIXED", SECRET_KEY_ENV: "fixed-secret"}
    assert credentials.resolve(tmp_path, environ=env) == EngineCredentials("LOCALFIXED", "fixed-secret")
    assert not (tmp_path / credentials.FILE_NAME).exists()
    given = tmp_path / "given.ini"
    credentials.write_file(given, EngineCredentials("LOCALFROMFILE", "file-secret"))
    assert credentials.resolve(tmp_path, environ=env, credentials_file=given).access_key_id == "LOCALFROMFILE"


@pytest.mark.parametrize("present", [ACCESS_KEY_ENV, SECRET_KEY_ENV])
def test_half_an_environment_key_is_an_error_naming_the_other(tmp_path, present):
    missing = SECRET_KEY_ENV if present == ACCESS_KEY_ENV else ACCESS_KEY_ENV
    with pytest.raises(ValueError, match=missing):
        credentials.resolve(tmp_path, environ={present: "x"})


def test_a_file_without_the_keys_is_an_error(tmp_path):
    path = tmp_path / "bad.ini"
    path.write_text("[default]\naws_access_key_id = x\n")
    with pytest.raises(ValueError, match="aws_secret_access_key"):
        credentials.read_file(path)


def test_key_ring_accepts_a_jobs_key_while_the_job_runs():
    own = EngineCredentials("LOCALOWN", "own-secret")
    running = {"job": {"AccessKeyId": "ASIAJOB", "SecretAccessKey": "job-secret", "Token": "tok"}}
    ring = KeyRing(own, lambda job, token: running.get(job) if token == "t" else None)
    assert ring.key("LOCALOWN") == SigningKey("own-secret")
    assert ring.key("ASIAJOB") is None  # not handed out yet
    assert ring.hand_out("job", "wrong") is None
    assert ring.hand_out("job", "t")["AccessKeyId"] == "ASIAJOB"
    assert ring.key("ASIAJOB") == SigningKey("job-secret", "tok")
    running.clear()  # the job ended
    assert ring.key("ASIAJOB") is None
