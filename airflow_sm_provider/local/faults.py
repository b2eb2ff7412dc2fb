"""Opt-in fault injection on the engine's client-facing SageMaker calls, to test clients' retries.

Off unless ``SAGEMAKER_LOCAL_FAULTS`` holds a JSON object when the engine starts, e.g.::

    SAGEMAKER_LOCAL_FAULTS='{"rate": 0.3, "seed": 7, "after_create": 1.0}' airflow-sm local up

* ``rate`` (0-1): the share of SageMaker API calls (``X-Amz-Target: SageMaker.*``) that fail
  before the engine handles them, each with one of ``kinds``;
* ``kinds``: any of ``"throttle"`` (400 ``ThrottlingException``, as AWS throttles),
  ``"server"`` (500 ``InternalFailure`` or 503 ``ServiceUnavailable``) and ``"reset"`` (the
  connection is closed without an answer, which clients see as a dropped connection); all three
  by default;
* ``after_create`` (0-1): the share of *successful* ``Create*`` calls whose answer is dropped
  the same way after the resource was created: the client cannot know whether it exists, and
  must find it rather than create a second one;
* ``operations``: only these operation names (default: every one);
* ``seed``: makes the sequence of faults repeatable.

Every injected fault is logged at WARNING by this module's logger and counted in
:attr:`FaultInjector.injected`. S3, CloudWatch and a running job's own calls are never touched:
the faults model AWS's control plane as a client of it sees it. Pure apart from the socket a
dropped answer closes; no engine state is read or changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_sm_provider.local.errors import AwsError

log = logging.getLogger(__name__)

#: The environment variable that switches injection on.
ENV_VAR = "SAGEMAKER_LOCAL_FAULTS"
KINDS = ("throttle", "server", "reset")


class ThrottlingException(AwsError):
    """Raised (injected) as AWS throttles a caller: retried by every AWS SDK."""

    code = "ThrottlingException"
    status = 400


class ServiceUnavailable(AwsError):
    """Raised (injected) as a 503 from the service: a server error clients retry."""

    code = "ServiceUnavailable"
    status = 503


class DroppedConnection(ConnectionAbortedError):
    """Raised after the client's connection was closed with no answer; the server sends nothing."""


@dataclass(frozen=True)
class FaultPlan:
    """What to inject; see the module docstring for each field."""

    rate: float = 0.0
    kinds: tuple[str, ...] = KINDS
    after_create: float = 0.0
    operations: frozenset[str] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("rate", "after_create"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{ENV_VAR}.{name}: must be a number from 0 to 1, got {value!r}")
        unknown = [kind for kind in self.kinds if kind not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(
                f"{ENV_VAR}.kinds: must be a non-empty list of {', '.join(KINDS)}, got {unknown}"
            )

    @classmethod
    def from_json(cls, text: str) -> FaultPlan:
        """The plan a JSON object describes; ``ValueError`` naming the field for anything else."""
        try:
            data = json.loads(text)
        except ValueError as error:
            raise ValueError(f"{ENV_VAR}: not a JSON object ({error})") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"{ENV_VAR}: must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {"rate", "kinds", "after_create", "operations", "seed"})
        if unknown:
            raise ValueError(f"{ENV_VAR}: unknown field(s) {', '.join(unknown)}")
        operations = data.get("operations")
        return cls(
            rate=data.get("rate", 0.0),
            kinds=tuple(data.get("kinds") or KINDS),
            after_create=data.get("after_create", 0.0),
            operations=frozenset(operations) if operations is not None else None,
            seed=data.get("seed"),
        )


@dataclass
class FaultInjector:
    """Decides, per call, whether to fail it; thread-safe (the engine serves requests in threads)."""

    plan: FaultPlan
    #: (operation, kind) -> how many faults were injected.
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.plan.seed)  # noqa: S311 - test faults, not secrets
        self._lock = threading.Lock()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> FaultInjector | None:
        """The injector ``SAGEMAKER_LOCAL_FAULTS`` asks for, or None when it is unset or empty."""
        text = environ.get(ENV_VAR, "").strip()
        if not text:
            return None
        injector = cls(FaultPlan.from_json(text))
        log.warning("Fault injection is on: %s", injector.plan)
        return injector

    def _draw(self, probability: float) -> float | None:
        with self._lock:
            value = self._rng.random()
            return value if value < probability else None

    def _applies(self, operation: str) -> bool:
        return self.plan.operations is None or operation in self.plan.operations

    def before(self, operation: str, environ: dict[str, Any]) -> None:
        """Maybe fail ``operation`` before it is handled: raise the injected error."""
        if not self._applies(operation) or self._draw(self.plan.rate) is None:
            return
        with self._lock:
            kind = self._rng.choice(self.plan.kinds)
        self._count(operation, kind)
        if kind == "throttle":
            raise ThrottlingException("Rate exceeded (injected by the local engine)")
        if kind == "server":
            with self._lock:
                error = self._rng.choice((AwsError, ServiceUnavailable))
            raise error(f"The local engine injected a server error into {operation}")
        drop(environ, f"injected before {operation}")

    def after(self, operation: str, environ: dict[str, Any]) -> None:
        """Maybe drop the answer of a ``Create*`` that succeeded: raise ``DroppedConnection``."""
        if operation.startswith("Create") and self._applies(operation) and self._draw(self.plan.after_create):
            self._count(operation, "reset-after-create")
            drop(environ, f"injected after {operation} succeeded")

    def _count(self, operation: str, kind: str) -> None:
        with self._lock:
            self.injected[(operation, kind)] += 1
        log.warning("Injected fault %s into SageMaker.%s", kind, operation)


def drop(environ: dict[str, Any], why: str) -> None:
    """Close the request's connection with no answer (werkzeug hands the socket in the environ)."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # the client went away first: dropped all the same
            sock.shutdown(socket.SHUT_RDWR)
    raise DroppedConnection(why)
