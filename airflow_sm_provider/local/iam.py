"""The IAM answers a SageMaker client needs before it creates a job: the role exists and may act.

Theory of operation. The SageMaker Python SDK v3 checks the execution role before it starts a
job (``sagemaker.core.helper.iam_role_resolver``): ``iam:SimulatePrincipalPolicy`` on the
role for the actions a training or processing role needs, then ``iam:GetRole`` for the trust
policy, which must let ``sagemaker.amazonaws.com`` assume the role. The embedded moto has no
policy simulator and knows only the roles created in it.

The engine enforces no IAM policy: any role ARN of its own account runs jobs. So it answers as
AWS answers for a role that exists and holds the permissions it is asked about:

* ``GetRole`` of a role moto does not hold creates it in moto first, trusted by SageMaker, so
  it exists from then on (``ListRoles``, ``GetRole`` agree); roles created with ``CreateRole``
  are answered by moto as they are;
* ``SimulatePrincipalPolicy`` on a role or user ARN of the engine's account answers
  ``allowed`` for every action and resource asked; an ARN of another account is
  ``NoSuchEntity``, as for AWS an unknown principal is.

Every other IAM action goes to moto unchanged.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from xml.sax.saxutils import escape

from airflow_sm_provider.local.protocol_errors import SERVICE_KEY, error_response, read_form

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: The trust policy of a role the engine creates on GetRole: SageMaker may assume it.
SAGEMAKER_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
_IAM_NS = "https://iam.amazonaws.com/doc/2010-05-08/"


def role_arn(account_id: str, name: str) -> str:
    """The ARN of role ``name`` (no path) in ``account_id``."""
    return f"arn:aws:iam::{account_id}:role/{name}"


def simulate_principal_policy(params: dict[str, list[str]], account_id: str) -> dict[str, Any]:
    """The evaluation results of ``SimulatePrincipalPolicy``: every action allowed, on every resource.

    ``params`` is the query request's form; raises LookupError when the principal is not of
    ``account_id``.
    """
    source = (params.get("PolicySourceArn") or [""])[0]
    if source.split(":")[4:5] != [account_id]:
        raise LookupError(f"The principal {source} is not of the local engine's account {account_id}.")
    actions = _members(params, "ActionNames")
    resources = _members(params, "ResourceArns") or ["*"]
    return {
        "EvaluationResults": [
            {"EvalActionName": action, "EvalResourceName": resource, "EvalDecision": "allowed"}
            for action in actions
            for resource in resources
        ]
    }


def simulate_response_xml(result: dict[str, Any]) -> str:
    """``result`` of :func:`simulate_principal_policy` as IAM's XML response."""
    members = "".join(
        "<member>"
        f"<EvalActionName>{escape(r['EvalActionName'])}</EvalActionName>"
        f"<EvalResourceName>{escape(r['EvalResourceName'])}</EvalResourceName>"
        f"<EvalDecision>{r['EvalDecision']}</EvalDecision>"
        "<MatchedStatements/><MissingContextValues/>"
        "</member>"
        for r in result["EvaluationResults"]
    )
    return (
        f'<SimulatePrincipalPolicyResponse xmlns="{_IAM_NS}"><SimulatePrincipalPolicyResult>'
        f"<IsTruncated>false</IsTruncated><EvaluationResults>{members}</EvaluationResults>"
        "</SimulatePrincipalPolicyResult>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        "</SimulatePrincipalPolicyResponse>"
    )


def _members(params: dict[str, list[str]], name: str) -> list[str]:
    """The list ``name`` of a query request (``name.member.1``, ``name.member.2``, ...), in order."""
    prefix = f"{name}.member."
    indexed = [
        (int(key[len(prefix) :]), values[0]) for key, values in params.items() if key.startswith(prefix)
    ]
    return [value for _, value in sorted(indexed)]


class IamRoles:
    """WSGI middleware in front of moto: answers IAM as the module docstring says."""

    def __init__(self, app: WsgiApp, account_id: str) -> None:
        self._app = app
        self._account_id = account_id
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get(SERVICE_KEY) != "iam":
            return self._app(environ, start_response)
        params = read_form(environ)
        action = (params.get("Action") or [""])[0]
        if action == "SimulatePrincipalPolicy":
            try:
                result = simulate_principal_policy(params, self._account_id)
            except LookupError as err:
                return error_response(start_response, "query", "NoSuchEntity", 404, str(err))
            payload = simulate_response_xml(result).encode()
            start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(payload)))])
            return [payload]
        if action == "GetRole" and params.get("RoleName"):
            self._ensure_role(params["RoleName"][0])
        return self._app(environ, start_response)

    def _ensure_role(self, name: str) -> None:
        """Create role ``name`` in moto, trusted by SageMaker, unless moto holds it."""
        from moto.iam.models import iam_backends

        backend = iam_backends[self._account_id]["global"]
        with self._lock:  # two first GetRoles at once must not both create it
            if any(role.name == name for role in backend.get_roles()):
                return
            backend.create_role(
                role_name=name,
                assume_role_policy_document=json.dumps(SAGEMAKER_TRUST_POLICY),
                path="/",
                permissions_boundary=None,
                description="Created by the local SageMaker engine: any role of its account may run jobs",
                tags=[],
                max_session_duration=None,
            )
