"""Training job: a small neural network on the digits CSVs, one metric line per epoch.

Follows the SageMaker training contract: data in ``SM_CHANNEL_TRAIN`` / ``SM_CHANNEL_VALIDATION``,
hyperparameters as ``--name value`` arguments, the model to ``SM_MODEL_DIR``. Every epoch it

- prints ``epoch=N train_loss=… val_loss=… val_accuracy=…`` (the job's MetricDefinitions parse
  these lines from CloudWatch Logs, at full per-epoch resolution);
- logs the same values with ``run.log_metric(name, value, step=epoch)`` when the job belongs to a
  SageMaker Experiments Run (``load_run()`` finds it from the job's ExperimentConfig), or with
  ``mlflow.log_metric(name, value, step=epoch)`` when it belongs to an MLflow run (the provider
  puts ``MLFLOW_TRACKING_URI`` and ``MLFLOW_RUN_ID`` in the job's environment, and the MLflow
  client resumes that run);
- saves a checkpoint to ``/opt/ml/checkpoints``, so a spot job that is interrupted resumes from
  its last finished epoch instead of starting over.

It runs on the Python of the default scikit-learn image (3.9): no syntax newer than that.
A learning rate that is too large makes the weights overflow, and the losses print as ``nan``
or ``inf``: the report's health rules flag such a run, which is why the demo sweep has one.
"""

import argparse
import contextlib
import math
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
from sklearn.neural_network import MLPClassifier

CHECKPOINT_DIR = Path("/opt/ml/checkpoints")
CLASSES = np.arange(10)


def load(channel):
    directory = Path(os.environ[f"SM_CHANNEL_{channel.upper()}"])
    data = np.vstack([np.loadtxt(p, delimiter=",", ndmin=2) for p in sorted(directory.glob("*.csv"))])
    return data[:, 1:], data[:, 0].astype(int)


def cross_entropy(model, x, y):
    """Mean log loss, unclipped, so a diverged model reports nan/inf instead of a capped number."""
    with np.errstate(all="ignore"):
        probs = model.predict_proba(x)
        return float(-np.mean(np.log(probs[np.arange(len(y)), y])))


def accuracy(model, x, y):
    with np.errstate(all="ignore"):
        return float(np.mean(model.predict(x) == y))


def experiment_run():
    """A context giving the job's SageMaker Experiments Run, or None (no SDK in the image, no Run).

    The SDK's Run logs only inside its ``with`` block; leaving the block marks the Run
    Completed, and the provider records the job's real outcome on it when the job ends.
    """
    try:
        from sagemaker.core.experiments.run import load_run  # sagemaker-core (SDK v3)
    except ImportError:
        try:
            from sagemaker.experiments.run import load_run  # SDK v2, as in AWS framework images
        except ImportError:
            return contextlib.nullcontext()
    try:
        return load_run()
    except Exception as error:  # no Run for this job: metrics go to the log only
        print(f"not logging to SageMaker Experiments: {error}")
        return contextlib.nullcontext()


def mlflow_logger():
    """``log(values, epoch)`` onto the job's MLflow run, or None (no run, or no MLflow in the image).

    The fluent client resumes the run named by ``MLFLOW_RUN_ID``; the provider records the
    job's real outcome on the run when the job ends.
    """
    if not os.environ.get("MLFLOW_RUN_ID"):
        return None
    try:
        import mlflow
    except ImportError:
        print("not logging to MLflow: the mlflow package is not installed")
        return None

    def log(values, epoch):
        for name, value in values.items():
            mlflow.log_metric(name, value, step=epoch)

    return log


def restore(seed, learning_rate, hidden_units):
    """The checkpointed model and the number of epochs it has done, or a new model."""
    state = CHECKPOINT_DIR / "model.pkl"
    if state.exists():
        with state.open("rb") as handle:
            saved = pickle.load(handle)  # noqa: S301 (the job's own checkpoint)
        print(f"resuming from checkpoint after epoch {saved['epoch']}")
        return saved["model"], saved["epoch"]
    model = MLPClassifier(
        hidden_layer_sizes=(hidden_units,),
        solver="sgd",
        learning_rate_init=learning_rate,
        momentum=0.9,
        batch_size=64,
        random_state=seed,
    )
    return model, 0


def checkpoint(model, epoch):
    if not CHECKPOINT_DIR.is_dir():
        return
    partial = CHECKPOINT_DIR / "model.pkl.partial"
    with partial.open("wb") as handle:
        pickle.dump({"model": model, "epoch": epoch}, handle)
    partial.replace(CHECKPOINT_DIR / "model.pkl")  # never a half-written checkpoint


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--hidden-units", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    x_train, y_train = load("train")
    x_val, y_val = load("validation")
    model, done = restore(args.seed, args.learning_rate, args.hidden_units)
    rng = np.random.default_rng(args.seed + done)

    mlflow_log = mlflow_logger()
    with experiment_run() as run:
        for epoch in range(done + 1, args.epochs + 1):
            order = rng.permutation(len(x_train))
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")  # overflow warnings of a diverging run
                model.partial_fit(x_train[order], y_train[order], classes=CLASSES)
            values = {
                "train_loss": cross_entropy(model, x_train, y_train),
                "val_loss": cross_entropy(model, x_val, y_val),
                "val_accuracy": accuracy(model, x_val, y_val),
            }
            print(f"epoch={epoch} " + " ".join(f"{name}={value:.5f}" for name, value in values.items()))
            finite = {name: value for name, value in values.items() if math.isfinite(value)}
            if run is not None:  # the SDK drops non-finite values; the log line keeps them
                for name, value in finite.items():
                    run.log_metric(name=name, value=value, step=epoch)
            if mlflow_log is not None:
                mlflow_log(finite, epoch)
            checkpoint(model, epoch)

    model_dir = Path(os.environ.get("SM_MODEL_DIR", "model"))
    model_dir.mkdir(parents=True, exist_ok=True)
    with (model_dir / "model.pkl").open("wb") as handle:
        pickle.dump(model, handle)


if __name__ == "__main__":
    main()
