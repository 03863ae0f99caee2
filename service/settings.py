"""Settings: the one typed, frozen configuration object, and the only reader of the environment.

Layer: leaf. Imports nothing from the project but ``service.resources``. `Settings.from_env()` reads
standard `AWS_*` variables (region, credentials, `AWS_ENDPOINT_URL` and the per-service
`AWS_ENDPOINT_URL_<SERVICE>` that botocore knows) and our own `FILESYNC_*` variables. Everything else takes
a `Settings` as an argument; tests build one directly.

Each field is declared once, where its class names it: ``name: type = env("VARIABLE", default, bounds)``.
One generic reader (``_read``) parses every declared field by its type (int, float, bool, str, optional
str, a ``Literal``'s choices) and checks its bounds; ``from_env`` adds only what spans fields (the
backend, the per-service endpoints, the secrets and role AWS requires). The defaults are what an empty
environment gives: ``Settings() == Settings.from_env({})`` (the embedded default); a field whose default
differs when the backend is AWS says so with ``on_aws``.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union

from service.resources import UPLOAD_ROLE_MAX_SESSION_SECONDS

Backend = Literal["aws", "embedded"]
LogFormat = Literal["json", "text"]

#: Services the service talks to; each may have its own `AWS_ENDPOINT_URL_<NAME>`.
AWS_SERVICES = ("s3", "dynamodb", "sts", "ses", "sqs", "iam")
#: STS's shortest AssumeRole session: no credential can be minted for less.
_STS_MIN_SECONDS = 900

#: Any of these set means "the operator configured AWS": the embedded default stays off.
_AWS_MARKERS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)

#: Credentials moto's server accepts; only ever used against the embedded emulator.
EMULATOR_ACCESS_KEY = "testing"
EMULATOR_REGION = "us-east-1"

MiB = 1024 * 1024

#: Where prometheus-client keeps each process's metric values when several processes (gunicorn's workers)
#: serve one ``/metrics`` (its multiprocess mode; the library reads the same variable when it is imported).
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

_C = TypeVar("_C", bound=str)
_D = TypeVar("_D")
_SAME: Any = object()


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Variable:
    """Where one field comes from: its variables (the first one set wins), its bounds, its AWS default.

    ``minimum``/``maximum`` bound an int (inclusive); a float must be positive unless ``minimum`` says
    otherwise (inclusive). ``upper``: a choice is spelled in upper case (log levels)."""

    names: tuple[str, ...]
    minimum: float | None = None
    maximum: float | None = None
    on_aws: Any = _SAME
    upper: bool = False


def env(
    names: str | tuple[str, ...],
    default: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    on_aws: Any = _SAME,
    upper: bool = False,
    repr: bool = True,
) -> Any:
    """A dataclass field read from the environment: ``names`` (the first one set wins), ``default`` when none
    is (``on_aws`` instead when the backend is AWS, if given), parsed by the field's type within bounds."""
    variable = Variable((names,) if isinstance(names, str) else names, minimum, maximum, on_aws, upper)
    return field(default=default, repr=repr, metadata={"env": variable})


@dataclass(frozen=True, slots=True)
class AwsSettings:
    """How to reach AWS (or an S3/DynamoDB-compatible endpoint)."""

    region: str = env(("AWS_REGION", "AWS_DEFAULT_REGION"), EMULATOR_REGION)
    endpoint_url: str | None = env("AWS_ENDPOINT_URL", None)
    #: Per-service endpoint overrides, e.g. ``{"s3": "http://..."}`` from ``AWS_ENDPOINT_URL_S3``.
    service_endpoints: tuple[tuple[str, str], ...] = ()
    access_key_id: str | None = env("AWS_ACCESS_KEY_ID", None)
    secret_access_key: str | None = env("AWS_SECRET_ACCESS_KEY", None, repr=False)
    session_token: str | None = env("AWS_SESSION_TOKEN", None, repr=False)
    profile: str | None = env("AWS_PROFILE", None)
    max_pool_connections: int = env("FILESYNC_AWS_MAX_POOL", 64, minimum=1)
    connect_timeout: float = env("FILESYNC_AWS_CONNECT_TIMEOUT", 5.0)
    read_timeout: float = env("FILESYNC_AWS_READ_TIMEOUT", 30.0)
    max_attempts: int = env("FILESYNC_AWS_MAX_ATTEMPTS", 4, minimum=1)
    s3_addressing_style: Literal["auto", "path", "virtual"] = env("FILESYNC_S3_ADDRESSING_STYLE", "auto")

    def endpoint_for(self, service: str) -> str | None:
        """The endpoint URL for one service: its own variable first, then the global one."""
        return dict(self.service_endpoints).get(service, self.endpoint_url)


@dataclass(frozen=True, slots=True)
class Limits:
    """Explicit limits on what one request may carry. Each is documented in docs/api.md (Limits)."""

    #: Largest JSON request body, in bytes (413 past it).
    max_json_body: int = env("FILESYNC_MAX_JSON_BODY", 1 * MiB, minimum=1024)
    #: Largest compare request (a manifest page of up to 5,000 entries with long paths).
    max_compare_body: int = env("FILESYNC_MAX_COMPARE_BODY", 8 * MiB, minimum=64 * 1024)
    #: A request body that sends nothing for this long is cut off with 408 (slow or stalled clients).
    body_idle_seconds: float = env("FILESYNC_BODY_IDLE_SECONDS", 30.0)
    #: A whole request body must arrive within ``body_seconds``, plus one second for every
    #: ``body_min_rate`` bytes received (a large upload at a fair pace is never cut off; a trickle is): 408.
    body_seconds: float = env("FILESYNC_BODY_SECONDS", 60.0)
    body_min_rate: int = env("FILESYNC_BODY_MIN_RATE", 16 * 1024, minimum=1)
    #: Bytes of request bodies one worker holds at once, across all requests (each reserves its
    #: worst case before reading); past it, 503 with ``Retry-After`` and nothing read.
    body_budget: int = env("FILESYNC_BODY_BUDGET", 256 * MiB, minimum=16 * MiB)
    #: A request head (request line and headers) must arrive whole within this long of its first byte (of
    #: the connection's opening, for its first request); else the connection is closed.
    header_seconds: float = env("FILESYNC_HEADER_SECONDS", 10.0)
    #: An idle keep-alive connection is closed after this long (above the load balancer's 70 s idle timeout,
    #: so the load balancer always closes first).
    keepalive_seconds: float = env("FILESYNC_KEEPALIVE_SECONDS", 75.0)
    #: Uploads streamed through one worker at once per user (429 past it); each holds up to
    #: upload_concurrency x block_size of memory.
    max_streams_per_user: int = env("FILESYNC_MAX_STREAMS_PER_USER", 4, minimum=1)


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Accounts, tokens, login throttling and the temporary AWS credentials handed to clients."""

    #: Whether ``POST /v1/auth/signup`` is open to anyone (on in the embedded default, off with AWS).
    open_signup: bool = env("FILESYNC_OPEN_SIGNUP", True, on_aws=False)
    access_token_seconds: int = env("FILESYNC_ACCESS_TOKEN_SECONDS", 300, minimum=30)
    refresh_token_seconds: int = env("FILESYNC_REFRESH_TOKEN_SECONDS", 30 * 86400, minimum=300)
    #: Default lifetime of minted STS credentials: 900, STS's minimum for AssumeRole, is the floor (and
    #: ``credentials_max_seconds`` the ceiling, checked by ``from_env``).
    credentials_seconds: int = env("FILESYNC_CREDENTIALS_SECONDS", 900, minimum=_STS_MIN_SECONDS)
    #: The longest lifetime a client may ask for (at most the upload role's maximum session).
    credentials_max_seconds: int = env(
        "FILESYNC_CREDENTIALS_MAX_SECONDS",
        UPLOAD_ROLE_MAX_SESSION_SECONDS,
        minimum=_STS_MIN_SECONDS,
        maximum=UPLOAD_ROLE_MAX_SESSION_SECONDS,
    )
    #: Failed logins allowed per account, and per client address, within the window; then 429.
    login_max_failures: int = env("FILESYNC_LOGIN_MAX_FAILURES", 10, minimum=1)
    login_max_failures_per_address: int = env("FILESYNC_LOGIN_MAX_FAILURES_PER_ADDRESS", 50, minimum=1)
    login_window_seconds: int = env("FILESYNC_LOGIN_WINDOW_SECONDS", 900, minimum=1)
    #: How often each worker reads new token revocations (logout, password change, disable).
    revocation_poll_seconds: float = env("FILESYNC_REVOCATION_POLL_SECONDS", 1.0)
    #: Take the client address from the last ``X-Forwarded-For`` hop (behind the load balancer).
    trust_forwarded_for: bool = env("FILESYNC_TRUST_FORWARDED_FOR", False)
    #: argon2id cost parameters (argon2-cffi's defaults: RFC 9106 low-memory profile).
    argon2_time_cost: int = env("FILESYNC_ARGON2_TIME_COST", 3, minimum=1)
    argon2_memory_kib: int = env("FILESYNC_ARGON2_MEMORY_KIB", 65536, minimum=8192)
    argon2_parallelism: int = env("FILESYNC_ARGON2_PARALLELISM", 4, minimum=1)
    #: Password hashes computed at once per worker (each takes ``argon2_memory_kib``).
    max_concurrent_hashes: int = env("FILESYNC_MAX_CONCURRENT_HASHES", 2, minimum=1)


@dataclass(frozen=True, slots=True)
class FileSettings:
    """File bodies: block size, verification, transfer concurrency, URL lifetimes, upload clean-up."""

    #: Content-hash block size and multipart part size (at least S3's 5 MiB part minimum).
    block_size: int = env("FILESYNC_BLOCK_SIZE", 8 * MiB, minimum=5 * MiB)
    #: How commits prove content matches its hash: the SHA-256 checksum S3 verified and stored (a HeadObject;
    #: the embedded emulator checks checksums as S3 does), or reading it once (for S3-compatible stores that
    #: do not check the checksums they are sent).
    verify: Literal["checksum", "read"] = env("FILESYNC_VERIFY", "checksum")
    #: Parts in flight per streaming upload through the service (memory: this x block_size).
    upload_concurrency: int = env("FILESYNC_UPLOAD_CONCURRENCY", 4, minimum=1)
    #: Small files sent in the body of one batch request (``POST /v1/ns/{ns}/files:batch``): each body at
    #: most ``inline_max_file`` bytes, the whole request at most ``inline_max_request``. Larger files go
    #: straight to S3 with scoped credentials.
    inline_max_file: int = env("FILESYNC_INLINE_MAX_FILE", 256 * 1024, minimum=1, maximum=5 * MiB)
    inline_max_request: int = env("FILESYNC_INLINE_MAX_REQUEST", 16 * MiB, minimum=64 * 1024)
    #: Whether content a batch stores in a pack gets a record of its own (``BLOB#``), as other verified
    #: content does: exact dedup and ``blobs:check`` across packs and loose blobs, at one more transaction
    #: action per new file (49 files a transaction instead of 98). Off: only its versions name it.
    record_packed: bool = env("FILESYNC_RECORD_PACKED", False)
    #: Bytes of retained versions an account may hold unless it has a quota of its own (0: no limit).
    default_quota: int = env("FILESYNC_DEFAULT_QUOTA", 10 * 1024 * MiB, minimum=0)
    #: Lifetime of presigned upload URLs and of download redirects.
    presign_seconds: int = env("FILESYNC_PRESIGN_SECONDS", 900, minimum=60)
    download_url_seconds: int = env("FILESYNC_DOWNLOAD_URL_SECONDS", 60, minimum=5)
    #: Multipart uploads the service started and nobody finished are aborted after this long.
    abandoned_upload_seconds: int = env("FILESYNC_ABANDONED_UPLOAD_SECONDS", 86400, minimum=60)
    upload_sweep_seconds: float = env("FILESYNC_UPLOAD_SWEEP_SECONDS", 600.0)
    #: How often a worker reads the heads of the namespaces its long-polls wait on.
    feed_poll_seconds: float = env("FILESYNC_FEED_POLL_SECONDS", 0.5)


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """Change notifications by email: the digest window, caps, and how notifiers share the work."""

    #: A follower's changes are gathered for this long after the first one, then sent as one digest.
    window_seconds: float = env("FILESYNC_NOTIFY_WINDOW_SECONDS", 60.0)
    #: Digests per follower per UTC day; past it, changes wait for the next day's single digest.
    daily_cap: int = env("FILESYNC_NOTIFY_DAILY_CAP", 24, minimum=1)
    #: Changes listed by name in one digest; the rest are counted ("and N more").
    max_listed: int = env("FILESYNC_NOTIFY_MAX_LISTED", 50, minimum=1)
    #: Units of work notifiers divide between them by lease (namespaces and followers hash into shards).
    shards: int = env("FILESYNC_NOTIFY_SHARDS", 16, minimum=1)
    #: A notifier that stops renewing its leases loses them after this long; another takes over.
    lease_seconds: float = env("FILESYNC_NOTIFY_LEASE_SECONDS", 30.0)
    #: How often a notifier reads the journals of its namespaces and sends what is due.
    tick_seconds: float = env("FILESYNC_NOTIFY_TICK_SECONDS", 2.0)
    #: Run a notifier inside each service process (the embedded default), instead of its own process.
    in_process: bool = env("FILESYNC_NOTIFIER_IN_PROCESS", True, on_aws=False)
    #: The service's public base URL, for the links in emails (None: where it listens).
    public_url: str | None = env("FILESYNC_PUBLIC_URL", None)
    #: How long an address confirmation link works.
    confirm_link_seconds: int = env("FILESYNC_CONFIRM_LINK_SECONDS", 86400, minimum=300)
    #: Confirmation mails per hour, per account and per recipient address (first mails and re-sends).
    confirm_mails_per_hour: int = env("FILESYNC_CONFIRM_MAILS_PER_HOUR", 3, minimum=1)
    #: How long an unsubscribe link works (at least 30 days: how long one must keep working after sending).
    unsubscribe_link_seconds: int = env("FILESYNC_UNSUBSCRIBE_LINK_SECONDS", 60 * 86400, minimum=30 * 86400)
    #: The SES configuration set mail is sent with (its reputation metrics, and its bounce and complaint
    #: events to the feedback queue); None: none.
    configuration_set: str | None = env("FILESYNC_SES_CONFIGURATION_SET", None)
    #: The SQS queue SES's bounce and complaint notifications arrive in; the notifier reads it and
    #: suppresses the addresses. None: no feedback is read (nothing is suppressed).
    feedback_queue_url: str | None = env("FILESYNC_MAIL_FEEDBACK_QUEUE_URL", None)
    #: How long one read of the feedback queue waits for a message (SQS's long-poll, 0 to 20 s).
    feedback_wait_seconds: int = env("FILESYNC_MAIL_FEEDBACK_WAIT_SECONDS", 20, minimum=0, maximum=20)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs to know about its environment."""

    backend: Backend = "embedded"
    aws: AwsSettings = AwsSettings()
    bucket: str = env("FILESYNC_BUCKET", "filesync-blobs")
    table: str = env("FILESYNC_TABLE", "filesync")
    upload_role_arn: str | None = env("FILESYNC_UPLOAD_ROLE_ARN", None)
    mail_from: str = env("FILESYNC_MAIL_FROM", "filesync@example.com")
    token_secret: str = env("FILESYNC_TOKEN_SECRET", "", repr=False)
    limits: Limits = Limits()
    auth: AuthSettings = AuthSettings()
    files: FileSettings = FileSettings()
    notify: NotifySettings = NotifySettings()
    #: The S3 endpoint clients are told to use with their credentials (None: AWS's regional one).
    s3_public_endpoint: str | None = env("FILESYNC_S3_PUBLIC_ENDPOINT", None)
    host: str = env("FILESYNC_HOST", "127.0.0.1")
    #: ``PORT`` (what platforms such as Heroku set) wins over ``FILESYNC_PORT``.
    port: int = env(("PORT", "FILESYNC_PORT"), 8080, minimum=0)
    log_format: Literal["json", "text"] = env("FILESYNC_LOG_FORMAT", "text", on_aws="json")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = env("FILESYNC_LOG_LEVEL", "INFO", upper=True)
    #: How long a readiness result is reused, so load balancer checks cost few AWS calls.
    readiness_cache_seconds: float = env("FILESYNC_READINESS_CACHE_SECONDS", 2.0)
    readiness_timeout_seconds: float = env("FILESYNC_READINESS_TIMEOUT_SECONDS", 2.0)
    #: How long shutdown waits for in-flight requests once the worker stopped listening.
    shutdown_timeout_seconds: float = env("FILESYNC_SHUTDOWN_TIMEOUT_SECONDS", 25.0)
    #: Before that, the drain: from SIGTERM the worker answers its long-polls at once, closes every
    #: connection after its response, and keeps listening while requests are in flight (a load balancer
    #: deregistering it sends no new ones), at most this long. Drain plus shutdown stay below gunicorn's
    #: ``--graceful-timeout``; the API target group's deregistration delay is the same 300 s.
    drain_seconds: float = env("FILESYNC_DRAIN_SECONDS", 300.0)
    #: The drain lasts at least this long, for requests a load balancer still routes here in the seconds
    #: after deregistration began (0: it ends as soon as no connection is open).
    drain_linger_seconds: float = env("FILESYNC_DRAIN_LINGER_SECONDS", 0.0, minimum=0.0)
    #: prometheus-client's multiprocess directory: ``/metrics`` then sums every worker's figures.
    metrics_dir: str | None = env(METRICS_DIR_VARIABLE, None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, signs_tokens: bool = True) -> Settings:
        """Build settings from the environment (``os.environ`` unless given). ``signs_tokens=False`` is for
        the administration commands, which never sign or check a token: they run without the signing
        secret (a throwaway one stands in), so creating an account needs no copy of it on a workstation."""
        env = os.environ if environ is None else environ
        backend = _backend(env)
        aws = _read(
            AwsSettings,
            env,
            backend,
            service_endpoints=tuple(
                (name, env[var])
                for name in AWS_SERVICES
                if (var := f"AWS_ENDPOINT_URL_{name.upper()}") in env and env[var]
            ),
        )
        settings = _read(
            cls,
            env,
            backend,
            backend=backend,
            aws=aws,
            limits=_read(Limits, env, backend),
            auth=_read(AuthSettings, env, backend),
            files=_read(FileSettings, env, backend),
            notify=_read(NotifySettings, env, backend),
        )
        auth, notify = settings.auth, settings.notify
        if auth.credentials_seconds > auth.credentials_max_seconds:
            raise SettingsError(
                f"FILESYNC_CREDENTIALS_SECONDS must be at most {auth.credentials_max_seconds}, "
                f"got {auth.credentials_seconds}"
            )
        token_secret = settings.token_secret
        if not signs_tokens and not token_secret:
            token_secret = secrets.token_urlsafe(48)
        if backend == "aws" and len(token_secret) < 32:
            raise SettingsError(
                "FILESYNC_TOKEN_SECRET must be set to at least 32 characters when using AWS "
                "(every worker must share it); generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        if backend == "aws" and settings.upload_role_arn is None:
            raise SettingsError(
                "FILESYNC_UPLOAD_ROLE_ARN must name the role clients' temporary credentials come from "
                "(the stack's UploadRoleArn output)"
            )
        return dataclasses.replace(
            settings,
            token_secret=token_secret,
            notify=dataclasses.replace(notify, public_url=(notify.public_url or "").rstrip("/") or None),
            s3_public_endpoint=settings.s3_public_endpoint or aws.endpoint_for("s3"),
        )

    def for_emulator(self, endpoint_url: str) -> Settings:
        """These settings pointed at an embedded emulator: its endpoint, its credentials, a fresh secret."""
        return dataclasses.replace(
            self,
            backend="embedded",
            aws=dataclasses.replace(
                self.aws,
                region=EMULATOR_REGION,
                endpoint_url=endpoint_url,
                service_endpoints=(),
                access_key_id=EMULATOR_ACCESS_KEY,
                secret_access_key=EMULATOR_ACCESS_KEY,
                session_token=None,
                profile=None,
            ),
            token_secret=self.token_secret or secrets.token_urlsafe(48),
            s3_public_endpoint=endpoint_url,
        )


def metrics_multiprocess_dir(environ: Mapping[str, str] | None = None) -> str | None:
    """The multiprocess metrics directory, or None (each process counts alone). Read apart from ``Settings``
    because gunicorn's master, which never builds the app, needs it when a worker exits."""
    env = os.environ if environ is None else environ
    return env.get(METRICS_DIR_VARIABLE) or None


def password_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``FILESYNC_PASSWORD`` for the admin command. Kept out of ``Settings``: a password should not live
    in the long-lived configuration object (or its repr) of a server process."""
    env = os.environ if environ is None else environ
    return env.get("FILESYNC_PASSWORD") or None


def declared_variables() -> frozenset[str]:
    """Every environment variable ``Settings.from_env`` reads."""
    names = {"FILESYNC_BACKEND", *(f"AWS_ENDPOINT_URL_{name.upper()}" for name in AWS_SERVICES)}
    for cls in (Settings, AwsSettings, Limits, AuthSettings, FileSettings, NotifySettings):
        for f in dataclasses.fields(cls):
            if (variable := f.metadata.get("env")) is not None:
                names.update(variable.names)
    return frozenset(names)


def _read(cls: type[_D], env: Mapping[str, str], backend: Backend, /, **given: Any) -> _D:
    """``cls`` with each declared field (``env(...)``) not in ``given`` read from ``env`` by its type."""
    hints = typing.get_type_hints(cls)
    values = dict(given)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        variable: Variable | None = f.metadata.get("env")
        if variable is None or f.name in given:
            continue
        default = variable.on_aws if backend == "aws" and variable.on_aws is not _SAME else f.default
        values[f.name] = _parse(env, variable, hints[f.name], default)
    return cls(**values)


def _parse(env: Mapping[str, str], variable: Variable, kind: Any, default: Any) -> Any:
    """The first of ``variable.names`` that is set and not empty, parsed as ``kind``; else ``default``. Every
    one that is set is checked, so a bad value never hides behind another variable."""
    value = default
    for name in reversed(variable.names):
        value = _parse_one(env, name, variable, kind, value)
    return value


def _parse_one(env: Mapping[str, str], name: str, variable: Variable, kind: Any, default: Any) -> Any:
    choices = _choices(kind)
    if choices is not None:
        return _choice(env, name, choices, default, upper=variable.upper)
    if kind is bool:
        return _bool(env, name, default)
    if kind is int:
        assert variable.minimum is not None, f"{name}: an int needs its minimum"
        maximum = None if variable.maximum is None else int(variable.maximum)
        return _int(env, name, default, minimum=int(variable.minimum), maximum=maximum)
    if kind is float:
        return _float(env, name, default, minimum=variable.minimum)
    if kind is str or _optional_str(kind):
        return env.get(name) or default
    raise TypeError(f"{name}: no reader for {kind!r}")


def _choices(kind: Any) -> tuple[str, ...] | None:
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else None


def _optional_str(kind: Any) -> bool:
    return typing.get_origin(kind) in (Union, types.UnionType) and set(typing.get_args(kind)) == {str, type(None)}


def _backend(env: Mapping[str, str]) -> Backend:
    chosen = _choice(env, "FILESYNC_BACKEND", ("auto", "aws", "embedded"), "auto")
    if chosen == "auto":
        configured = any(env.get(name) for name in _AWS_MARKERS) or any(
            env.get(f"AWS_ENDPOINT_URL_{name.upper()}") for name in AWS_SERVICES
        )
        return "aws" if configured else "embedded"
    return "aws" if chosen == "aws" else "embedded"


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float | None = None) -> float:
    """A number: positive, or at least ``minimum`` when given (never NaN)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if minimum is None and not value > 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    if minimum is not None and not value >= minimum:
        raise SettingsError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[_C, ...], default: _C, *, upper: bool = False) -> _C:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    wanted = raw.upper() if upper else raw.lower()
    for choice in choices:
        if choice == wanted:
            return choice
    raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {raw!r}")
