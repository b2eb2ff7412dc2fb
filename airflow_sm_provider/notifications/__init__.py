"""Failure notifications: which SageMaker jobs failed, told through SNS and Slack.

* :mod:`.failures`: the exception the operators and ``JobSensor`` raise when jobs end without
  success; it carries the failed jobs (name, kind, status, reason, console link) for
  ``on_failure_callback``.
* :mod:`.message`: the message itself (pure): DAG, run, task, each failed job; bounded in size.
* :mod:`.notifier`: ``SageMakerJobsNotifier``, an Airflow notifier that sends it to an SNS
  topic and/or a Slack incoming webhook.
"""
