"""The engine's own command line: its flags and its foreground run.

``airflow-sm local up`` and ``python -m airflow_sm_provider.local`` both use these, so the
engine runs without the provider's command line (which imports the demo, and through it hooks).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``airflow-sm local up``, shared with ``python -m airflow_sm_provider.local``."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)"
    )
    parser.add_argument(
        "--port", type=int, default=4566, help="port to listen on (default: 4566; 0 = any free)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="keep job records, job directories, S3 objects, logs and metrics here, across restarts "
        "(default: temporary)",
    )
    parser.add_argument("--max-concurrent-jobs", type=int, help="jobs that run at once (default: CPU count)")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also serve requests whose Host header is NAME (repeatable; e.g. a Docker service name). "
        "Loopback addresses, localhost and the bound address are always served",
    )
    parser.add_argument(
        "--runtime",
        action="append",
        default=[],
        metavar="IMAGE_GLOB=PYTHON",
        help="run jobs whose image matches IMAGE_GLOB (fnmatch, first match wins) with the interpreter "
        "PYTHON, e.g. '*sagemaker-scikit-learn:1.2-1*=/opt/py39/bin/python' (repeatable). Other images "
        "run with the engine's own Python; a job's log says when that is not the image's Python",
    )
    parser.add_argument(
        "--mlflow-python",
        metavar="PYTHON",
        help="the interpreter that runs the MLflow tracking servers (`mlflow server`; default: "
        "SAGEMAKER_LOCAL_MLFLOW_PYTHON, else the engine's own). One with the full mlflow package, "
        "e.g. beside Airflow 2.11, whose SQLAlchemy 1.4 MLflow 3's server cannot use",
    )
    parser.add_argument(
        "--credentials-file",
        type=Path,
        help="the engine's access key, in the AWS credentials file format ([default] aws_access_key_id, "
        "aws_secret_access_key). Default: SAGEMAKER_LOCAL_ACCESS_KEY_ID/SAGEMAKER_LOCAL_SECRET_ACCESS_KEY, "
        "else a key generated into <data dir>/credentials",
    )


def run_engine(args: argparse.Namespace) -> int:
    """Run the engine in the foreground until Ctrl-C or SIGTERM."""
    import logging

    from airflow_sm_provider.local import LocalEngine

    # To stderr: among the rest, the engine's warning when --host is not a loopback address.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from airflow_sm_provider.local.runtimes import describe_runtimes, parse_runtime_options

    try:
        runtimes = parse_runtime_options(args.runtime)
    except ValueError as err:
        print(f"cannot start the engine: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    engine = LocalEngine(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        max_concurrent_jobs=args.max_concurrent_jobs,
        credentials_file=args.credentials_file,
        allowed_hosts=args.allowed_host,
        runtimes=runtimes,
        mlflow_python=args.mlflow_python,
    )
    try:
        engine.start()
    except OSError as err:
        print(f"cannot start the engine on {args.host}:{args.port}: {err} (try --port 0)", file=sys.stderr)
        return 1
    except ValueError as err:  # the credentials: a half-set environment, an unreadable file
        print(f"cannot start the engine: {err}", file=sys.stderr)
        return 1
    try:
        print(f"Local SageMaker engine listening on {engine.endpoint_url} (Ctrl-C to stop)")
        print("Point AWS clients at it with:")
        for key, value in engine.environ().items():
            print(f"  export {key}={value}")
        print("Jobs run their image with (--runtime IMAGE_GLOB=PYTHON to change):")
        for line in describe_runtimes(runtimes):
            print(f"  {line}")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        print("stopping: running jobs get SIGTERM, then SIGKILL", flush=True)
    finally:
        engine.stop()
    return 0
