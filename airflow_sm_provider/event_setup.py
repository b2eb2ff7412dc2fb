"""What event-driven waits need in an AWS account, as CloudFormation, as API calls, or created.

* an EventBridge rule on the default bus matching SageMaker's job-end events
  (``state_changes.event_pattern``: training and processing jobs Completed, Failed, Stopped);
* an SQS queue, its target, with long polling on by default, messages kept 4 hours (a wait
  deletes what it needs within minutes; see ``triggers.events``), SSE on, and no redrive
  policy: a message for a job no process here waits on is received now and then until it is
  old, and a low ``maxReceiveCount`` would send it to a dead-letter queue while a triggerer
  elsewhere may still want it;
* the queue policy that lets the rule (and only it) send to the queue;
* the IAM statement the triggerer's role needs (on MWAA, the environment's execution role):
  ``sqs:ReceiveMessage``, ``sqs:DeleteMessage``, ``sqs:ChangeMessageVisibility`` on the queue
  (the batch calls are authorized by these).

:func:`cloudformation` and :func:`api_calls` are pure; :func:`create` makes the calls with
boto3 clients from the Amazon provider's connection (``airflow-sm events setup --create``).
Then set ``[sagemaker_provider] event_queue_url`` to the queue's URL.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from airflow_sm_provider.state_changes import event_pattern

if TYPE_CHECKING:
    from airflow_sm_provider.aws_args import AwsArgs

QUEUE_ATTRIBUTES = {
    "MessageRetentionPeriod": "14400",
    "ReceiveMessageWaitTimeSeconds": "20",
    "SqsManagedSseEnabled": "true",
}
TRIGGERER_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # the stricter of the two (rules: [.\-_A-Za-z0-9]+, <= 64)


def check_names(queue_name: str, rule_name: str) -> None:
    """ValueError naming the field and the rule, before anything is created."""
    for field, value in (("queue name", queue_name), ("rule name", rule_name)):
        if not _NAME.match(value):
            raise ValueError(f"{field} {value!r}: 1-64 characters of letters, digits, '-' and '_'")


def queue_policy(queue_arn: Any, rule_arn: Any) -> dict[str, Any]:
    """Lets EventBridge send to the queue for this rule only."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SageMakerJobEndEvents",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }


def triggerer_policy(queue_arn: Any) -> dict[str, Any]:
    """The IAM policy the triggerer's role (MWAA's execution role) needs on the queue."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadSageMakerJobEndEvents",
                "Effect": "Allow",
                "Action": list(TRIGGERER_ACTIONS),
                "Resource": queue_arn,
            }
        ],
    }


def cloudformation(queue_name: str, rule_name: str) -> dict[str, Any]:
    """A CloudFormation template of the rule, queue and queue policy; with the ``RoleName``
    parameter set, also a managed policy on that role (MWAA's execution role)."""
    check_names(queue_name, rule_name)
    queue_arn = {"Fn::GetAtt": ["JobEndQueue", "Arn"]}
    rule_arn = {"Fn::GetAtt": ["JobEndRule", "Arn"]}
    attributes = {
        "MessageRetentionPeriod": int(QUEUE_ATTRIBUTES["MessageRetentionPeriod"]),
        "ReceiveMessageWaitTimeSeconds": int(QUEUE_ATTRIBUTES["ReceiveMessageWaitTimeSeconds"]),
        "SqsManagedSseEnabled": True,
    }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "SageMaker job-end events to SQS, for airflow-sm-provider's event-driven waits",
        "Parameters": {
            "RoleName": {
                "Type": "String",
                "Default": "",
                "Description": "Role the triggerer runs as (MWAA: the execution role's name); empty: none",
            }
        },
        "Conditions": {"HasRole": {"Fn::Not": [{"Fn::Equals": [{"Ref": "RoleName"}, ""]}]}},
        "Resources": {
            "JobEndQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": queue_name, **attributes}},
            "JobEndRule": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "Name": rule_name,
                    "EventPattern": event_pattern(),
                    "State": "ENABLED",
                    "Targets": [{"Id": "job-end-queue", "Arn": queue_arn}],
                },
            },
            "JobEndQueuePolicy": {
                "Type": "AWS::SQS::QueuePolicy",
                "Properties": {
                    "Queues": [{"Ref": "JobEndQueue"}],
                    "PolicyDocument": queue_policy(queue_arn, rule_arn),
                },
            },
            "TriggererPolicy": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Condition": "HasRole",
                "Properties": {"Roles": [{"Ref": "RoleName"}], "PolicyDocument": triggerer_policy(queue_arn)},
            },
        },
        "Outputs": {
            "QueueUrl": {
                "Description": "[sagemaker_provider] event_queue_url",
                "Value": {"Ref": "JobEndQueue"},
            },
            "QueueArn": {"Value": queue_arn},
        },
    }


def api_calls(queue_name: str, rule_name: str, region: str, account_id: str) -> dict[str, Any]:
    """The same resources as API requests (``create`` makes them), ARNs for ``region``/``account_id``."""
    check_names(queue_name, rule_name)
    queue_arn = f"arn:aws:sqs:{region}:{account_id}:{queue_name}"
    rule_arn = f"arn:aws:events:{region}:{account_id}:rule/{rule_name}"
    return {
        "sqs:CreateQueue": {
            "QueueName": queue_name,
            "Attributes": {**QUEUE_ATTRIBUTES, "Policy": json.dumps(queue_policy(queue_arn, rule_arn))},
        },
        "events:PutRule": {
            "Name": rule_name,
            "EventPattern": json.dumps(event_pattern()),
            "State": "ENABLED",
        },
        "events:PutTargets": {"Rule": rule_name, "Targets": [{"Id": "job-end-queue", "Arn": queue_arn}]},
        "iam:PutRolePolicy (triggerer / MWAA execution role)": triggerer_policy(queue_arn),
    }


def create(aws: AwsArgs, queue_name: str, rule_name: str) -> dict[str, str]:
    """Create (or update: every call is idempotent) the queue, its policy and the rule with its
    target; returns the queue's URL and ARN and the rule's ARN. IAM is left to the user."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    check_names(queue_name, rule_name)
    sqs = AwsBaseHook(client_type="sqs", **aws.hook_kwargs()).conn
    events = AwsBaseHook(client_type="events", **aws.hook_kwargs()).conn
    queue_url = sqs.create_queue(QueueName=queue_name, Attributes=QUEUE_ATTRIBUTES)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    rule_arn = events.put_rule(Name=rule_name, EventPattern=json.dumps(event_pattern()), State="ENABLED")[
        "RuleArn"
    ]
    sqs.set_queue_attributes(
        QueueUrl=queue_url, Attributes={"Policy": json.dumps(queue_policy(queue_arn, rule_arn))}
    )
    events.put_targets(Rule=rule_name, Targets=[{"Id": "job-end-queue", "Arn": queue_arn}])
    return {"queue_url": queue_url, "queue_arn": queue_arn, "rule_arn": rule_arn}
