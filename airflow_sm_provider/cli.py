"""``airflow-sm``: the project's command line.

airflow-sm local up [--host H] [--port P] [--data-dir DIR] [--max-concurrent-jobs N]
airflow-sm demo [--artifacts DIR] [--dags-folder DIR] [--conf JSON]
airflow-sm mwaa build --airflow-version X [--out DIR] [IAM values]   (see airflow_sm_provider.mwaa)
airflow-sm ui [--home DIR] [--dags-folder DIR] [--port P] [--report-prefix PREFIX]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from airflow_sm_provider.local.cli import add_engine_arguments, run_engine
from airflow_sm_provider.mwaa import add_arguments as add_mwaa_arguments
from airflow_sm_provider.mwaa import run as run_mwaa


def run_demo(args: argparse.Namespace) -> int:
    from airflow_sm_provider.demo import run_demo as demo

    return demo(args.artifacts, args.dags_folder, args.conf)


def json_object(text: str) -> dict:
    """``--conf``: a JSON object, or argparse's error naming the option (before anything starts)."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object of parameters, got {type(value).__name__}")
    return value


def add_ui_command(commands: argparse._SubParsersAction) -> None:
    """``airflow-sm ui``: Airflow's UI and services on this machine, against a local engine."""
    from airflow_sm_provider.ui.standalone import add_ui_arguments, run_ui

    ui = commands.add_parser("ui", help="run Airflow's UI, scheduler and triggerer against a local engine")
    add_ui_arguments(ui)
    ui.set_defaults(func=run_ui)


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
    demo.add_argument(
        "--conf",
        type=json_object,
        help='DAG run parameters as JSON, e.g. \'{"grid": {"learning-rate": [0.01, 0.1]}, "epochs": 40}\'',
    )
    demo.set_defaults(func=run_demo)

    mwaa = commands.add_parser("mwaa", help="package the provider for Amazon MWAA")
    add_mwaa_arguments(mwaa)
    mwaa.set_defaults(func=run_mwaa)
    add_ui_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
