"""Runs in the SageMaker SDK v3's own environment, pointed at the engine by its environment only
(``AWS_ENDPOINT_URL``, the engine's key, ``SAGEMAKER_USER_CONFIG_OVERRIDE``): ``ModelTrainer``
with ``SourceCode``, then ``ScriptProcessor``, with no role, bucket or validation switch given.
Prints what they produced as one JSON line."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(source_dir: str, image: str) -> None:
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.processing import ScriptProcessor
    from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output
    from sagemaker.core.training.configs import Compute, SourceCode
    from sagemaker.train import ModelTrainer

    trainer = ModelTrainer(
        training_image=image,
        source_code=SourceCode(source_dir=source_dir, entry_script="train.py"),
        compute=Compute(instance_type="ml.m5.large", instance_count=1),
        base_job_name="sdk-v3-train",
    )
    trainer.train(wait=True, logs=False)
    training = trainer._latest_training_job
    training.refresh()

    bucket = Session().default_bucket()
    processor = ScriptProcessor(
        image_uri=image,
        command=["python3"],
        instance_type="ml.m5.large",
        instance_count=1,
        base_job_name="sdk-v3-process",
    )
    output = ProcessingS3Output(
        s3_uri=f"s3://{bucket}/sdk-v3/processed",
        local_path="/opt/ml/processing/output",
        s3_upload_mode="EndOfJob",
    )
    processor.run(
        code=str(Path(source_dir) / "process.py"),
        outputs=[ProcessingOutput(output_name="processed", s3_output=output)],
        wait=True,
        logs=False,
    )
    processing = processor.latest_job
    processing.refresh()
    print(
        json.dumps(
            {
                "bucket": bucket,
                "role": trainer.role,
                "training_status": training.training_job_status,
                "training_failure": getattr(training, "failure_reason", None),
                "model": training.model_artifacts.s3_model_artifacts,
                "processing_status": processing.processing_job_status,
                "processing_failure": getattr(processing, "failure_reason", None),
                "processed": output.s3_uri,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
