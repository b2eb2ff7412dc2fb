"""Training job: softmax regression on the digits CSVs, one metric line per epoch.

Follows the SageMaker training contract (SM_CHANNEL_*, SM_MODEL_DIR, hyperparameters as
``--name value`` arguments). Metric lines are parsed by the job's MetricDefinitions.
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np


def load(channel: str) -> tuple[np.ndarray, np.ndarray]:
    directory = Path(os.environ[f"SM_CHANNEL_{channel.upper()}"])
    data = np.vstack([np.loadtxt(p, delimiter=",", ndmin=2) for p in sorted(directory.glob("*.csv"))])
    return data[:, 1:], data[:, 0].astype(int)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learning-rate", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    x_train, y_train = load("train")
    x_val, y_val = load("validation")
    classes = 10
    rng = np.random.default_rng(args.seed)
    weights = np.zeros((x_train.shape[1], classes))
    bias = np.zeros(classes)
    onehot = np.eye(classes)

    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            probs = softmax(x_train[idx] @ weights + bias)
            grad = probs - onehot[y_train[idx]]
            weights -= args.learning_rate * x_train[idx].T @ grad / len(idx)
            bias -= args.learning_rate * grad.mean(axis=0)
        train_probs = softmax(x_train @ weights + bias)
        train_loss = -np.log(train_probs[np.arange(len(y_train)), y_train] + 1e-12).mean()
        val_probs = softmax(x_val @ weights + bias)
        val_loss = -np.log(val_probs[np.arange(len(y_val)), y_val] + 1e-12).mean()
        val_acc = (val_probs.argmax(axis=1) == y_val).mean()
        print(f"epoch={epoch} train_loss={train_loss:.5f} val_loss={val_loss:.5f} val_accuracy={val_acc:.5f}")

    model_dir = Path(os.environ.get("SM_MODEL_DIR", "model"))
    model_dir.mkdir(parents=True, exist_ok=True)
    np.savez(model_dir / "model.npz", weights=weights, bias=bias)
    metrics = {"val_loss": float(val_loss), "val_accuracy": float(val_acc)}
    (model_dir / "metrics.json").write_text(json.dumps(metrics))


if __name__ == "__main__":
    main()
