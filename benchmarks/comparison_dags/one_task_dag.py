"""The floor of the DAG-parse benchmark: a DAG of one ``@task``, nothing but Airflow's own parts.

What any DAG file pays over ``import airflow`` (the DAG class, the task decorator, a timetable),
so the template DAG's figure can be read as this floor plus the provider's share.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, task

with DAG(dag_id="one_task", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def only() -> None:
        """Does nothing: the DAG exists to be parsed."""

    only()
