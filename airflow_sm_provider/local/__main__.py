"""``python -m airflow_sm_provider.local``: the same as ``airflow-sm local up``."""

from __future__ import annotations

import argparse
import sys

from airflow_sm_provider.local.cli import add_engine_arguments, run_engine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_sm_provider.local", description="Run the local SageMaker engine."
    )
    add_engine_arguments(parser)
    return run_engine(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
