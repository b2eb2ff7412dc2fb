"""The ``slow`` marker: builds that resolve against PyPI and install into fresh virtualenvs (minutes)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: resolves or installs from PyPI into fresh environments (minutes)"
    )
