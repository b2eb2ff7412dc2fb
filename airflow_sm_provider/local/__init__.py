"""The local SageMaker engine: the SageMaker API on 127.0.0.1, running jobs as subprocesses.

``LocalEngine`` is the whole public surface; ``airflow-sm local up`` runs one in the foreground.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_sm_provider.local.engine import LocalEngine

__all__ = ["LocalEngine"]


def __getattr__(name: str) -> object:
    # Lazy: importing a submodule (the store, the lifecycle) should not load moto and werkzeug.
    if name == "LocalEngine":
        from airflow_sm_provider.local.engine import LocalEngine

        return LocalEngine
    raise AttributeError(name)
