"""Request bodies that clients compress reach the embedded services intact."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_a_gzip_compressed_put_metric_data_is_accepted(engine) -> None:
    """boto3 gzips PutMetricData bodies of 10 KB or more; the engine must decompress, not fail."""
    cloudwatch = engine.client("cloudwatch")
    data = [{"MetricName": f"m{i % 7}", "Value": float(i), "Unit": "None"} for i in range(1000)]
    response = cloudwatch.put_metric_data(Namespace="test/compressed", MetricData=data)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace="test/compressed")["Metrics"]}
    assert names == {f"m{i}" for i in range(7)}
