"""Run the registered benchmarks, write their JSON results, and render BENCHMARKS.md from them.

    python -m benchmarks                    # every benchmark (<= 10 minutes), then BENCHMARKS.md
    python -m benchmarks --full             # adds the long cases (10,000-run report, fresh install)
    python -m benchmarks --only poll_calls  # one (repeat --only for more)
    python -m benchmarks --quick            # smallest sizes, one run each (CI: does each run?)
    python -m benchmarks --render           # only re-render BENCHMARKS.md from benchmarks/results
    python -m benchmarks --list

``--quick`` writes to a temporary folder unless ``--out`` is given, so a CI run never
replaces the measured results, and renders nothing. The exit status is 1 when a benchmark
fails or, outside ``--quick``, when a result misses its target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path

from benchmarks.harness import RESULTS_DIR, Settings, discover, misses, run


def main(argv: list[str] | None = None) -> int:
    registry = discover()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(registry), metavar="NAME")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smallest sizes, one run each")
    mode.add_argument("--full", action="store_true", help="add the long cases")
    mode.add_argument("--render", action="store_true", help="only render BENCHMARKS.md from the results")
    parser.add_argument("--runs", type=int, help="repetitions (default 10, 1 with --quick)")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for bench in registry.values():
            print(f"{bench.name:<20} {bench.description}")
        return 0
    from benchmarks.render import BENCHMARKS_MD, write

    if args.render:
        print(f"-> {write(args.out or RESULTS_DIR, BENCHMARKS_MD)}")
        return 0
    settings = Settings(runs=args.runs or (1 if args.quick else 10), quick=args.quick, full=args.full)
    out = args.out or (Path(tempfile.mkdtemp(prefix="benchmarks-quick-")) if args.quick else RESULTS_DIR)
    failed = []
    for name in args.only or registry:
        print(f"== {name} ({registry[name].description})", flush=True)
        try:
            payload = run(registry[name], settings, out)
        except Exception:
            traceback.print_exc()
            failed.append(f"{name}: raised")
            continue
        print(f"   {payload['wall_s']} s -> {out / (name + '.json')}", flush=True)
        if not args.quick:
            failed += [f"{name}: {path} missed its target" for path in misses(payload["results"])]
    if not args.quick and out == RESULTS_DIR:
        print(f"-> {write(out, BENCHMARKS_MD)}")
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
