"""Which Host headers name the engine, and which addresses are wildcards."""

# ruff: noqa: S104 (wildcard addresses are the subject)

from __future__ import annotations

import pytest

from airflow_sm_provider.local.gate import HostRule, host_name, is_wildcard


@pytest.mark.parametrize(
    ("host", "wildcard"),
    [
        ("0", True),
        ("0.0.0.0", True),
        ("::", True),
        ("0.0", True),
        ("127.0.0.1", False),
        ("localhost", False),
        ("::1", False),
    ],
)
def test_is_wildcard(host, wildcard):
    assert is_wildcard(host) is wildcard


def test_host_name_drops_port_and_brackets():
    assert [host_name(h) for h in ("LocalHost:80", "[::1]:4566", "[::1]", "name")] == [
        "localhost",
        "::1",
        "::1",
        "name",
    ]


@pytest.mark.parametrize(
    ("bound", "allowed", "host", "served"),
    [
        ("127.0.0.1", (), "127.0.0.1:4566", True),
        ("127.0.0.1", (), "localhost:9999", True),  # the port is not checked (Docker port mappings)
        ("127.0.0.1", (), "[::1]:4566", True),
        ("127.0.0.1", (), "bucket.localhost:4566", True),  # S3 virtual-host style
        ("127.0.0.1", (), "evil.example:4566", False),  # DNS rebinding
        ("127.0.0.1", (), "localhost.evil.example:4566", False),
        ("127.0.0.1", (), "", False),
        ("127.0.0.1", (), "192.168.1.5:4566", False),
        ("127.0.0.1", ("sagemaker-local",), "sagemaker-local:4566", True),
        ("127.0.0.1", ("sagemaker-local",), "bucket.sagemaker-local:4566", True),
        ("0.0.0.0", (), "192.168.1.5:4566", True),  # an address literal cannot be rebound
        ("0.0.0.0", (), "my-laptop:4566", False),
        ("192.168.1.5", (), "192.168.1.5:4566", True),
        ("my-laptop", (), "my-laptop:4566", True),
    ],
)
def test_host_rule(bound, allowed, host, served):
    assert HostRule(bound, allowed).allows(host) is served
