"""The Airflow UI side of the provider: the report viewer plugin, its extra link, ``airflow-sm ui``.

Nothing here is imported at DAG-parse time except :mod:`airflow_sm_provider.ui.links`.
"""
