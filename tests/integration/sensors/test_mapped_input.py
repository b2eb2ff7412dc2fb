"""JobSensor on a mapped task's output under real Airflow (``dag.test()``) and the local engine."""

from __future__ import annotations

import runpy
import uuid

import pytest
from jobs_support import training_config, upload_script

pytestmark = pytest.mark.integration


def test_mapped_input_is_read_without_a_missing_xcom(airflow_db, aws_env, engine, s3_bucket, capfd):
    """Reading a mapped upstream's XComs asks for no index past its length.

    Iterating Airflow 3's lazy XCom sequence asks for items one by one until one is missing,
    and that miss is logged as ``[error] XCom not found ... offset=N`` in a successful run.
    """
    code = upload_script(engine.client("s3"), s3_bucket, "print('done')")
    configs = [training_config(s3_bucket, code, f"mapped-{i}") for i in range(2)]
    dag_id = f"itest_mapped_{uuid.uuid4().hex[:8]}"
    path = airflow_db / "dags" / f"{dag_id}.py"
    path.write_text(
        "from datetime import datetime\n"
        "from airflow_sm_provider._compat import DAG\n"
        "from airflow_sm_provider.operators.jobs import TrainingJobOperator\n"
        "from airflow_sm_provider.sensors.jobs import JobSensor\n"
        f"with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1)) as dag:\n"
        "    train = TrainingJobOperator.partial(\n"
        "        task_id='train', aws_conn_id=None, wait_for_completion=False\n"
        f"    ).expand(config={configs!r})\n"
        "    JobSensor(task_id='wait', jobs=train.output, aws_conn_id=None, poke_interval=0.2,\n"
        "              deferrable=False)\n"
    )
    dag_run = runpy.run_path(str(path))["dag"].test()
    states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert states == {("train", 0): "success", ("train", 1): "success", ("wait", -1): "success"}
    wait = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "wait")
    assert sorted(job["name"][:8] for job in wait.xcom_pull(task_ids="wait")) == ["mapped-0", "mapped-1"]
    out, err = capfd.readouterr()
    misses = [line for line in (out + err).splitlines() if "XCom not found" in line and "offset=" in line]
    assert misses == []
