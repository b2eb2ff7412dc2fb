"""Names and tags of tracked runs: the SDK's rules, checked before any call.

The SageMaker SDK's ``Run`` is stricter than the API: it lower-cases the experiment and run
names, refuses either one over 59 characters, and names the run's record (a trial component)
``{experiment}-{run}``; ``BatchPutMetrics`` accepts only lower-case trial component names. So
the names are lower-cased here, where the user can see them (XCom, logs), and checked against
the API's entity-name pattern and the SDK's length, with the field and the rule in the error.

A run's name is derived like a job's (``naming.job_name``): a readable prefix (the job's own,
or the ``run_name`` given) and a hash of the task's identity, so every try of one task
instance continues the same run. The runs of one DAG run are found by their identity tags.

Pure: no AWS or Airflow imports.
"""

from __future__ import annotations

import re

from airflow_sm_provider.errors import ConfigValidationError
from airflow_sm_provider.naming import HASH_LENGTH, JobIdentity, job_name, sanitize_tag_value, tag_key

#: The SDK's limit on experiment and run names: half its 120-character backend limit, less one.
MAX_NAME_LENGTH = 59
#: The longest ``run_name`` prefix given by the user: room for "-" and the identity hash.
MAX_RUN_PREFIX_LENGTH = MAX_NAME_LENGTH - 1 - HASH_LENGTH
#: ExperimentEntityName (botocore), on the lower-cased name BatchPutMetrics requires.
NAME_PATTERN = re.compile(r"[a-z0-9](-*[a-z0-9])*")
#: Tag the SDK puts on the records it creates for a ``Run`` (not on a job's own components).
RUN_SOURCE_TAG = ("sagemaker:trial-component-source", "run")
#: Identity parts that make the runs of one DAG run a set.
DAG_RUN_TAG_PARTS = ("namespace", "dag-id", "run-id")


def _check(field: str, value: object, max_length: int) -> str:
    """``value`` lower-cased; ``ConfigValidationError`` naming ``field`` and the rule broken."""
    rule = (
        f"must be 1 to {max_length} characters: letters, digits and hyphens, starting and ending "
        "with a letter or digit (the SageMaker SDK's Run lower-cases it)"
    )
    if not isinstance(value, str):
        raise ConfigValidationError("training", [(field, f"must be a string, not {type(value).__name__}")])
    name = value.lower()
    if len(name) > max_length:
        raise ConfigValidationError("training", [(field, f"{rule}; got {len(name)} characters")])
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigValidationError("training", [(field, f"{rule}; got {value!r}")])
    return name


def experiment_name(value: object, field: str = "experiment") -> str:
    """The experiment's name as the SDK stores it (lower case), after checking the rules."""
    return _check(field, value, MAX_NAME_LENGTH)


def check_run_prefix(value: object, field: str = "run_name") -> str:
    """A user's ``run_name`` prefix, lower-cased, with room left for the identity hash."""
    return _check(field, value, MAX_RUN_PREFIX_LENGTH)


def run_name(prefix: str, identity: JobIdentity) -> str:
    """``<prefix>-<hash of the identity>``, lower case, at most 59 characters.

    The same for every try of one task instance, so a retry continues the run. A prefix that
    is not already a valid name (a job's readable prefix may hold upper case) is reduced to
    the name alphabet as job names are.
    """
    return job_name(prefix, identity, max_length=MAX_NAME_LENGTH).lower()


def record_name(experiment: str, run: str) -> str:
    """The name of the run's trial component, as the SDK's ``Run`` makes it."""
    return f"{experiment}-{run}".lower()


def dag_run_tags(namespace: str, dag_id: str, run_id: str) -> dict[str, str]:
    """The identity tags shared by every run of one DAG run (values as the tags hold them)."""
    values = dict(zip(DAG_RUN_TAG_PARTS, (namespace, dag_id, run_id), strict=True))
    return {tag_key(part): sanitize_tag_value(value) for part, value in values.items()}
