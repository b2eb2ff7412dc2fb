from __future__ import annotations

from airflow_sm_provider.local.context import EngineContext
from airflow_sm_provider.local.store import Store


def test_sdk_config_path_writes_the_telemetry_opt_out_once(tmp_path):
    ctx = EngineContext(store=Store(), data_dir=tmp_path / "data")
    path = ctx.sdk_config_path()
    assert path.parent == tmp_path / "data" and "TelemetryOptOut: true" in path.read_text()
    path.write_text(path.read_text() + "# kept\n")
    assert ctx.sdk_config_path() == path and path.read_text().endswith("# kept\n")
