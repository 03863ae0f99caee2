"""Translating botocore failures into domain errors at the adapter boundary.

Layer: aws. Throttling, timeouts, unreachable endpoints and bodies cut short become ``DependencyUnavailable``
(503 with ``Retry-After``); everything else is left to the caller, which knows what a failed condition means
for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import ClientPayloadError
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError, IncompleteReadError

from service.core.errors import DependencyUnavailable

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "SlowDown",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "RequestThrottled",
    }
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def unavailable_on_transient(service: str) -> Iterator[None]:
    """Turn transient AWS failures into ``DependencyUnavailable`` naming the service."""
    try:
        yield
    except ClientError as exc:
        if error_code(exc) in THROTTLING_CODES:
            raise DependencyUnavailable(f"{service} is busy; retry shortly.") from exc
        raise
    except (ConnectionError, HTTPClientError) as exc:
        raise DependencyUnavailable(f"{service} is unreachable; retry shortly.") from exc
    except (ClientPayloadError, IncompleteReadError) as exc:
        # A body cut short while it was read (aiobotocore streams it over aiohttp): nothing was learnt.
        raise DependencyUnavailable(f"{service} broke off a response; retry shortly.") from exc
    except BotoCoreError as exc:
        if "timeout" in type(exc).__name__.lower():
            raise DependencyUnavailable(f"{service} timed out; retry shortly.") from exc
        raise
