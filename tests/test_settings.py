"""Settings from the environment: backend choice, AWS endpoints, our own variables, clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.settings import Settings, SettingsError, declared_variables

SECRET = "s" * 40
ROLE = "arn:aws:iam::123456789012:role/filesync-upload"


def test_no_aws_settings_means_the_embedded_default():
    settings = Settings.from_env({})
    assert settings.backend == "embedded"
    assert settings.log_format == "text"


@pytest.mark.parametrize(
    "variable",
    ["AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"],
)
def test_any_aws_setting_selects_aws(variable: str):
    settings = Settings.from_env({variable: "x", "FILESYNC_TOKEN_SECRET": SECRET, "FILESYNC_UPLOAD_ROLE_ARN": ROLE})
    assert settings.backend == "aws"
    assert settings.log_format == "json"


def test_backend_can_be_forced():
    env = {"AWS_REGION": "eu-west-1", "FILESYNC_BACKEND": "embedded"}
    assert Settings.from_env(env).backend == "embedded"


def test_per_service_endpoint_overrides_the_global_one():
    settings = Settings.from_env(
        {
            "AWS_ENDPOINT_URL": "http://global:1",
            "AWS_ENDPOINT_URL_S3": "http://s3:2",
            "AWS_REGION": "eu-west-1",
            "FILESYNC_TOKEN_SECRET": SECRET,
            "FILESYNC_UPLOAD_ROLE_ARN": ROLE,
        }
    )
    assert settings.aws.region == "eu-west-1"
    assert settings.aws.endpoint_for("s3") == "http://s3:2"
    assert settings.aws.endpoint_for("dynamodb") == "http://global:1"


def test_filesync_variables_are_read():
    settings = Settings.from_env(
        {
            "AWS_DEFAULT_REGION": "ap-south-1",
            "FILESYNC_TOKEN_SECRET": SECRET,
            "FILESYNC_UPLOAD_ROLE_ARN": ROLE,
            "FILESYNC_BUCKET": "my-bucket",
            "FILESYNC_TABLE": "my-table",
            "FILESYNC_MAX_JSON_BODY": "2048",
            "FILESYNC_LOG_FORMAT": "TEXT",
            "FILESYNC_LOG_LEVEL": "debug",
            "PORT": "9000",
        }
    )
    assert (settings.aws.region, settings.bucket, settings.table) == ("ap-south-1", "my-bucket", "my-table")
    assert settings.limits.max_json_body == 2048
    assert settings.log_format == "text"
    assert settings.log_level == "DEBUG"
    assert settings.port == 9000


def test_aws_backend_requires_a_shared_token_secret():
    with pytest.raises(SettingsError, match="FILESYNC_TOKEN_SECRET"):
        Settings.from_env({"AWS_REGION": "us-east-1", "FILESYNC_TOKEN_SECRET": "short"})


def test_aws_backend_requires_the_upload_role():
    with pytest.raises(SettingsError, match="FILESYNC_UPLOAD_ROLE_ARN"):
        Settings.from_env({"AWS_REGION": "us-east-1", "FILESYNC_TOKEN_SECRET": SECRET})


def test_open_signup_defaults_on_only_in_the_embedded_default():
    assert Settings.from_env({}).auth.open_signup
    aws = {"AWS_REGION": "us-east-1", "FILESYNC_TOKEN_SECRET": SECRET, "FILESYNC_UPLOAD_ROLE_ARN": ROLE}
    assert not Settings.from_env(aws).auth.open_signup
    assert Settings.from_env({**aws, "FILESYNC_OPEN_SIGNUP": "true"}).auth.open_signup


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FILESYNC_MAX_JSON_BODY", "lots", "must be an integer"),
        ("FILESYNC_MAX_JSON_BODY", "10", "at least 1024"),
        ("FILESYNC_LOG_FORMAT", "xml", "one of json, text"),
        ("FILESYNC_READINESS_CACHE_SECONDS", "-1", "positive"),
        ("FILESYNC_BACKEND", "gcp", "one of auto, aws, embedded"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, message: str):
    with pytest.raises(SettingsError, match=message) as info:
        Settings.from_env({variable: value})
    assert variable in str(info.value)


def test_secrets_stay_out_of_repr():
    settings = Settings.from_env(
        {
            "AWS_SECRET_ACCESS_KEY": "hunter2-aws",
            "AWS_REGION": "us-east-1",
            "FILESYNC_TOKEN_SECRET": SECRET,
            "FILESYNC_UPLOAD_ROLE_ARN": ROLE,
        }
    )
    assert "hunter2-aws" not in repr(settings)
    assert SECRET not in repr(settings)


def test_for_emulator_points_everything_at_the_emulator():
    settings = Settings(bucket="b").for_emulator("http://127.0.0.1:5555")
    assert settings.backend == "embedded"
    assert settings.aws.endpoint_for("sts") == "http://127.0.0.1:5555"
    assert settings.aws.access_key_id == "testing"
    assert len(settings.token_secret) >= 32


def test_notification_settings_are_read_and_the_embedded_default_runs_its_own_notifier():
    embedded = Settings.from_env({})
    assert embedded.notify.in_process
    assert embedded.notify.public_url is None  # the embedded server fills in where it listens
    aws = Settings.from_env(
        {
            "AWS_REGION": "eu-west-1",
            "FILESYNC_TOKEN_SECRET": "s" * 40,
            "FILESYNC_UPLOAD_ROLE_ARN": "arn:aws:iam::123456789012:role/x",
            "FILESYNC_NOTIFY_WINDOW_SECONDS": "120",
            "FILESYNC_NOTIFY_DAILY_CAP": "3",
            "FILESYNC_NOTIFY_SHARDS": "8",
            "FILESYNC_PUBLIC_URL": "https://files.example.com/",
        }
    )
    assert not aws.notify.in_process
    assert (aws.notify.window_seconds, aws.notify.daily_cap, aws.notify.shards) == (120.0, 3, 8)
    assert aws.notify.public_url == "https://files.example.com"
    with pytest.raises(SettingsError, match="FILESYNC_NOTIFY_DAILY_CAP"):
        Settings.from_env({"FILESYNC_NOTIFY_DAILY_CAP": "0"})


def test_body_idle_timeout_and_streams_per_user_are_read_and_checked():
    settings = Settings.from_env({"FILESYNC_BODY_IDLE_SECONDS": "5", "FILESYNC_MAX_STREAMS_PER_USER": "2"})
    assert (settings.limits.body_idle_seconds, settings.limits.max_streams_per_user) == (5.0, 2)
    assert Settings.from_env({}).limits.body_idle_seconds == 30.0
    with pytest.raises(SettingsError, match="FILESYNC_MAX_STREAMS_PER_USER"):
        Settings.from_env({"FILESYNC_MAX_STREAMS_PER_USER": "0"})
    with pytest.raises(SettingsError, match="FILESYNC_BODY_IDLE_SECONDS"):
        Settings.from_env({"FILESYNC_BODY_IDLE_SECONDS": "0"})


def test_body_deadlines_budget_head_deadline_and_keep_alive_are_read_and_checked():
    settings = Settings.from_env(
        {
            "FILESYNC_BODY_SECONDS": "90",
            "FILESYNC_BODY_MIN_RATE": "4096",
            "FILESYNC_BODY_BUDGET": str(64 * 1024 * 1024),
            "FILESYNC_HEADER_SECONDS": "5",
            "FILESYNC_KEEPALIVE_SECONDS": "80",
            "FILESYNC_MAX_COMPARE_BODY": str(4 * 1024 * 1024),
        }
    )
    limits = settings.limits
    assert (limits.body_seconds, limits.body_min_rate, limits.body_budget) == (90.0, 4096, 64 * 1024 * 1024)
    assert (limits.header_seconds, limits.keepalive_seconds, limits.max_compare_body) == (5.0, 80.0, 4 * 1024 * 1024)
    defaults = Settings.from_env({}).limits
    assert (defaults.body_seconds, defaults.body_min_rate, defaults.body_budget) == (60.0, 16384, 256 * 1024 * 1024)
    assert (defaults.header_seconds, defaults.keepalive_seconds) == (10.0, 75.0)
    for name, bad in (
        ("FILESYNC_BODY_SECONDS", "0"),
        ("FILESYNC_BODY_MIN_RATE", "0"),
        ("FILESYNC_BODY_BUDGET", "1024"),
        ("FILESYNC_HEADER_SECONDS", "-1"),
        ("FILESYNC_KEEPALIVE_SECONDS", "nan"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: bad})


def test_the_administration_commands_need_no_signing_secret():
    """``python -m service users|folders`` sign no token: AWS settings without the secret are enough there,
    and still refused for serving."""
    env = {
        "AWS_REGION": "eu-west-1",
        "FILESYNC_TABLE": "t",
        "FILESYNC_UPLOAD_ROLE_ARN": "arn:aws:iam::111122223333:role/u",
    }
    with pytest.raises(SettingsError, match="FILESYNC_TOKEN_SECRET"):
        Settings.from_env(env)
    admin = Settings.from_env(env, signs_tokens=False)
    assert admin.backend == "aws"
    assert len(admin.token_secret) >= 32
    assert admin.token_secret != Settings.from_env(env, signs_tokens=False).token_secret
    given = Settings.from_env({**env, "FILESYNC_TOKEN_SECRET": "s" * 40}, signs_tokens=False)
    assert given.token_secret == "s" * 40


def test_commits_verify_by_checksum_everywhere_unless_told_to_read():
    """The embedded emulator checks checksums as S3 does, so ``checksum`` is everyone's default; ``read`` is for
    S3-compatible stores that do not."""
    aws = {"AWS_REGION": "eu-west-1", "FILESYNC_TOKEN_SECRET": SECRET, "FILESYNC_UPLOAD_ROLE_ARN": ROLE}
    assert Settings.from_env({}).files.verify == "checksum"
    assert Settings.from_env(aws).files.verify == "checksum"
    assert Settings().for_emulator("http://127.0.0.1:5555").files.verify == "checksum"
    assert Settings.from_env({**aws, "FILESYNC_VERIFY": "read"}).files.verify == "read"
    with pytest.raises(SettingsError, match="FILESYNC_VERIFY"):
        Settings.from_env({"FILESYNC_VERIFY": "trust"})


def test_mail_feedback_settings_are_read_and_off_unless_a_queue_is_named():
    settings = Settings.from_env({})
    assert settings.notify.configuration_set is None
    assert settings.notify.feedback_queue_url is None
    assert settings.notify.feedback_wait_seconds == 20
    url = "https://sqs.eu-west-1.amazonaws.com/111122223333/feedback"
    settings = Settings.from_env(
        {
            "FILESYNC_SES_CONFIGURATION_SET": "filesync-mail",
            "FILESYNC_MAIL_FEEDBACK_QUEUE_URL": url,
            "FILESYNC_MAIL_FEEDBACK_WAIT_SECONDS": "0",
            "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:4566",
            "FILESYNC_BACKEND": "embedded",
        }
    )
    assert (settings.notify.configuration_set, settings.notify.feedback_queue_url) == ("filesync-mail", url)
    assert settings.notify.feedback_wait_seconds == 0
    assert settings.aws.endpoint_for("sqs") == "http://127.0.0.1:4566"
    assert Settings.from_env({"FILESYNC_MAIL_FEEDBACK_WAIT_SECONDS": "20"}).notify.feedback_wait_seconds == 20
    for bad in ("21", "-1", "soon"):
        with pytest.raises(SettingsError, match="FILESYNC_MAIL_FEEDBACK_WAIT_SECONDS"):
            Settings.from_env({"FILESYNC_MAIL_FEEDBACK_WAIT_SECONDS": bad})


def test_the_defaults_are_what_an_empty_environment_gives():
    assert Settings() == Settings.from_env({})
    aws = {"AWS_REGION": "us-east-1", "FILESYNC_TOKEN_SECRET": SECRET, "FILESYNC_UPLOAD_ROLE_ARN": ROLE}
    production = Settings.from_env(aws)
    # What differs with AWS is declared with the field (``on_aws``): these three, and nothing else by default.
    assert (production.auth.open_signup, production.notify.in_process, production.log_format) == (False, False, "json")


def _documented_variables() -> set[str]:
    """The variables in the Configuration table(s) of the README and docs/ (``| Variable | Default | ...``):
    every backticked name in the first column; ``_DYNAMODB`` after ``AWS_ENDPOINT_URL_S3`` is that family's."""
    root = Path(__file__).resolve().parents[1]
    found: set[str] = set()
    for page in [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]:
        in_table = False
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("| Variable |"):
                in_table = True
                continue
            if in_table and not line.startswith("|"):
                in_table = False
            if in_table and not line.startswith("|---"):
                family = ""
                for name in re.findall(r"`([A-Z_][A-Z0-9_]*)`", line.split("|")[1]):
                    if name.startswith("_"):
                        name = family + name
                    elif name.startswith("AWS_ENDPOINT_URL_"):
                        family = "AWS_ENDPOINT_URL"
                    found.add(name)
    return found


def test_every_documented_variable_is_declared_and_every_declared_one_documented():
    documented = _documented_variables()
    assert len(documented) > 50  # the table was found
    # Read by gunicorn itself, not by the service's settings.
    read_elsewhere = {"WEB_CONCURRENCY"}
    assert documented - read_elsewhere == declared_variables()


def test_a_zero_drain_linger_can_be_set_and_empty_values_mean_the_default():
    """``FILESYNC_DRAIN_LINGER_SECONDS``'s documented default, 0, was refused when set explicitly ("must be
    positive"); other seconds stay strictly positive."""
    assert Settings.from_env({"FILESYNC_DRAIN_LINGER_SECONDS": "0"}).drain_linger_seconds == 0.0
    assert Settings.from_env({"FILESYNC_DRAIN_LINGER_SECONDS": "5"}).drain_linger_seconds == 5.0
    with pytest.raises(SettingsError, match="FILESYNC_DRAIN_LINGER_SECONDS must be at least 0"):
        Settings.from_env({"FILESYNC_DRAIN_LINGER_SECONDS": "-1"})
    with pytest.raises(SettingsError, match="FILESYNC_DRAIN_SECONDS must be positive"):
        Settings.from_env({"FILESYNC_DRAIN_SECONDS": "0"})
    assert Settings.from_env({"FILESYNC_BUCKET": "", "FILESYNC_HOST": ""}) == Settings()


def test_port_wins_over_filesync_port_and_both_are_checked():
    assert Settings.from_env({"PORT": "9000", "FILESYNC_PORT": "9001"}).port == 9000
    assert Settings.from_env({"FILESYNC_PORT": "9001"}).port == 9001
    with pytest.raises(SettingsError, match="FILESYNC_PORT must be an integer"):
        Settings.from_env({"PORT": "9000", "FILESYNC_PORT": "x"})


def test_credentials_lifetime_stays_within_the_maximum():
    assert Settings.from_env({"FILESYNC_CREDENTIALS_MAX_SECONDS": "1800"}).auth.credentials_max_seconds == 1800
    with pytest.raises(SettingsError, match="FILESYNC_CREDENTIALS_SECONDS must be at most 1800, got 2000"):
        Settings.from_env({"FILESYNC_CREDENTIALS_MAX_SECONDS": "1800", "FILESYNC_CREDENTIALS_SECONDS": "2000"})
    with pytest.raises(SettingsError, match="FILESYNC_CREDENTIALS_MAX_SECONDS must be at most 3600"):
        Settings.from_env({"FILESYNC_CREDENTIALS_MAX_SECONDS": "7200"})
