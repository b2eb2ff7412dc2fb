"""Pure metric logic: log-line matching bounded in time, the tidy per-step series, health rules.

No AWS or Airflow imports here: hooks fetch the raw material, this package turns it into
tables and findings, so it is fast to test and the local engine can reuse the matching.
"""
