"""Run tracking behind one small interface (SageMaker Experiments today; MLflow can follow)."""
