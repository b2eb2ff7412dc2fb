"""What every backend of the local engine shares: the store, the account, the endpoint, the key."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_sm_provider.local.credentials import EngineCredentials, generate
from airflow_sm_provider.local.sdk_defaults import sdk_config
from airflow_sm_provider.local.store import Store


@dataclass
class EngineContext:
    """Shared state of one engine instance; backends receive it at construction."""

    store: Store
    data_dir: Path
    region: str = "us-east-1"
    account_id: str = "123456789012"
    endpoint_url: str = ""  # set by the server once its socket is bound
    #: The engine's access key (:mod:`credentials`): its clients sign with it, and so do its own calls.
    credentials: EngineCredentials = field(default_factory=generate)
    _clients: dict[str, Any] = field(default_factory=dict, repr=False)

    def arn(self, resource_type: str, name: str) -> str:
        """ARN of a SageMaker resource; SageMaker lower-cases the name part."""
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{resource_type}/{name.lower()}"

    def sdk_config_path(self) -> Path:
        """The SDK's user config in the data dir (:mod:`sdk_defaults`), written on first use and then kept."""
        path = self.data_dir / "sagemaker-sdk-config.yaml"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(sdk_config(self.region, self.account_id))
        return path

    @staticmethod
    def now() -> float:
        return time.time()

    def client(self, service: str) -> Any:
        """A boto3 client for the engine's own endpoint (S3, logs, cloudwatch go to moto)."""
        if service not in self._clients:
            import boto3
            from botocore.config import Config

            self._clients[service] = boto3.session.Session().client(
                service,
                region_name=self.region,
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self.credentials.access_key_id,
                aws_secret_access_key=self.credentials.secret_access_key,
                config=Config(retries={"mode": "standard", "max_attempts": 5}),
            )
        return self._clients[service]
