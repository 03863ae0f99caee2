"""A focused IAM policy evaluator for the statement shapes this project generates, with the condition keys
the emulator ignores (EMULATOR.md: moto evaluates no session policy and none of these keys).

Tests layer, not product code. It follows AWS's documented evaluation logic
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):

- a statement applies when its ``Action`` matches (case-insensitive, ``*``/``?`` wildcards), its
  ``Resource`` matches (case-sensitive wildcards; ``*`` crosses ``/``), its ``Principal`` matches (resource
  policies) and every condition holds: operators are ANDed, keys within an operator are ANDed, the values
  listed for one key are ORed; condition key names are case-insensitive;
- ``Null``: ``"true"`` holds when the key is absent from the request, ``"false"`` when present;
- any other operator on a key absent from the request does not hold, unless it ends in ``IfExists``;
- ``ForAnyValue:`` holds when any of the request's values matches any policy value (absent: false);
- an explicit Deny in any policy wins; otherwise the request is allowed when the identity policy allows it
  and, for a role session, the session policy allows it too (a session policy only narrows).

Anything else (``NotAction``, ``NotResource``, policy variables, other operators) raises, so a policy that
strays outside what is evaluated here fails its test instead of passing by accident.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Effect = Literal["Allow", "Deny", "NotApplicable"]
ContextValue = str | bool | datetime | Sequence[str]

_OPERATORS = {"StringEquals", "StringLike", "ArnEquals", "ArnLike", "Bool", "DateLessThan", "DateGreaterThan", "Null"}


@dataclass(frozen=True)
class Request:
    """One request as IAM sees it: the action it is authorized as, the resource, who makes it, and the
    request context (condition keys; absent keys are simply not in ``context``)."""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    principal: str = "arn:aws:sts::123456789012:assumed-role/filesync-upload/filesync-alice"


def evaluate(policy: Mapping[str, Any], request: Request) -> Effect:
    """What one policy says about ``request``: Deny if a Deny statement applies, else Allow if an Allow
    statement applies, else NotApplicable."""
    effects = {statement["Effect"] for statement in _statements(policy) if _applies(statement, request)}
    if "Deny" in effects:
        return "Deny"
    return "Allow" if "Allow" in effects else "NotApplicable"


def is_allowed(
    request: Request,
    *,
    identity: Iterable[Mapping[str, Any]],
    session: Mapping[str, Any] | None = None,
    resource: Mapping[str, Any] | None = None,
) -> bool:
    """The decision for a request by a role session: ``identity`` is the role's policies (all of them:
    inline, and the revocations), ``session`` the session policy it was minted with, ``resource`` the
    bucket policy. A resource policy here only denies (its Allows would name principals we never use)."""
    identity = list(identity)
    everything = [*identity, *([session] if session is not None else []), *([resource] if resource else [])]
    if any(evaluate(policy, request) == "Deny" for policy in everything):
        return False
    if not any(evaluate(policy, request) == "Allow" for policy in identity):
        return False
    return session is None or evaluate(session, request) == "Allow"


# --- matching ---------------------------------------------------------------------------------------


def _statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = policy["Statement"]
    return [statements] if isinstance(statements, Mapping) else list(statements)


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
        if unsupported in statement:
            raise NotImplementedError(f"{unsupported} is not evaluated here")
    if statement["Effect"] not in ("Allow", "Deny"):
        raise ValueError(f"not an effect: {statement['Effect']!r}")
    if not any(_wildcard(a, request.action, case=False) for a in _listed(statement["Action"])):
        return False
    if not any(_wildcard(r, request.resource, case=True) for r in _listed(statement["Resource"])):
        return False
    if "Principal" in statement and not _principal(statement["Principal"], request.principal):
        return False
    return all(
        _condition(operator, key, values, request.context)
        for operator, keys in statement.get("Condition", {}).items()
        for key, values in keys.items()
    )


def _wildcard(pattern: str, value: str, *, case: bool) -> bool:
    if "${" in pattern:
        raise NotImplementedError(f"policy variables are not evaluated here: {pattern!r}")
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _principal(expected: Any, principal: str) -> bool:
    if expected == "*":
        return True
    # An AWS principal (an ARN) or a service principal ("sns.amazonaws.com").
    return any(p == "*" or p == principal for kind in ("AWS", "Service") for p in _listed(expected.get(kind, [])))


def _condition(operator: str, key: str, values: Any, context: Mapping[str, ContextValue]) -> bool:
    wanted = [str(v) if not isinstance(v, bool) else str(v).lower() for v in _listed(values)]
    found = next((v for k, v in context.items() if k.lower() == key.lower()), None)
    base, if_exists = (operator.removesuffix("IfExists"), operator.endswith("IfExists"))
    qualifier, _, base = base.rpartition(":")
    if base not in _OPERATORS or qualifier not in ("", "ForAnyValue"):
        raise NotImplementedError(f"condition operator {operator!r} is not evaluated here")
    if base == "Null":
        if if_exists or qualifier:
            raise ValueError("Null takes neither IfExists nor a set qualifier")
        return any((found is None) == (w.lower() == "true") for w in wanted)
    if found is None:
        return if_exists
    if qualifier == "ForAnyValue" and not isinstance(found, list | tuple):
        raise ValueError(f"{key} is single-valued; ForAnyValue takes a multi-valued key")
    present = list(found) if isinstance(found, list | tuple) else [found]
    return any(_match(base, have, w) for have in present for w in wanted)


def _match(operator: str, have: Any, wanted: str) -> bool:
    if operator == "StringEquals":
        return str(have) == wanted
    if operator in ("StringLike", "ArnLike", "ArnEquals"):  # ArnEquals takes wildcards too
        return fnmatch.fnmatchcase(str(have), wanted)
    if operator == "Bool":
        return str(have).lower() == wanted.lower()
    left, right = _date(have), _date(wanted)
    return left < right if operator == "DateLessThan" else left > right


def _date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    if re.fullmatch(r"\d+", text):  # epoch seconds
        return datetime.fromtimestamp(int(text), UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- S3 requests as IAM sees them ----------------------------------------------------------------------

#: How S3 authorizes each operation, and the value of ``s3:ObjectCreationOperation`` it sets (None: it sets
#: none). AWS: PutObject, CompleteMultipartUpload and CopyObject create objects (true); the multipart steps
#: that cannot carry a conditional header are false; a browser form POST sets no value at all.
S3_OPERATIONS: dict[str, tuple[str, str | None]] = {
    "PutObject": ("s3:PutObject", "true"),
    "CompleteMultipartUpload": ("s3:PutObject", "true"),
    "CopyObject": ("s3:PutObject", "true"),
    "CreateMultipartUpload": ("s3:PutObject", "false"),
    "UploadPart": ("s3:PutObject", "false"),
    "UploadPartCopy": ("s3:PutObject", "false"),
    "PostObject": ("s3:PutObject", None),
    "GetObject": ("s3:GetObject", None),
    "GetObjectVersion": ("s3:GetObjectVersion", None),
    "HeadObject": ("s3:GetObject", None),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", None),
    "ListParts": ("s3:ListMultipartUploadParts", None),
    "DeleteObject": ("s3:DeleteObject", None),
    "PutObjectAcl": ("s3:PutObjectAcl", None),
}


#: How creating an object under a blob key must fare, by operation and whether it carries
#: ``If-None-Match: *``: (operation, with the header, allowed). Parts and part copies are exempt (their upload
#: is completed with the header); a copy or a form POST can never create a blob.
BLOB_CREATION_CASES = [
    ("PutObject", False, False),
    ("PutObject", True, True),
    ("CompleteMultipartUpload", False, False),
    ("CompleteMultipartUpload", True, True),
    ("CreateMultipartUpload", False, True),
    ("UploadPart", False, True),
    ("UploadPartCopy", False, True),
    ("CopyObject", False, False),
    ("PostObject", False, False),
]


def s3_request(
    operation: str,
    bucket: str,
    key: str,
    *,
    if_none_match: bool = False,
    context: Mapping[str, ContextValue] | None = None,
    principal: str | None = None,
) -> Request:
    """``operation`` on ``bucket``/``key`` as IAM evaluates it; ``if_none_match``: the request carries
    ``If-None-Match: *``."""
    action, creation = S3_OPERATIONS[operation]
    keys: dict[str, ContextValue] = {"aws:SecureTransport": "true", **(context or {})}
    if creation is not None:
        keys["s3:ObjectCreationOperation"] = creation
    if if_none_match:
        keys["s3:if-none-match"] = "*"
    if operation in ("CopyObject", "UploadPartCopy"):
        keys["s3:x-amz-copy-source"] = f"{bucket}/{key}.source"
    extra = {"principal": principal} if principal is not None else {}
    return Request(action, f"arn:aws:s3:::{bucket}/{key}", keys, **extra)


def resolve(document: Any, values: Mapping[str, str], conditions: Mapping[str, bool] | None = None) -> Any:
    """A CloudFormation policy document with ``Ref``/``Fn::GetAtt``/``Fn::Sub`` replaced by ``values``
    (logical id, or ``<id>.<attribute>``, to a string) and ``Fn::If`` decided by ``conditions`` (a condition
    not named is false)."""
    decided = conditions or {}
    if isinstance(document, list):
        return [resolve(v, values, decided) for v in document]
    if not isinstance(document, dict):
        return document
    if set(document) == {"Ref"}:
        return values[document["Ref"]]
    if set(document) == {"Fn::GetAtt"}:
        return values[".".join(document["Fn::GetAtt"])]
    if set(document) == {"Fn::If"}:
        condition, if_true, if_false = document["Fn::If"]
        return resolve(if_true if decided.get(condition, False) else if_false, values, decided)
    if set(document) == {"Fn::Sub"}:
        if isinstance(document["Fn::Sub"], str):  # pseudo parameters only: left as they are
            return document["Fn::Sub"]
        text, variables = document["Fn::Sub"]
        for name, value in variables.items():
            text = text.replace("${" + name + "}", resolve(value, values, decided))
        return text
    return {k: resolve(v, values, decided) for k, v in document.items()}
