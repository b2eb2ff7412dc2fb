"""Create-time rules of the local engine's jobs: "can the engine run this?", decided once.

A request arrives already validated against botocore's service model. These rules add the
service rules the model cannot express (unique channel names, spot training limits) and refuse,
with a ValidationException that names the field, every request the local engine cannot run
(container images without an entry point, Pipe mode, non-S3 data, compressed inputs, several
instances). A job that passes them is never refused again at run time for its request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_sm_provider.local.container import is_container_path
from airflow_sm_provider.local.errors import ValidationException

DEFAULT_TRAINING_RUNTIME = 24 * 3600  # "The default value is 1 day."


def _s3_only(uri: str, field_name: str) -> None:
    if not uri.startswith("s3://"):
        raise ValidationException(f"{field_name} {uri}: the local engine reads and writes s3:// URIs only")


#: S3DataType values the engine downloads (AugmentedManifestFile and Converse it cannot read).
S3_DATA_TYPES = ("S3Prefix", "ManifestFile")


def _supported(field_name: str, value: Any, supported: tuple[str, ...]) -> None:
    """Refuse a value of ``field_name`` the engine cannot run, saying what it runs instead."""
    if value not in supported:
        raise ValidationException(
            f"The local engine does not support {field_name} {value}; it supports {', '.join(supported)}"
        )


def check_training(params: Mapping[str, Any]) -> None:
    """Service rules the model cannot express, and what the engine cannot run."""
    algo = params.get("AlgorithmSpecification")
    if not algo or not algo.get("TrainingImage"):
        raise ValidationException("AlgorithmSpecification.TrainingImage is required by the local engine")
    if algo.get("TrainingInputMode", "File") == "Pipe" or any(
        c.get("InputMode") == "Pipe" for c in params.get("InputDataConfig", [])
    ):
        raise ValidationException("Pipe input mode is not supported by the local engine; use File")
    resources = params.get("ResourceConfig")
    if not resources:
        raise ValidationException("ResourceConfig is required")
    if resources.get("InstanceCount", 1) != 1:
        raise ValidationException(
            "The local engine runs one instance: ResourceConfig.InstanceCount must be 1"
        )
    if resources.get("VolumeSizeInGB", 1) < 1:  # the model allows 0; SageMaker refuses it
        raise ValidationException("ResourceConfig.VolumeSizeInGB must be at least 1 (GB)")
    names = [c["ChannelName"] for c in params.get("InputDataConfig", [])]
    if len(names) != len(set(names)):
        raise ValidationException("Channel names must be unique")
    for channel in params.get("InputDataConfig", []):
        source = channel["DataSource"].get("S3DataSource")
        if source is None:
            raise ValidationException("The local engine supports S3DataSource channels only")
        _s3_only(source["S3Uri"], "S3Uri")
        _supported(f"channel {channel['ChannelName']} S3DataType", source["S3DataType"], S3_DATA_TYPES)
    _s3_only(params["OutputDataConfig"]["S3OutputPath"], "S3OutputPath")
    stopping = params.get("StoppingCondition") or {}
    runtime, wait = stopping.get("MaxRuntimeInSeconds"), stopping.get("MaxWaitTimeInSeconds")
    if params.get("EnableManagedSpotTraining"):
        if wait is None:
            raise ValidationException("MaxWaitTimeInSeconds is required for managed spot training")
        if wait < (runtime or DEFAULT_TRAINING_RUNTIME):
            raise ValidationException(
                "MaxWaitTimeInSeconds must be greater than or equal to MaxRuntimeInSeconds"
            )
    elif wait is not None:
        raise ValidationException("MaxWaitTimeInSeconds is only valid with EnableManagedSpotTraining")
    checkpoint = params.get("CheckpointConfig")
    if checkpoint:
        _s3_only(checkpoint["S3Uri"], "CheckpointConfig.S3Uri")
        if checkpoint.get("LocalPath") and not is_container_path(checkpoint["LocalPath"]):
            raise ValidationException("The local engine supports a CheckpointConfig.LocalPath under /opt/ml")
    for definition in algo.get("MetricDefinitions", []):
        try:
            re.compile(definition["Regex"])
        except re.error as err:
            raise ValidationException(
                f"Invalid regular expression for metric {definition['Name']}: {err}"
            ) from err


def check_processing(params: Mapping[str, Any]) -> None:
    """Service rules the model cannot express, and what the engine cannot run."""
    if params["ProcessingResources"]["ClusterConfig"].get("InstanceCount", 1) != 1:
        raise ValidationException("The local engine runs one instance: InstanceCount must be 1")
    if not params["AppSpecification"].get("ContainerEntrypoint"):
        raise ValidationException(
            "The local engine runs no container images: AppSpecification.ContainerEntrypoint is required"
        )
    inputs = params.get("ProcessingInputs", [])
    outputs = (params.get("ProcessingOutputConfig") or {}).get("Outputs", [])
    for label, items in (("input", inputs), ("output", outputs)):
        names = [i.get("InputName") or i.get("OutputName") for i in items]
        if len(names) != len(set(names)):
            raise ValidationException(f"Processing {label} names must be unique")
    for item in inputs:
        if "S3Input" not in item:
            raise ValidationException("The local engine supports S3Input processing inputs only")
        source, label = item["S3Input"], f"processing input {item['InputName']}"
        _supported(f"{label} S3DataType", source["S3DataType"], S3_DATA_TYPES)
        _supported(f"{label} S3InputMode", source.get("S3InputMode", "File"), ("File",))
        _supported(f"{label} S3CompressionType", source.get("S3CompressionType", "None"), ("None",))
    for item, key in [(i["S3Input"], "S3Uri") for i in inputs] + [
        (o["S3Output"], "S3Uri") for o in outputs if "S3Output" in o
    ]:
        _s3_only(item[key], key)
        path = item.get("LocalPath", "")
        if not (path.startswith("/opt/ml/processing/") and is_container_path(path)):
            raise ValidationException(f"LocalPath {path} must be an absolute path under /opt/ml/processing/")
