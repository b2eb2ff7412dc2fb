"""Checks a job config before any AWS call, so a bad config creates nothing.

Two layers. The rules SageMaker enforces beyond the API's shapes (spot and MaxWait, role ARNs,
S3 URIs, metric regexes with a capture group, processing paths under ``/opt/ml/processing``,
reserved tag prefixes, the identity suffix's room in the job name) are written by hand from
SageMaker's documentation. The shapes themselves (unknown fields at any depth, types, required
members, enum values, length and value bounds, ``MetricDefinitions`` at most 40) come from
botocore's SageMaker service model (``validation_model.model_problems``), so a new enum value or field
needs no edit here. The model is loaded on first use, at task execution, never at DAG parse
(megabytes of JSON, ~0.5 s). An instance type the installed botocore does not know is a
warning, not an error: MWAA pins an older botocore than the newest instance types, and
SageMaker, not the client, decides.

Every problem names its field in the config
(``config.InputDataConfig[0].DataSource.S3DataSource.S3Uri``) and the rule it breaks; all
problems are reported at once. Pure: no Airflow; botocore's model loads inside a function.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_sm_provider.errors import ConfigValidationError
from airflow_sm_provider.job_kinds import KINDS, JobKind
from airflow_sm_provider.naming import NAME_PATTERN, TAG_PREFIX, JobIdentity, identity_tags
from airflow_sm_provider.validation_model import model_problems

# SageMaker's own limits: training jobs may run 28 days, processing jobs 9 days (777,600 s).
MAX_RUNTIME_SECONDS = {JobKind.TRAINING: 28 * 24 * 3600, JobKind.PROCESSING: 777_600}
# A training job may wait 30 minutes to 28 days for capacity (MaxPendingTimeInSeconds).
PENDING_SECONDS = (1800, 28 * 24 * 3600)
# Environment: at most 100 variables; key and value length per kind.
MAX_ENVIRONMENT = 100
ENVIRONMENT_LENGTH = {JobKind.TRAINING: 512, JobKind.PROCESSING: 256}
# HyperParameters: at most 100, keys up to 256 characters, values up to 2,500.
MAX_HYPERPARAMETERS = 100
HYPERPARAMETER_LENGTHS = (256, 2500)
# SageMaker takes 50 tags per job; the hook adds the identity tags to the user's.
MAX_TAGS = 50
MAX_USER_TAGS = MAX_TAGS - len(identity_tags(JobIdentity("", "", "", ""), ""))

# Fields that Jinja renders as strings and the API wants as integers (the Amazon provider's
# ``integer_fields``, plus the ones it misses). Paths walk into every element of a list.
INTEGER_FIELDS: dict[JobKind, tuple[tuple[str, ...], ...]] = {
    JobKind.TRAINING: (
        ("ResourceConfig", "InstanceCount"),
        ("ResourceConfig", "VolumeSizeInGB"),
        ("ResourceConfig", "KeepAlivePeriodInSeconds"),
        ("ResourceConfig", "InstanceGroups", "InstanceCount"),
        ("StoppingCondition", "MaxRuntimeInSeconds"),
        ("StoppingCondition", "MaxWaitTimeInSeconds"),
        ("StoppingCondition", "MaxPendingTimeInSeconds"),
        ("RetryStrategy", "MaximumRetryAttempts"),
    ),
    JobKind.PROCESSING: (
        ("ProcessingResources", "ClusterConfig", "InstanceCount"),
        ("ProcessingResources", "ClusterConfig", "VolumeSizeInGB"),
        ("StoppingCondition", "MaxRuntimeInSeconds"),
    ),
}

_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-/]+")
_INSTANCE_TYPE = re.compile(r"ml\.[a-z0-9-]+\.[a-z0-9-]+")
_BUCKET = re.compile(r"(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9.\-_]{1,64}")
_INTEGER_TEXT = re.compile(r"\s*[+-]?\d+\s*")
_ENVIRONMENT_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
#: Where a processing job's inputs and outputs must live in its container.
PROCESSING_ROOT = "/opt/ml/processing/"
#: Tag keys AWS keeps for itself (any case).
AWS_TAG_PREFIX = "aws:"


@dataclass(frozen=True)
class S3InputRef:
    """An S3 location the job reads; ``prefix`` means at least one object must exist under it."""

    field: str
    uri: str
    prefix: bool


def parse_s3_uri(uri: str) -> tuple[str, str] | None:
    """``s3://bucket/key`` -> (bucket, key); None when the text is not such a URI."""
    if not uri.startswith("s3://"):
        return None
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def coerce_integers(kind: JobKind | str, config: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``config`` with the rendered integer fields turned into ints.

    Only text that is an integer is converted; anything else is left for ``validate_config``
    to report with its field, instead of failing here with a bare ``int()`` error.
    """
    result = copy.deepcopy(dict(config))
    for path in INTEGER_FIELDS[_kind(kind)]:
        _coerce(result, path)
    return result


def _coerce(node: Any, path: tuple[str, ...]) -> None:
    if isinstance(node, list):
        for item in node:
            _coerce(item, path)
        return
    if not isinstance(node, dict) or path[0] not in node:
        return
    if len(path) > 1:
        _coerce(node[path[0]], path[1:])
    elif isinstance(node[path[0]], str) and _INTEGER_TEXT.fullmatch(node[path[0]]):
        node[path[0]] = int(node[path[0]])


def validate_config(
    kind: JobKind | str, config: Any, *, name_max_length: int = 63, api_model: bool = True
) -> list[str]:
    """Raise ``ConfigValidationError`` listing every rule ``config`` breaks; return warnings.

    ``name_max_length`` is what is left of SageMaker's 63 characters once the job's identity
    suffix is appended to the user's name. ``api_model`` adds the checks of botocore's service
    model (``validation_model.model_problems``), loading it on first use; a problem the hand-written rules
    already reported for a field (or a field above it) is not repeated. The warnings name
    values the installed botocore does not know but SageMaker may (new instance types).
    """
    kind = _kind(kind)
    checker = _Checker()
    if not isinstance(config, Mapping):
        checker.fail("config", f"must be a dict in the SageMaker API's shape, got {type(config).__name__}")
        raise ConfigValidationError(kind, checker.problems)
    if "S3Operations" in config:
        checker.fail(
            "config.S3Operations",
            "is not part of the SageMaker API (the Amazon provider's operators consume it); create "
            "buckets and upload inputs in an upstream task, e.g. with S3CreateBucketOperator or "
            "LocalFilesystemToS3Operator",
        )
    checker.job_name(config, KINDS[kind].name_key, name_max_length)
    checker.role_arn(config)
    length = ENVIRONMENT_LENGTH[kind]
    checker.string_map(config, "Environment", MAX_ENVIRONMENT, length, length, key_pattern=_ENVIRONMENT_KEY)
    checker.tags(config)
    if kind == JobKind.TRAINING:
        _check_training(checker, config)
    else:
        _check_processing(checker, config)
    warnings: list[str] = []
    if api_model:
        found, warnings = model_problems(kind, config)
        reported = [field for field, _ in checker.problems]
        checker.problems.extend(
            (field, rule)
            for field, rule in found
            if not any(field == done or field.startswith((f"{done}.", f"{done}[")) for done in reported)
        )
    if checker.problems:
        raise ConfigValidationError(kind, checker.problems)
    return warnings


def _check_training(checker: _Checker, config: Mapping[str, Any]) -> None:
    serverless = "ServerlessJobConfig" in config
    algorithm = checker.mapping(config, "AlgorithmSpecification", "config", required=not serverless)
    if algorithm is not None:
        checker.require(algorithm, "TrainingInputMode", "config.AlgorithmSpecification")
        if not algorithm.get("TrainingImage") and not algorithm.get("AlgorithmName"):
            checker.fail("config.AlgorithmSpecification", "needs TrainingImage or AlgorithmName")
        checker.metric_definitions(algorithm, "config.AlgorithmSpecification")
    checker.string_map(config, "HyperParameters", MAX_HYPERPARAMETERS, *HYPERPARAMETER_LENGTHS)
    output = checker.mapping(config, "OutputDataConfig", "config", required=True)
    if output is not None:
        checker.s3_uri(output, "S3OutputPath", "config.OutputDataConfig", required=True)
    resources = checker.mapping(config, "ResourceConfig", "config", required=not serverless)
    if resources is not None:
        where = "config.ResourceConfig"
        if "InstanceGroups" in resources:
            for i, group in enumerate(checker.items(resources, "InstanceGroups", where)):
                checker.instance_type(group, "InstanceType", f"{where}.InstanceGroups[{i}]", required=True)
                checker.positive_int(group, "InstanceCount", f"{where}.InstanceGroups[{i}]", required=True)
        else:
            checker.instance_type(resources, "InstanceType", where, required=True)
            checker.positive_int(resources, "InstanceCount", where, required=True)
        checker.positive_int(resources, "VolumeSizeInGB", where, required=True)
    stopping = checker.mapping(config, "StoppingCondition", "config", required=not serverless)
    if stopping is not None:
        where = "config.StoppingCondition"
        runtime = checker.positive_int(
            stopping,
            "MaxRuntimeInSeconds",
            where,
            required=True,
            maximum=MAX_RUNTIME_SECONDS[JobKind.TRAINING],
        )
        wait = checker.positive_int(stopping, "MaxWaitTimeInSeconds", where)
        checker.positive_int(
            stopping, "MaxPendingTimeInSeconds", where, minimum=PENDING_SECONDS[0], maximum=PENDING_SECONDS[1]
        )
        if config.get("EnableManagedSpotTraining") is True:
            if wait is None and "MaxWaitTimeInSeconds" not in stopping:
                checker.fail(f"{where}.MaxWaitTimeInSeconds", "is required with EnableManagedSpotTraining")
            elif wait is not None and runtime is not None and wait < runtime:
                checker.fail(f"{where}.MaxWaitTimeInSeconds", "must be >= MaxRuntimeInSeconds")
        elif "MaxWaitTimeInSeconds" in stopping and isinstance(
            config.get("EnableManagedSpotTraining", False), bool
        ):
            checker.fail(
                f"{where}.MaxWaitTimeInSeconds",
                "is only allowed with EnableManagedSpotTraining: true (SageMaker refuses it on demand)",
            )
    seen: set[str] = set()
    for i, channel in enumerate(checker.items(config, "InputDataConfig", "config")):
        where = f"config.InputDataConfig[{i}]"
        name = checker.require(channel, "ChannelName", where)
        if isinstance(name, str):
            if not _CHANNEL_NAME.fullmatch(name):
                checker.fail(f"{where}.ChannelName", "must be 1-64 of A-Z a-z 0-9 . - _")
            elif name in seen:
                checker.fail(f"{where}.ChannelName", f"duplicates channel {name!r}")
            seen.add(name)
        source = checker.mapping(channel, "DataSource", where, required=True)
        if source is not None and "S3DataSource" in source:
            s3 = checker.mapping(source, "S3DataSource", f"{where}.DataSource", required=True)
            if s3 is not None:
                checker.s3_uri(s3, "S3Uri", f"{where}.DataSource.S3DataSource", required=True)
                checker.require(s3, "S3DataType", f"{where}.DataSource.S3DataSource")
    checkpoint = checker.mapping(config, "CheckpointConfig", "config")
    if checkpoint is not None:
        checker.s3_uri(checkpoint, "S3Uri", "config.CheckpointConfig", required=True)


def _check_processing(checker: _Checker, config: Mapping[str, Any]) -> None:
    app = checker.mapping(config, "AppSpecification", "config", required=True)
    if app is not None:
        checker.require(app, "ImageUri", "config.AppSpecification")
    resources = checker.mapping(config, "ProcessingResources", "config", required=True)
    cluster = resources and checker.mapping(resources, "ClusterConfig", "config.ProcessingResources", True)
    if cluster:
        where = "config.ProcessingResources.ClusterConfig"
        checker.instance_type(cluster, "InstanceType", where, required=True)
        checker.positive_int(cluster, "InstanceCount", where, required=True, maximum=100)
        checker.positive_int(cluster, "VolumeSizeInGB", where, required=True, maximum=16384)
    stopping = checker.mapping(config, "StoppingCondition", "config")
    if stopping is not None:
        checker.positive_int(
            stopping,
            "MaxRuntimeInSeconds",
            "config.StoppingCondition",
            required=True,
            maximum=MAX_RUNTIME_SECONDS[JobKind.PROCESSING],
        )
    inputs = checker.items(config, "ProcessingInputs", "config", maximum=10)
    checker.unique_names(inputs, "InputName", "config.ProcessingInputs")
    for i, item in enumerate(inputs):
        where = f"config.ProcessingInputs[{i}]"
        if "S3Input" in item:
            s3 = checker.mapping(item, "S3Input", where, required=True)
            if s3 is not None:
                checker.s3_uri(s3, "S3Uri", f"{where}.S3Input", required=True)
                checker.require(s3, "S3DataType", f"{where}.S3Input")
                checker.require(s3, "LocalPath", f"{where}.S3Input")
                checker.processing_path(s3, f"{where}.S3Input")
        elif "DatasetDefinition" not in item:
            checker.fail(where, "needs S3Input or DatasetDefinition")
    output_config = checker.mapping(config, "ProcessingOutputConfig", "config")
    if output_config is not None:
        outputs = checker.items(output_config, "Outputs", "config.ProcessingOutputConfig", maximum=10)
        checker.unique_names(outputs, "OutputName", "config.ProcessingOutputConfig.Outputs")
        for i, item in enumerate(outputs):
            where = f"config.ProcessingOutputConfig.Outputs[{i}]"
            if "S3Output" in item:
                s3 = checker.mapping(item, "S3Output", where, required=True)
                if s3 is not None:
                    checker.s3_uri(s3, "S3Uri", f"{where}.S3Output", required=True)
                    checker.require(s3, "S3UploadMode", f"{where}.S3Output")
                    checker.processing_path(s3, f"{where}.S3Output")
            elif "FeatureStoreOutput" not in item:
                checker.fail(where, "needs S3Output or FeatureStoreOutput")


def s3_inputs(kind: JobKind | str, config: Mapping[str, Any]) -> list[S3InputRef]:
    """The S3 locations a valid config reads, with the field each comes from.

    Manifest files and the training code archive (``sagemaker_submit_directory``) must exist as
    objects; data prefixes must hold at least one object. https:// URIs are left out.
    """
    return list(_s3_inputs(_kind(kind), config))


def _s3_inputs(kind: JobKind, config: Mapping[str, Any]) -> Iterator[S3InputRef]:
    if kind == JobKind.TRAINING:
        for i, channel in enumerate(config.get("InputDataConfig") or []):
            s3 = (channel.get("DataSource") or {}).get("S3DataSource")
            if s3 and str(s3.get("S3Uri", "")).startswith("s3://"):
                field = f"config.InputDataConfig[{i}].DataSource.S3DataSource.S3Uri"
                yield S3InputRef(field, s3["S3Uri"], prefix=s3.get("S3DataType") == "S3Prefix")
        code = (config.get("HyperParameters") or {}).get("sagemaker_submit_directory")
        if isinstance(code, str) and code.startswith("s3://"):
            yield S3InputRef("config.HyperParameters.sagemaker_submit_directory", code, prefix=False)
    else:
        for i, item in enumerate(config.get("ProcessingInputs") or []):
            s3 = item.get("S3Input")
            if s3 and str(s3.get("S3Uri", "")).startswith("s3://"):
                field = f"config.ProcessingInputs[{i}].S3Input.S3Uri"
                yield S3InputRef(field, s3["S3Uri"], prefix=s3.get("S3DataType") == "S3Prefix")


def _kind(kind: Any) -> JobKind:
    """Accept ``JobKind`` members and their string values alike."""
    try:
        return JobKind(getattr(kind, "value", kind))
    except ValueError:
        raise ValueError(f"unknown job kind {kind!r}") from None


class _Checker:
    """Collects (field, rule) problems while walking a config."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, field: str, rule: str) -> None:
        self.problems.append((field, rule))

    def require(self, node: Mapping[str, Any], key: str, where: str) -> Any:
        value = node.get(key)
        if value is None or value == "":
            self.fail(f"{where}.{key}", "is required")
        return value

    def mapping(self, node: Mapping[str, Any], key: str, where: str, required: bool = False) -> Any:
        if key not in node:
            if required:
                self.fail(f"{where}.{key}", "is required")
            return None
        if not isinstance(node[key], Mapping):
            self.fail(f"{where}.{key}", f"must be a dict, got {type(node[key]).__name__}")
            return None
        return node[key]

    def items(self, node: Mapping[str, Any], key: str, where: str, maximum: int | None = None) -> list:
        """The dict elements of a list field (the others are reported)."""
        value = node.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(f"{where}.{key}", f"must be a list, got {type(value).__name__}")
            return []
        if maximum is not None and len(value) > maximum:
            self.fail(f"{where}.{key}", f"may hold at most {maximum} items, got {len(value)}")
        good = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                good.append(item)
            else:
                self.fail(f"{where}.{key}[{i}]", f"must be a dict, got {type(item).__name__}")
        return good

    def unique_names(self, items: list, key: str, where: str) -> None:
        seen: set[str] = set()
        for i, item in enumerate(items):
            name = self.require(item, key, f"{where}[{i}]")
            if name in seen:
                self.fail(f"{where}[{i}].{key}", f"duplicates {name!r}")
            elif isinstance(name, str):
                seen.add(name)

    def job_name(self, config: Mapping[str, Any], key: str, max_length: int) -> None:
        name = self.require(config, key, "config")
        if name is None or name == "":
            return
        if not isinstance(name, str):
            self.fail(f"config.{key}", f"must be a string, got {type(name).__name__}")
        elif not NAME_PATTERN.fullmatch(name):
            self.fail(f"config.{key}", "must match [a-zA-Z0-9](-*[a-zA-Z0-9])* (letters, digits, hyphens)")
        elif len(name) > max_length:
            self.fail(
                f"config.{key}",
                f"must be at most {max_length} characters (SageMaker's 63 minus the identity suffix "
                f"appended to make retries idempotent), got {len(name)}",
            )

    def role_arn(self, config: Mapping[str, Any]) -> None:
        arn = self.require(config, "RoleArn", "config")
        if arn and (not isinstance(arn, str) or not _ROLE_ARN.fullmatch(arn)):
            self.fail(
                "config.RoleArn",
                "must be an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>), "
                f"got {arn!r}; role names are not expanded",
            )

    def instance_type(self, node: Mapping[str, Any], key: str, where: str, required: bool = False) -> None:
        value = node.get(key)
        if value is None:
            if required:
                self.fail(f"{where}.{key}", "is required")
        elif not isinstance(value, str) or not _INSTANCE_TYPE.fullmatch(value):
            self.fail(f"{where}.{key}", f"must be a SageMaker instance type like ml.m5.large, got {value!r}")

    def positive_int(
        self,
        node: Mapping[str, Any],
        key: str,
        where: str,
        required: bool = False,
        maximum: int | None = None,
        minimum: int = 1,
    ) -> int | None:
        value = node.get(key)
        if value is None:
            if required:
                self.fail(f"{where}.{key}", "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(f"{where}.{key}", f"must be an integer, got {type(value).__name__} {value!r}")
            return None
        if value < minimum:
            rule = "must be positive" if minimum == 1 else f"must be at least {minimum:,}"
            self.fail(f"{where}.{key}", f"{rule}, got {value:,}")
            return None
        if maximum is not None and value > maximum:
            self.fail(f"{where}.{key}", f"must be at most {maximum:,}, got {value:,}")
            return None
        return value

    def s3_uri(self, node: Mapping[str, Any], key: str, where: str, required: bool = False) -> None:
        value = node.get(key)
        if value is None or value == "":
            if required:
                self.fail(f"{where}.{key}", "is required")
            return
        if not isinstance(value, str):
            self.fail(f"{where}.{key}", f"must be a string, got {type(value).__name__}")
            return
        if value.startswith("https://") and len(value) > len("https://"):
            return
        parsed = parse_s3_uri(value)
        if parsed is None:
            self.fail(f"{where}.{key}", f"must be an S3 URI s3://<bucket>/<key>, got {value!r}")
        elif not _BUCKET.fullmatch(parsed[0]):
            self.fail(f"{where}.{key}", f"has an invalid bucket name {parsed[0]!r} in {value!r}")
        elif len(value) > 1024:
            self.fail(f"{where}.{key}", "must be at most 1024 characters")

    def string_map(
        self,
        config: Mapping[str, Any],
        key: str,
        max_items: int,
        key_max: int,
        value_max: int,
        key_pattern: re.Pattern[str] | None = None,
    ) -> None:
        value = config.get(key)
        if value is None:
            return
        if not isinstance(value, Mapping):
            self.fail(f"config.{key}", f"must be a dict of strings, got {type(value).__name__}")
            return
        if len(value) > max_items:
            self.fail(f"config.{key}", f"may hold at most {max_items} entries, got {len(value)}")
        for name, item in value.items():
            where = f"config.{key}.{name}"
            if not isinstance(name, str) or len(name) > key_max:
                self.fail(where, f"name must be a string of at most {key_max} characters")
            elif key_pattern is not None and not key_pattern.fullmatch(name):
                self.fail(where, f"name must match {key_pattern.pattern}")
            if not isinstance(item, str):
                self.fail(
                    where,
                    f"must be a string (SageMaker passes these as text), got {type(item).__name__} {item!r}",
                )
            elif len(item) > value_max:
                self.fail(where, f"must be at most {value_max} characters, got {len(item)}")

    def tags(self, config: Mapping[str, Any]) -> None:
        """User tags: room must be left for the identity tags, whose prefix is reserved."""
        tags = self.items(config, "Tags", "config")
        if isinstance(config.get("Tags"), list) and len(config["Tags"]) > MAX_USER_TAGS:
            self.fail(
                "config.Tags",
                f"may hold at most {MAX_USER_TAGS} tags (SageMaker's {MAX_TAGS} minus the "
                f"{MAX_TAGS - MAX_USER_TAGS} identity tags this provider adds), got {len(config['Tags'])}",
            )
        for i, tag in enumerate(tags):
            for part in ("Key", "Value"):
                if not isinstance(tag.get(part), str):
                    self.fail(f"config.Tags[{i}].{part}", "must be a string")
            if isinstance(tag.get("Key"), str) and tag["Key"].lower().startswith(AWS_TAG_PREFIX):
                self.fail(
                    f"config.Tags[{i}].Key",
                    f"must not start with {AWS_TAG_PREFIX!r}: AWS reserves the prefix, got {tag['Key']!r}",
                )
            elif isinstance(tag.get("Key"), str) and tag["Key"].startswith(TAG_PREFIX):
                self.fail(
                    f"config.Tags[{i}].Key",
                    f"must not start with {TAG_PREFIX!r}: the prefix is reserved for the tags that "
                    f"tie a job to its task, got {tag['Key']!r}",
                )

    def metric_definitions(self, algorithm: Mapping[str, Any], where: str) -> None:
        """Each ``Regex`` compiles and has the capture group its value is read from; the count and
        the Name/Regex shapes are the model's. Compiled as the engine and the metric collector
        match them (the ``regex`` package, whose default behaviour is ``re``'s)."""
        import regex

        definitions = algorithm.get("MetricDefinitions")
        for i, definition in enumerate(definitions if isinstance(definitions, list) else []):
            pattern = definition.get("Regex") if isinstance(definition, Mapping) else None
            if not isinstance(pattern, str) or not pattern:
                continue  # the model reports the shape
            field = f"{where}.MetricDefinitions[{i}].Regex"
            try:
                compiled = regex.compile(pattern)
            except regex.error as error:
                self.fail(field, f"is not a valid regular expression ({error})")
                continue
            if compiled.groups < 1:
                self.fail(field, "needs a capture group: the first group is the metric's value")

    def processing_path(self, node: Mapping[str, Any], where: str) -> None:
        """``LocalPath``, when given: an absolute path starting /opt/ml/processing/, without ``..``."""
        path = node.get("LocalPath")
        if (
            isinstance(path, str)
            and path
            and (not path.startswith(PROCESSING_ROOT) or ".." in path.split("/"))
        ):
            self.fail(
                f"{where}.LocalPath",
                f"must start with {PROCESSING_ROOT} (where SageMaker mounts inputs and outputs) and "
                f"hold no '..', got {path!r}",
            )
