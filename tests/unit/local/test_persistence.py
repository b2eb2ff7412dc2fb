"""The pure parts of the engine's mirror: where an S3 request points, and a restored body's reader."""

from __future__ import annotations

import io

import pytest

from airflow_sm_provider.local.moto_state import BodyFile
from airflow_sm_provider.local.persistence import _s3_targets


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("127.0.0.1:4566", "/bucket/a/b.txt", [("bucket", "a/b.txt")]),
        ("localhost:4566", "/bucket", [("bucket", "")]),
        ("[::1]:4566", "/bucket/k", [("bucket", "k")]),
        # Virtual-host style: both readings are tried; the one naming nothing changes nothing.
        ("bucket.localhost:4566", "/a/b.txt", [("a", "b.txt"), ("bucket", "a/b.txt")]),
        ("127.0.0.1", "/", []),
    ],
)
def test_s3_targets_reads_path_and_virtual_host_style(host, path, expected):
    assert _s3_targets({"HTTP_HOST": host, "PATH_INFO": path}) == expected


def test_s3_targets_decodes_the_wsgi_path_as_utf8():
    raw = "/bucket/é/../x".encode().decode("latin-1")  # how a WSGI server hands over the path
    assert _s3_targets({"HTTP_HOST": "127.0.0.1", "PATH_INFO": raw}) == [("bucket", "é/../x")]


def test_body_file_reads_like_a_file_and_close_keeps_it(tmp_path):
    path = tmp_path / "body"
    path.write_bytes(b"0123456789")
    body = BodyFile(path)
    assert body.read(4) == b"0123"
    assert body.read() == b"456789"
    assert body.seek(-3, io.SEEK_END) == 7 and body.read() == b"789"
    body.seek(2)
    assert (body.tell(), body.read(3)) == (2, b"234")
    with pytest.raises(io.UnsupportedOperation):
        body.write(b"x")
    body.close()
    assert path.read_bytes() == b"0123456789"  # the mirror owns the file, not moto
