"""Airflow loads this file from its plugins folder; the plugin is in the installed package."""

from airflow_sm_provider.ui.plugin import SageMakerReportsPlugin

__all__ = ["SageMakerReportsPlugin"]
