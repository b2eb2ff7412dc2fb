"""Processing job: split scikit-learn's bundled digits into train and validation CSVs.

Runs inside a SageMaker Processing container (or the local engine). Paths follow the
Processing contract: inputs under /opt/ml/processing/input, outputs under
/opt/ml/processing/output; the job's arguments may override them. It runs on the Python of the
default scikit-learn image (3.9): no syntax or builtins newer than that.
"""

import argparse
import csv
import random
from pathlib import Path


def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for label, features in rows:
            writer.writerow([label, *features])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", default="/opt/ml/processing/output")
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = [(int(t), [float(v) / 16.0 for v in x]) for x, t in zip(digits.data, digits.target)]
    random.Random(args.seed).shuffle(rows)  # noqa: S311 (a reproducible split, not security)
    cut = int(len(rows) * (1 - args.validation_fraction))
    out = Path(args.output_dir)
    write_csv(out / "train" / "train.csv", rows[:cut])
    write_csv(out / "validation" / "validation.csv", rows[cut:])
    print(f"wrote {cut} training and {len(rows) - cut} validation rows to {out}")


if __name__ == "__main__":
    main()
