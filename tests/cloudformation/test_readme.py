"""The documented deploy works as written: the commands of ``docs/operations.md`` (its "Deploy" section and
the runbooks) are parsed, their generator run, and every flag checked.

- The template is rendered exactly as the documented command writes it, and its size checked against what
  ``aws cloudformation deploy`` does with it: over 51,200 bytes it refuses to send the template inline
  unless ``--s3-bucket`` is given, and a template in S3 may be up to 1 MB.
- Each ``aws`` command's options are checked against the AWS CLI's own option list for that command (copied
  below from the CLI's reference: a typo or an option of another command fails here, not in an operator's
  terminal).
- Each ``--parameter-overrides`` key must be a template parameter and its value must pass the parameter's
  constraints; the first deploy must give every parameter without a default.
- The stack is protected: termination protection and the generated stack policy, which denies replacing or
  removing the bucket and the table.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import orjson
import pytest

from cloudformation import ids
from cloudformation.__main__ import main
from cloudformation.policies import PROTECTED_UPDATES
from service import resources

ROOT = Path(__file__).resolve().parents[2]
#: ``aws cloudformation deploy`` sends a larger template only through S3 (awscli's ``DeployBucketRequiredError``).
INLINE_TEMPLATE_LIMIT = 51_200
#: CloudFormation's limit on a template read from S3.
S3_TEMPLATE_LIMIT = 1_000_000

#: Options of each AWS CLI command the docs use (AWS CLI v2 reference), besides the global ones.
AWS_CLI_OPTIONS: dict[tuple[str, str], set[str]] = {
    ("cloudformation", "deploy"): {
        "template-file",
        "stack-name",
        "s3-bucket",
        "force-upload",
        "s3-prefix",
        "kms-key-id",
        "parameter-overrides",
        "capabilities",
        "no-execute-changeset",
        "disable-rollback",
        "no-disable-rollback",
        "role-arn",
        "notification-arns",
        "fail-on-empty-changeset",
        "no-fail-on-empty-changeset",
        "tags",
    },
    ("cloudformation", "update-termination-protection"): {
        "stack-name",
        "enable-termination-protection",
        "no-enable-termination-protection",
    },
    ("cloudformation", "set-stack-policy"): {"stack-name", "stack-policy-body", "stack-policy-url"},
    ("cloudformation", "describe-stacks"): {"stack-name", "next-token"},
    ("cloudformation", "cancel-update-stack"): {"stack-name", "client-request-token"},
    ("cloudformation", "continue-update-rollback"): {"stack-name", "role-arn", "resources-to-skip"},
    ("s3", "cp"): {"recursive", "only-show-errors"},
    ("autoscaling", "start-instance-refresh"): {"auto-scaling-group-name", "strategy", "preferences"},
    ("dynamodb", "restore-table-to-point-in-time"): {
        "source-table-name",
        "source-table-arn",
        "target-table-name",
        "use-latest-restorable-time",
        "no-use-latest-restorable-time",
        "restore-date-time",
    },
    ("dynamodb", "wait"): set(),
    ("dynamodb", "delete-item"): {"table-name", "key"},
    ("sesv2", "delete-suppressed-destination"): {"email-address"},
    ("dynamodb", "update-continuous-backups"): {"table-name", "point-in-time-recovery-specification"},
    ("dynamodb", "update-time-to-live"): {"table-name", "time-to-live-specification"},
    ("dynamodb", "update-table"): {"table-name", "deletion-protection-enabled", "no-deletion-protection-enabled"},
    ("s3api", "list-object-versions"): {"bucket", "prefix", "key-marker", "version-id-marker", "max-items"},
    ("s3api", "delete-object"): {"bucket", "key", "version-id"},
    ("ssm", "start-session"): {"target", "document-name", "parameters"},
    ("ssm", "get-parameters"): {"names", "with-decryption", "no-with-decryption"},
    ("logs", "tail"): {"follow", "since", "log-stream-name-prefix", "filter-pattern", "format"},
    ("ec2", "get-console-output"): {"instance-id", "latest", "no-latest"},
    ("autoscaling", "describe-scaling-activities"): {"auto-scaling-group-name", "max-items"},
    ("secretsmanager", "put-secret-value"): {"secret-id", "secret-string"},
    ("secretsmanager", "get-secret-value"): {"secret-id"},
}
#: Positional arguments a command takes (source and destination).
POSITIONAL = {("s3", "cp"): 2, ("logs", "tail"): 1}
#: Subcommands of ``aws <service> wait``.
AWS_CLI_WAITERS = {("dynamodb", "table-exists"): {"table-name"}}
GLOBAL_OPTIONS = {"region", "query", "output", "profile"}
#: Options taking several values (up to the next option).
LIST_OPTIONS = {"parameter-overrides", "capabilities", "tags", "notification-arns", "resources-to-skip"}
FLAG_OPTIONS = {
    "force-upload",
    "no-execute-changeset",
    "disable-rollback",
    "no-disable-rollback",
    "fail-on-empty-changeset",
    "no-fail-on-empty-changeset",
    "enable-termination-protection",
    "no-enable-termination-protection",
    "use-latest-restorable-time",
    "no-use-latest-restorable-time",
    "deletion-protection-enabled",
    "no-deletion-protection-enabled",
    "recursive",
    "only-show-errors",
    "follow",
    "latest",
    "no-latest",
}


def _section(path: Path, heading: str) -> str:
    text = path.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + len(heading) + 2)
    return text[start : end if end != -1 else len(text)]


def _commands(markdown: str) -> list[list[str]]:
    """Every shell command in the ```sh blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


OPERATIONS = ROOT / "docs" / "operations.md"


def _documented_commands() -> list[list[str]]:
    return _commands(OPERATIONS.read_text(encoding="utf-8"))


def _options(command: list[str]) -> dict[str, list[str]]:
    """``aws <service> <command> ...``'s options: name -> values; positional words are refused."""
    service, name = command[1], command[2]
    rest = command[3:]
    allowed = AWS_CLI_OPTIONS[(service, name)] | GLOBAL_OPTIONS
    if name == "wait":
        allowed = AWS_CLI_WAITERS[(service, rest[0])] | GLOBAL_OPTIONS
        rest = rest[1:]
    positional = POSITIONAL.get((service, name), 0)
    assert all(not word.startswith("--") for word in rest[:positional]), f"`aws {service} {name}` takes arguments"
    rest = rest[positional:]
    options: dict[str, list[str]] = {}
    current: str | None = None
    for word in rest:
        if word.startswith("--"):
            current = word[2:]
            assert current in allowed, f"`aws {service} {name}` has no option --{current}"
            assert current not in options, f"--{current} given twice"
            options[current] = []
        else:
            assert current is not None, f"`aws {service} {name}`: stray argument {word!r}"
            options[current].append(word)
            if current not in LIST_OPTIONS:
                current = None
    for option, values in options.items():
        if option in FLAG_OPTIONS:
            assert values == [], f"--{option} takes no value"
        elif option not in LIST_OPTIONS:
            assert len(values) == 1, f"--{option} takes one value"
    return options


@pytest.fixture
def generated(tmp_path, monkeypatch) -> Path:
    """Run the docs' generator commands (``python -m cloudformation ...``) in a scratch directory, as an
    operator runs them in the repository: the deploy commands' relative paths resolve there."""
    monkeypatch.chdir(tmp_path)
    generators = [c for c in _documented_commands() if c[1:3] == ["-m", "cloudformation"]]
    assert generators, "the Deploy section shows no `python -m cloudformation` command"
    for command in generators:
        assert main(command[3:]) == 0
    return tmp_path


def _aws(service: str, name: str) -> list[dict[str, list[str]]]:
    return [_options(c) for c in _documented_commands() if c[0] == "aws" and c[1:3] == [service, name]]


def test_every_documented_aws_command_uses_only_its_own_options():
    commands = [c for c in _documented_commands() if c[0] == "aws"]
    assert commands
    for command in commands:
        assert (command[1], command[2]) in AWS_CLI_OPTIONS, f"not in the table of known commands: {command[:3]}"
        _options(command)


def test_the_template_as_the_deploy_command_uploads_it_is_within_cloudformations_limits(generated):
    deploys = _aws("cloudformation", "deploy")
    assert deploys, "the Deploy section shows no `aws cloudformation deploy`"
    for options in deploys:
        (template_file,) = options["template-file"]
        path = generated / template_file
        assert path.is_file(), f"{template_file} is not what the documented generator writes"
        size = path.stat().st_size
        if "s3-bucket" not in options:
            assert size <= INLINE_TEMPLATE_LIMIT, (
                f"{template_file} is {size:,} bytes: `aws cloudformation deploy` refuses a template over "
                f"{INLINE_TEMPLATE_LIMIT:,} bytes without --s3-bucket"
            )
        assert size <= S3_TEMPLATE_LIMIT, f"{template_file} is {size:,} bytes, over CloudFormation's 1 MB"


def _accepts(parameter: dict, value: str) -> bool:
    if "AllowedValues" in parameter and value not in parameter["AllowedValues"]:
        return False
    if "AllowedPattern" in parameter and not re.fullmatch(parameter["AllowedPattern"], value):
        return False
    if "MaxLength" in parameter and len(value) > int(parameter["MaxLength"]):
        return False
    if parameter["Type"] == "Number":
        number = float(value)
        if "MinValue" in parameter and number < float(parameter["MinValue"]):
            return False
        if "MaxValue" in parameter and number > float(parameter["MaxValue"]):
            return False
    return True


def test_every_parameter_override_is_a_template_parameter_with_a_valid_value(template):
    parameters = template["Parameters"]
    deploys = _aws("cloudformation", "deploy")
    for index, options in enumerate(deploys):
        given = dict(pair.split("=", 1) for pair in options.get("parameter-overrides", []))
        for key, value in given.items():
            assert key in parameters, f"--parameter-overrides {key}: the template has no such parameter"
            assert _accepts(parameters[key], value), f"{key}={value} fails the parameter's constraints"
        if index == 0:
            required = {name for name, parameter in parameters.items() if "Default" not in parameter}
            assert required <= set(given), f"the first deploy misses {sorted(required - set(given))}"
        iam = [r for r in template["Resources"].values() if r["Type"].startswith("AWS::IAM::")]
        named = [r for r in iam if {"RoleName", "PolicyName", "ManagedPolicyName"} & set(r.get("Properties", {}))]
        needed = "CAPABILITY_NAMED_IAM" if any(r["Type"] != "AWS::IAM::Policy" for r in named) else "CAPABILITY_IAM"
        assert needed in options["capabilities"]


def test_every_template_parameter_is_in_the_deploy_table(template):
    rows = [line.split("|")[1] for line in _section(OPERATIONS, "## Deploy").splitlines() if line[:3] == "| `"]
    documented = {name for cell in rows for name in re.findall(r"`([A-Za-z0-9]+)`", cell)}
    assert set(template["Parameters"]) <= documented, sorted(set(template["Parameters"]) - documented)


def test_the_documented_stack_has_termination_protection_and_a_stack_policy_for_the_data(generated, template):
    stacks = {options["stack-name"][0] for options in _aws("cloudformation", "deploy")}
    protected = {
        options["stack-name"][0]
        for options in _aws("cloudformation", "update-termination-protection")
        if "enable-termination-protection" in options
    }
    assert stacks <= protected
    policies = _aws("cloudformation", "set-stack-policy")
    assert {options["stack-name"][0] for options in policies} >= stacks
    for options in policies:
        (body,) = options["stack-policy-body"]
        assert body.startswith("file://")
        policy = orjson.loads((generated / body.removeprefix("file://")).read_bytes())
        denied = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
        for logical_id in (ids.BUCKET, ids.TABLE):
            assert logical_id in template["Resources"]
            assert any(
                f"LogicalResourceId/{logical_id}" in s["Resource"] and set(PROTECTED_UPDATES) <= set(s["Action"])
                for s in denied
            ), f"the stack policy does not keep {logical_id} from being replaced or removed"
        # Nothing else is denied: releases, scaling and alarms update freely.
        named = {r.removeprefix("LogicalResourceId/") for s in denied for r in s["Resource"]}
        assert named == {ids.BUCKET, ids.TABLE}


def test_the_restore_runbook_gives_the_restored_table_what_a_restore_does_not_copy(template):
    """A point-in-time restore copies keys, indexes and items, not point-in-time recovery, TTL or deletion
    protection; the runbook turns them back on (with the TTL attribute the service writes) before the stack
    adopts the table by parameter."""
    restores = _aws("dynamodb", "restore-table-to-point-in-time")
    assert restores
    (target,) = restores[0]["target-table-name"]
    ttl = next(o for o in _aws("dynamodb", "update-time-to-live") if o["table-name"] == [target])
    assert ttl["time-to-live-specification"] == [f"Enabled=true,AttributeName={resources.TABLE_TTL_ATTRIBUTE}"]
    backups = next(o for o in _aws("dynamodb", "update-continuous-backups") if o["table-name"] == [target])
    assert backups["point-in-time-recovery-specification"] == ["PointInTimeRecoveryEnabled=true"]
    protected = next(o for o in _aws("dynamodb", "update-table") if o["table-name"] == [target])
    assert "deletion-protection-enabled" in protected
    adopting = [
        o for o in _aws("cloudformation", "deploy") if f"{ids.EXISTING_TABLE_NAME}={target}" in o["parameter-overrides"]
    ]
    assert adopting, "no deploy adopts the restored table"
