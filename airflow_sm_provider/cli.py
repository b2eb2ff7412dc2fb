"""``airflow-sm``: the project's command line.

airflow-sm local up [--host H] [--port P] [--data-dir DIR] [--max-concurrent-jobs N]
airflow-sm demo [--artifacts DIR] [--dags-folder DIR] [--conf JSON]
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
        "--data-dir", type=Path, help="keep job records and job directories here (default: temporary)"
    )
    parser.add_argument("--max-concurrent-jobs", type=int, help="jobs that run at once (default: CPU count)")


def run_engine(args: argparse.Namespace) -> int:
    """Run the engine in the foreground until Ctrl-C or SIGTERM."""
    import logging

    from airflow_sm_provider.local import LocalEngine

    # To stderr: among the rest, the engine's warning when --host is not a loopback address.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    engine = LocalEngine(
        host=args.host, port=args.port, data_dir=args.data_dir, max_concurrent_jobs=args.max_concurrent_jobs
    )
    try:
        engine.start()
    except OSError as err:
        print(f"cannot start the engine on {args.host}:{args.port}: {err} (try --port 0)", file=sys.stderr)
        return 1
    try:
        print(f"Local SageMaker engine listening on {engine.endpoint_url} (Ctrl-C to stop)")
        print("Point AWS clients at it with:")
        for key, value in engine.environ().items():
            print(f"  export {key}={value}")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        print("stopping: running jobs get SIGTERM, then SIGKILL", flush=True)
    finally:
        engine.stop()
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from airflow_sm_provider.demo import run_demo as demo

    return demo(args.artifacts, args.dags_folder, json.loads(args.conf) if args.conf else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-sm", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="the local SageMaker engine")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    up = local_commands.add_parser("up", help="run the engine in the foreground")
    add_engine_arguments(up)
    up.set_defaults(func=run_engine)

    demo = commands.add_parser("demo", help="run the template DAG end to end on a local engine")
    demo.add_argument(
        "--artifacts", type=Path, default=Path("artifacts"), help="output folder (default: ./artifacts)"
    )
    demo.add_argument(
        "--dags-folder", type=Path, default=Path("dags"), help="folder of the template DAG (default: ./dags)"
    )
    demo.add_argument("--conf", help="DAG run parameters as JSON, e.g. '{\"learning_rates\": [0.1, 0.3]}'")
    demo.set_defaults(func=run_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
