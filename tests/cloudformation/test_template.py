"""The generated template: cfn-lint clean, byte-for-byte the golden file, wired to what the service reads.

The golden file is regenerated, after a deliberate change, with
``python -m cloudformation --out tests/cloudformation/golden`` (review the diff: it is the change ops apply).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from fnmatch import fnmatch
from pathlib import Path

import cfnlint.api
import orjson
import pytest

from cloudformation import ids, userdata
from cloudformation.__main__ import STACK_POLICY_NAME, TEMPLATE_NAME, main, render, render_stack_policy
from cloudformation.template import (
    AUTH_PATH_PREFIX,
    BURSTABLE_BASELINE_PERCENT,
    DEFAULT_INSTANCE_VCPUS,
    FEED_PATH_PATTERN,
    HEALTH_CHECK_PATH,
    INTERFACE_ENDPOINTS,
    INTERNAL_PATHS,
    MAIL_FROM_SUBDOMAIN,
    NOTIFIER_FAILURE_MESSAGE,
    READINESS_PATH,
    SERVICE_CPU_MS_PER_REQUEST,
    TemplateParams,
    build_template,
)
from service.core.sync import MAX_WAIT_SECONDS
from service.resources import MAIL_FEEDBACK_EVENT_TYPES, NONCURRENT_VERSION_DAYS
from service.settings import METRICS_DIR_VARIABLE, Limits, Settings

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / f"{TEMPLATE_NAME}.json"
GOLDEN_STACK_POLICY = Path(__file__).parent / "golden" / STACK_POLICY_NAME


#: cfn-lint findings the template keeps on purpose: rule id -> why. Each must still occur (so a stale
#: explanation fails too); every other finding, informational ones included, fails the test.
EXPLAINED_FINDINGS: dict[str, str] = {}


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_cfn_lint_reports_nothing_unexplained_informational_checks_included(fmt):
    config = cfnlint.api.ManualArgs(regions=["us-east-1", "eu-west-1"], include_checks=["I"])
    matches = cfnlint.api.lint(render(fmt), config=config)
    assert [str(m) for m in matches if m.rule.id not in EXPLAINED_FINDINGS] == []
    assert {m.rule.id for m in matches} == set(EXPLAINED_FINDINGS)


def test_template_is_the_golden_file():
    assert GOLDEN.read_text(encoding="utf-8") == render("json"), (
        "the template changed: review the difference, then regenerate the golden file with "
        "`python -m cloudformation --out tests/cloudformation/golden`"
    )


def test_the_stack_policy_is_the_golden_file():
    assert GOLDEN_STACK_POLICY.read_text(encoding="utf-8") == render_stack_policy()


def test_the_command_writes_the_template_and_the_stack_policy(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--format", "yaml"]) == 0
    written = tmp_path / f"{TEMPLATE_NAME}.yaml"
    policy = tmp_path / STACK_POLICY_NAME
    assert capsys.readouterr().out.splitlines() == [str(written), str(policy)]
    assert written.read_text(encoding="utf-8") == render("yaml")
    assert policy.read_text(encoding="utf-8") == render_stack_policy()


def test_build_template_is_pure():
    assert build_template(TemplateParams()).to_json() == build_template(TemplateParams()).to_json()


def test_every_output_is_exported(template):
    outputs = template["Outputs"]
    assert {ids.OUT_SERVICE_URL, ids.OUT_BUCKET, ids.OUT_TABLE, ids.OUT_UPLOAD_ROLE, ids.OUT_INSTANCE_ROLE} <= set(
        outputs
    )
    for name, output in outputs.items():
        assert output["Export"]["Name"] == {"Fn::Sub": f"${{AWS::StackName}}-{name}"}


def test_every_parameter_is_described_and_constrained(template):
    for name, parameter in template["Parameters"].items():
        assert parameter["Description"], name
        if parameter["Type"] == "String":
            assert "AllowedPattern" in parameter or "AllowedValues" in parameter, name
        if parameter["Type"] == "Number":
            assert "MinValue" in parameter or "AllowedValues" in parameter, name


def test_data_is_retained_and_protected(template):
    resources = template["Resources"]
    for logical_id in (ids.BUCKET, ids.TABLE):
        assert resources[logical_id]["DeletionPolicy"] == "Retain"
        assert resources[logical_id]["UpdateReplacePolicy"] == "Retain"
    table = resources[ids.TABLE]["Properties"]
    assert table["DeletionProtectionEnabled"] is True
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_the_bucket_keeps_replaced_and_deleted_versions_for_a_while(template):
    """Versioning with expiry of noncurrent versions: a body deleted or replaced by a bug, an operator or
    a client's credentials stays readable (by the version the service pinned) for 30 days, then goes."""
    bucket = template["Resources"][ids.BUCKET]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = bucket["LifecycleConfiguration"]["Rules"]
    expiring = [r for r in rules if "NoncurrentVersionExpiration" in r]
    assert len(expiring) == 1
    (rule,) = expiring
    assert rule["Status"] == "Enabled"
    assert "Prefix" not in rule  # the whole bucket
    assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == NONCURRENT_VERSION_DAYS >= 7
    assert rule["ExpiredObjectDeleteMarker"] is True


def test_instances_require_imdsv2_and_encrypt_their_disk(template):
    data = template["Resources"][ids.LAUNCH_TEMPLATE]["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert all(mapping["Ebs"]["Encrypted"] is True for mapping in data["BlockDeviceMappings"])


# --- Timing agreed with the Procfile and the service ------------------------------------------------


def _procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text(encoding="utf-8").splitlines()
    return {name: shlex.split(command) for name, _, command in (line.partition(":") for line in lines if line)}


def _option(command: list[str], name: str) -> int:
    return int(command[command.index(name) + 1])


def _deregistration_delay(template, logical_id: str) -> int:
    attributes = template["Resources"][logical_id]["Properties"]["TargetGroupAttributes"]
    return int(next(a["Value"] for a in attributes if a["Key"] == "deregistration_delay.timeout_seconds"))


def test_drains_outlast_a_long_poll_and_the_upload_policy(template):
    """The feed's target group drains longer than a long-poll waits; the API's for the upload policy, which
    is the service's own drain; gunicorn and systemd leave the drain and the shutdown their time; the
    termination hook holds the instance until all of it is done."""
    params = TemplateParams()
    assert _deregistration_delay(template, ids.FEED_TARGET_GROUP) >= MAX_WAIT_SECONDS + 5
    assert _deregistration_delay(template, ids.TARGET_GROUP) == params.api_drain_seconds
    environ = _instance_environment(template)
    settings = Settings.from_env(environ)
    assert settings.drain_seconds == params.api_drain_seconds
    assert settings.drain_linger_seconds > 0
    graceful = _option(_procfile()["web"], "--graceful-timeout")
    assert graceful == params.graceful_shutdown_seconds
    assert settings.drain_seconds + settings.shutdown_timeout_seconds < graceful
    stop = re.search(r"TimeoutStopSec=(\d+)", _user_data(template))
    assert stop is not None
    assert int(stop.group(1)) > graceful
    (hook,) = template["Resources"][ids.AUTO_SCALING_GROUP]["Properties"]["LifecycleHookSpecificationList"]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook["DefaultResult"] == "CONTINUE"
    assert hook["HeartbeatTimeout"] > int(stop.group(1)) + 60


def test_the_drain_watcher_stops_the_services_then_completes_the_termination_hook(template):
    (hook,) = template["Resources"][ids.AUTO_SCALING_GROUP]["Properties"]["LifecycleHookSpecificationList"]
    script = _substituted(template)
    watcher = re.search(r"cat > /opt/filesync/bin/drain-on-termination <<'SCRIPT'\n(.*?)\nSCRIPT\n", script, re.S)
    assert watcher is not None
    body = watcher.group(1)
    lifecycle = body.index("autoscaling/target-lifecycle-state")
    stop = body.index("systemctl stop filesync@web.service filesync@notifier.service")
    complete = body.index("complete-lifecycle-action")
    assert lifecycle < stop < complete
    assert f"--lifecycle-hook-name '{hook['LifecycleHookName']}'" in body
    assert f"--logical-resource-id '{ids.AUTO_SCALING_GROUP}'" in body
    assert "systemctl enable --now filesync-secrets.service" in script
    assert "filesync-drain.service" in script.split("systemctl enable --now", 1)[1].splitlines()[0]
    # Its two calls are allowed, on this stack and its own group only.
    statements = {
        s["Sid"]: s
        for s in template["Resources"][ids.INSTANCE_ROLE_POLICY]["Properties"]["PolicyDocument"]["Statement"]
    }
    assert statements["CompleteTerminationHook"]["Action"] == ["autoscaling:CompleteLifecycleAction"]
    (group_arn,) = statements["CompleteTerminationHook"]["Resource"]
    assert group_arn["Fn::Sub"].endswith(f"autoScalingGroupName/${{AWS::StackName}}-{ids.AUTO_SCALING_GROUP}-*")
    assert statements["FindOwnGroup"]["Action"] == ["cloudformation:DescribeStackResource"]


def test_the_default_scaling_targets_keep_the_burstable_default_within_its_baseline(template):
    """Both targets scale out before the group's average CPU passes a t3.small's credit baseline: the CPU
    target is the baseline, and the requests target, at the service's measured CPU per request, asks for
    less CPU than that (so whichever comes first, no surplus credits are billed in unlimited mode)."""
    params = template["Parameters"]
    assert params[ids.INSTANCE_TYPE]["Default"] == "t3.small"
    cpu_target = int(params[ids.TARGET_CPU_PERCENT]["Default"])
    assert cpu_target <= BURSTABLE_BASELINE_PERCENT
    per_second = int(params[ids.TARGET_REQUESTS_PER_INSTANCE]["Default"]) / 60
    busy_percent = per_second * SERVICE_CPU_MS_PER_REQUEST / 1000 / DEFAULT_INSTANCE_VCPUS * 100
    assert busy_percent <= cpu_target
    assert busy_percent >= 0.6 * cpu_target  # not so low that the group scales out for nothing


def test_idle_timeout_outlasts_a_long_poll_and_not_gunicorns_keep_alive(template):
    keep_alive = _option(_procfile()["web"], "--keep-alive")
    attributes = template["Resources"][ids.LOAD_BALANCER]["Properties"]["LoadBalancerAttributes"]
    idle = int(next(a["Value"] for a in attributes if a["Key"] == "idle_timeout.timeout_seconds"))
    assert MAX_WAIT_SECONDS < idle < keep_alive
    # gunicorn hands its --keep-alive only to apps it wraps itself; the service's runner takes its own.
    assert Limits().keepalive_seconds == keep_alive


def test_health_checks_and_the_feed_rule_match_the_service_routes(template):
    routes = (ROOT / "service" / "api" / "routes.py").read_text(encoding="utf-8")
    assert f'"{HEALTH_CHECK_PATH}"' in routes
    assert f'"{READINESS_PATH}"' in routes
    feed_route = "/v1/ns/{ns}/changes"
    assert f'"{feed_route}"' in routes
    assert fnmatch(feed_route.replace("{ns}", "q3kabc"), FEED_PATH_PATTERN)
    for logical_id in (ids.TARGET_GROUP, ids.FEED_TARGET_GROUP):
        assert template["Resources"][logical_id]["Properties"]["HealthCheckPath"] == HEALTH_CHECK_PATH


def test_the_fleet_is_judged_by_liveness_and_the_boot_signal_by_readiness(template):
    """A regional blip of S3 or DynamoDB fails readiness on every instance at once; were the load balancer
    and the group to check it, the group would replace the whole fleet with instances that cannot pass
    either. They check liveness; readiness gates the boot signal."""
    assert (HEALTH_CHECK_PATH, READINESS_PATH) == ("/healthz", "/readyz")
    group = template["Resources"][ids.AUTO_SCALING_GROUP]["Properties"]
    assert group["HealthCheckType"] == "ELB"
    assert {ids.TARGET_GROUP, ids.FEED_TARGET_GROUP} == {ref["Ref"] for ref in group["TargetGroupARNs"]}
    script = _user_data(template)
    signal = script.index("report 0")
    probe = script.rindex("curl -fsS", 0, signal)
    assert f"{READINESS_PATH}; then" in script[probe:signal]
    assert HEALTH_CHECK_PATH not in script


def test_every_procfile_process_runs_on_the_instances(template):
    processes = _procfile()
    assert "web" in processes
    # The notifier's Procfile line may land after this template; its unit is already there.
    assert set(processes) <= set(TemplateParams().processes)
    script = _user_data(template)
    for name in TemplateParams().processes:
        assert f"filesync@{name}.service" in script


# --- The instance environment is what service.settings reads ----------------------------------------


def _user_data_sub(template) -> list:
    data = template["Resources"][ids.LAUNCH_TEMPLATE]["Properties"]["LaunchTemplateData"]
    return data["UserData"]["Fn::Base64"]["Fn::Sub"]


def _user_data(template) -> str:
    return _user_data_sub(template)[0]


def _substituted(template) -> str:
    """The script as an instance sees it, each ``${Name}`` replaced by ``<Name>``."""
    return re.sub(r"\$\{([A-Za-z0-9:]+)\}", lambda m: f"<{m.group(1)}>", _user_data(template))


def test_user_data_variables_are_the_stacks_resources(template):
    variables = _user_data_sub(template)[1]
    assert set(variables) == set(userdata.SUB_VARIABLES)
    # The stack's own bucket and table unless existing ones are adopted (a restore).
    assert variables["Bucket"] == {"Fn::If": [ids.ADOPT_BUCKET, {"Ref": ids.EXISTING_BUCKET_NAME}, {"Ref": ids.BUCKET}]}
    assert variables["Table"] == {"Fn::If": [ids.ADOPT_TABLE, {"Ref": ids.EXISTING_TABLE_NAME}, {"Ref": ids.TABLE}]}
    assert variables["UploadRoleArn"] == {"Fn::GetAtt": [ids.UPLOAD_ROLE, "Arn"]}
    assert variables["SenderEmail"] == {"Ref": ids.SENDER_EMAIL}
    assert variables["DomainName"] == {"Ref": ids.DOMAIN_NAME}
    assert variables["TokenSecretArn"] == {"Ref": ids.TOKEN_SECRET}
    assert variables["LogGroup"] == {"Ref": ids.LOG_GROUP}
    assert variables["MailConfigurationSet"] == {"Ref": ids.MAIL_CONFIGURATION_SET}
    assert variables["MailFeedbackQueueUrl"] == {"Ref": ids.MAIL_FEEDBACK_QUEUE}
    # Every ${...} in the script is one of them or a pseudo parameter: nothing is left for bash to mangle
    # (``${!...}``, the CloudWatch agent's own variables, is Fn::Sub's escape for a literal ``${``).
    used = set(re.findall(r"\$\{([^!}][^}]*)\}", _user_data(template)))
    assert used == {*userdata.SUB_VARIABLES, "AWS::Region", "AWS::StackName"}


def _instance_environment(template) -> dict[str, str]:
    script = _substituted(template)
    block = re.search(r"cat > /etc/filesync/env <<'ENV'\n(.*?)\nENV\n", script, re.S)
    assert block is not None
    environ = dict(line.split("=", 1) for line in block.group(1).splitlines())
    # Added at boot: the worker count from the CPU count, the secret from Secrets Manager.
    environ["WEB_CONCURRENCY"] = "2"
    environ[userdata.TOKEN_SECRET_VARIABLE] = "s" * 64
    return environ


def test_the_instance_environment_configures_the_service_for_aws(template):
    script = _substituted(template)
    settings = Settings.from_env(_instance_environment(template))
    assert settings.backend == "aws"
    assert settings.aws.region == "<AWS::Region>"
    assert settings.bucket == "<Bucket>"
    assert settings.table == "<Table>"
    assert settings.upload_role_arn == "<UploadRoleArn>"
    assert settings.mail_from == "<SenderEmail>"
    assert settings.notify.public_url == "https://<DomainName>"
    assert settings.notify.configuration_set == "<MailConfigurationSet>"
    assert settings.notify.feedback_queue_url == "<MailFeedbackQueueUrl>"
    assert settings.auth.trust_forwarded_for is True
    assert settings.port == TemplateParams().service_port
    assert f"printf '{userdata.TOKEN_SECRET_VARIABLE}=%s\\n'" in script
    # gunicorn's workers share one metrics directory of their own, emptied at each start.
    assert "RuntimeDirectory=filesync-metrics-%i" in script
    assert f"Environment={METRICS_DIR_VARIABLE}=/run/filesync-metrics-%i" in script
    assert "--secret-id '<TokenSecretArn>'" in script


def test_the_boot_script_is_valid_bash(template, tmp_path):
    path = tmp_path / "user-data.sh"
    path.write_text(_substituted(template), encoding="utf-8")
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_metrics_are_not_routed_from_the_public_listener(template):
    """Whatever the listener forwards by default, the first rule answers ``/metrics`` itself (404), and no
    forwarding rule comes before it; plain HTTP only redirects to HTTPS."""
    resources = template["Resources"]
    routes = (ROOT / "service" / "api" / "routes.py").read_text(encoding="utf-8")
    assert '"/metrics"' in routes
    rules = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule"]
    https_rules = sorted(
        (r for r in rules if r["ListenerArn"] == {"Ref": ids.HTTPS_LISTENER}), key=lambda r: r["Priority"]
    )
    first = https_rules[0]
    (condition,) = first["Conditions"]
    assert condition["Field"] == "path-pattern"
    assert any(fnmatch("/metrics", pattern) for pattern in condition["PathPatternConfig"]["Values"])
    assert set(INTERNAL_PATHS) == set(condition["PathPatternConfig"]["Values"])
    assert [a["Type"] for a in first["Actions"]] == ["fixed-response"]
    assert first["Actions"][0]["FixedResponseConfig"]["StatusCode"] == "404"
    listeners = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ElasticLoadBalancingV2::Listener"]
    for listener in listeners:
        if listener["Protocol"] == "HTTP":
            assert [a["Type"] for a in listener["DefaultActions"]] == ["redirect"]
    assert {r["ListenerArn"]["Ref"] for r in rules} == {ids.HTTPS_LISTENER}


# --- Operations: alarms, their runbooks, what feeds them ---------------------------------------------

REQUIRED_ALARMS = {
    ids.ALARM_5XX,
    ids.ALARM_P99,
    ids.ALARM_UNHEALTHY,
    ids.ALARM_HEALTHY,
    ids.ALARM_LAUNCHES,
    ids.ALARM_THROTTLES,
    ids.ALARM_NOTIFIER_DOWN,
    ids.ALARM_NOTIFIER_FAILING,
    ids.ALARM_SES_BOUNCES,
    ids.ALARM_SES_COMPLAINTS,
    ids.ALARM_MAIL_FEEDBACK_BACKLOG,
    ids.ALARM_MEMORY,
    ids.ALARM_DISK,
}


def _alarms(template) -> dict[str, dict]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }


def _agent_config(template) -> dict:
    block = re.search(r"<<'AGENT'\n(.*?)\nAGENT\n", _user_data(template), re.S)
    assert block is not None
    return orjson.loads(block.group(1))


def test_every_alarm_is_there_and_has_its_runbook_entry(template):
    alarms = _alarms(template)
    assert set(alarms) == REQUIRED_ALARMS
    runbook = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^### (\w+)\n\n(.+?)(?=^#)", runbook + "\n#", re.M | re.S))
    for logical_id, alarm in alarms.items():
        assert alarm["AlarmDescription"].endswith(f"Runbook: docs/operations.md#{logical_id.lower()}"), logical_id
        assert logical_id in sections, f"docs/operations.md has no runbook entry `### {logical_id}`"
        assert len(sections[logical_id].split()) >= 30, f"the runbook entry of {logical_id} says too little"
        assert alarm["AlarmName"] == {"Fn::Sub": f"${{AWS::StackName}}-{logical_id}"}
        assert alarm["AlarmActions"] == [{"Ref": ids.ALARM_TOPIC}]


def test_the_dashboard_shows_every_alarm_and_what_they_watch(template):
    body, variables = template["Resources"][ids.DASHBOARD]["Properties"]["DashboardBody"]["Fn::Sub"]
    dashboard = orjson.loads(body)
    (states,) = [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    assert {arn.rsplit("}-", 1)[1] for arn in states["properties"]["alarms"]} == REQUIRED_ALARMS
    for alarm in _alarms(template).values():
        names = (
            [alarm["MetricName"]]
            if "MetricName" in alarm
            else [m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m]
        )
        for name in names:
            assert f'"{name}"' in body, name
    assert set(re.findall(r"\$\{([^}]+)\}", body)) - {
        "AWS::Region",
        "AWS::Partition",
        "AWS::AccountId",
        "AWS::StackName",
    } == set(variables)


def test_the_agent_reports_what_the_alarms_watch(template):
    """Memory, root disk and the notifier's processes come from the CloudWatch agent, per Auto Scaling group;
    the notifier's failed ticks from its own log line."""
    agent = _agent_config(template)
    metrics = agent["metrics"]
    assert metrics["namespace"] == userdata.AGENT_NAMESPACE
    assert metrics["aggregation_dimensions"] == [["AutoScalingGroupName"]]
    collected = metrics["metrics_collected"]
    assert collected["mem"]["measurement"] == ["mem_used_percent"]
    assert collected["disk"]["measurement"] == ["used_percent"]
    assert collected["disk"]["resources"] == ["/"]
    (process,) = collected["procstat"]
    assert process["pattern"] == userdata.NOTIFIER_PATTERN
    assert userdata.NOTIFIER_PATTERN in " ".join(_procfile()["notifier"])
    alarms = _alarms(template)
    for logical_id, metric in (
        (ids.ALARM_MEMORY, "mem_used_percent"),
        (ids.ALARM_DISK, "disk_used_percent"),
        (ids.ALARM_NOTIFIER_DOWN, "procstat_lookup_pid_count"),
    ):
        alarm = alarms[logical_id]
        assert (alarm["Namespace"], alarm["MetricName"]) == (userdata.AGENT_NAMESPACE, metric)
        assert alarm["Dimensions"] == [{"Name": "AutoScalingGroupName", "Value": {"Ref": ids.AUTO_SCALING_GROUP}}]
    assert alarms[ids.ALARM_NOTIFIER_DOWN]["TreatMissingData"] == "breaching"
    statements = {
        s["Sid"]: s
        for s in template["Resources"][ids.INSTANCE_ROLE_POLICY]["Properties"]["PolicyDocument"]["Statement"]
    }
    assert statements["AgentMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": userdata.AGENT_NAMESPACE}
    }
    notify = (ROOT / "service" / "core" / "notify.py").read_text(encoding="utf-8")
    assert f'"{NOTIFIER_FAILURE_MESSAGE}' in notify
    metric_filter = template["Resources"][ids.NOTIFIER_FAILURES_FILTER]["Properties"]
    assert metric_filter["FilterPattern"] == f'{{ $.message = "{NOTIFIER_FAILURE_MESSAGE}*" }}'
    assert metric_filter["LogGroupName"] == {"Ref": ids.LOG_GROUP}


def test_a_failed_boot_leaves_its_logs_behind(template):
    """The agent starts before anything that can fail in the boot (the release, the install), ships
    cloud-init's output and the drain watcher's log, and a failure waits for its last lines to go out
    before it signals (after which the rollback terminates the instance)."""
    script = _user_data(template)
    files = {f["file_path"]: f for f in _agent_config(template)["logs"]["logs_collected"]["files"]["collect_list"]}
    assert "/var/log/cloud-init-output.log" in files
    assert f"{userdata.LOG_DIR}/drain.log" in files
    assert all(f["log_group_name"] == "${LogGroup}" for f in files.values())
    assert script.index("amazon-cloudwatch-agent-ctl -a fetch-config") < script.index("aws s3 cp")
    fail = re.search(r"fail\(\) \{\n(.*?)\n\}", script, re.S)
    assert fail is not None
    assert re.search(rf"sleep {2 * userdata.AGENT_FLUSH_SECONDS}\b", fail.group(1))
    assert fail.group(1).rstrip().endswith("report 1")
    assert "trap 'fail' ERR" in script


def test_operators_reach_instances_through_session_manager_with_or_without_nat(template):
    statements = {
        s["Sid"]: s
        for s in template["Resources"][ids.INSTANCE_ROLE_POLICY]["Properties"]["PolicyDocument"]["Statement"]
    }
    assert statements["SessionManagerRegistration"]["Action"] == ["ssm:UpdateInstanceInformation"]
    assert {a.split(":")[0] for a in statements["SessionManagerChannels"]["Action"]} == {"ssmmessages"}
    assert {"ssm", "ssmmessages", "monitoring", "logs", "autoscaling"} <= set(INTERFACE_ENDPOINTS.values())
    # No inbound port: the instances take the service port from the load balancer only.
    (rule,) = template["Resources"][ids.INSTANCE_SECURITY_GROUP]["Properties"]["SecurityGroupIngress"]
    assert rule["SourceSecurityGroupId"] == {"Ref": ids.LOAD_BALANCER_SECURITY_GROUP}


def test_the_load_balancer_writes_access_logs_to_a_bucket_of_their_own(template):
    resources = template["Resources"]
    attributes = {a["Key"]: a["Value"] for a in resources[ids.LOAD_BALANCER]["Properties"]["LoadBalancerAttributes"]}
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.bucket"] == {"Ref": ids.ACCESS_LOG_BUCKET}
    assert ids.ACCESS_LOG_BUCKET_POLICY in resources[ids.LOAD_BALANCER]["DependsOn"]
    bucket = resources[ids.ACCESS_LOG_BUCKET]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"
    }
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == {"Ref": ids.LOG_RETENTION_DAYS}
    statements = resources[ids.ACCESS_LOG_BUCKET_POLICY]["Properties"]["PolicyDocument"]["Statement"]
    prefix = f"/{attributes['access_logs.s3.prefix']}/AWSLogs/${{AWS::AccountId}}/*"
    writers = [s for s in statements if "Fn::If" not in s and s["Effect"] == "Allow"]
    writers += [s["Fn::If"][1] for s in statements if "Fn::If" in s]
    assert {str(s["Principal"]) for s in writers} >= {"{'Service': 'logdelivery.elasticloadbalancing.amazonaws.com'}"}
    assert all(s["Resource"]["Fn::Sub"][0].endswith(prefix) for s in writers)


def test_an_optional_waf_rate_limits_the_authentication_paths(template):
    """``LoginRateLimit`` (0: none) puts a WAF web ACL before the load balancer whose one rule blocks an
    address making too many requests to the authentication routes, each an argon2 hash for the service."""
    resources = template["Resources"]
    assert template["Parameters"][ids.LOGIN_RATE_LIMIT]["Default"] == "0"
    assert template["Conditions"][ids.WAF_ENABLED] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": ids.LOGIN_RATE_LIMIT}, "0"]}]
    }
    acl = resources[ids.WEB_ACL]
    association = resources[ids.WEB_ACL_ASSOCIATION]
    assert acl["Condition"] == association["Condition"] == ids.WAF_ENABLED
    assert association["Properties"]["ResourceArn"] == {"Ref": ids.LOAD_BALANCER}
    (rule,) = acl["Properties"]["Rules"]
    assert rule["Action"] == {"Block": {}}
    rate = rule["Statement"]["RateBasedStatement"]
    assert rate["Limit"] == {"Ref": ids.LOGIN_RATE_LIMIT}
    assert rate["AggregateKeyType"] == "IP"
    match = rate["ScopeDownStatement"]["ByteMatchStatement"]
    assert (match["PositionalConstraint"], match["SearchString"]) == ("STARTS_WITH", AUTH_PATH_PREFIX)
    routes = (ROOT / "service" / "api" / "routes.py").read_text(encoding="utf-8")
    assert f'"{AUTH_PATH_PREFIX}token"' in routes


# --- Mail: the sender's identity, the configuration set, bounces and complaints to the notifier -------


def _resource(template, logical_id: str) -> dict:
    return template["Resources"][logical_id]


def test_without_a_mail_domain_ses_verifies_the_sender_address(template):
    sender = _resource(template, ids.SENDER_IDENTITY)
    assert sender["Condition"] == ids.NO_MAIL_DOMAIN
    assert sender["Properties"]["EmailIdentity"] == {"Ref": ids.SENDER_EMAIL}
    assert sender["Properties"]["ConfigurationSetAttributes"] == {
        "ConfigurationSetName": {"Ref": ids.MAIL_CONFIGURATION_SET}
    }
    conditions = template["Conditions"]
    assert conditions[ids.NO_MAIL_DOMAIN] == {"Fn::Equals": [{"Ref": ids.MAIL_DOMAIN}, ""]}
    assert conditions[ids.MAIL_DOMAIN_GIVEN] == {"Fn::Not": [conditions[ids.NO_MAIL_DOMAIN]]}
    parameter = template["Parameters"][ids.MAIL_DOMAIN]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.match("")
    assert pattern.match("example.com")
    assert pattern.match("mail.example.co.uk")
    assert not pattern.match("Example.com")
    assert not pattern.match("alice@example.com")


def test_a_mail_domain_gets_easy_dkim_and_a_custom_mail_from_in_the_hosted_zone(template):
    identity = _resource(template, ids.MAIL_DOMAIN_IDENTITY)
    assert identity["Condition"] == ids.MAIL_DOMAIN_GIVEN
    properties = identity["Properties"]
    assert properties["EmailIdentity"] == {"Ref": ids.MAIL_DOMAIN}
    assert properties["DkimAttributes"] == {"SigningEnabled": True}
    assert properties["DkimSigningAttributes"] == {"NextSigningKeyLength": "RSA_2048_BIT"}
    mail_from = {"Fn::Sub": ["${Sub}.${Domain}", {"Sub": MAIL_FROM_SUBDOMAIN, "Domain": {"Ref": ids.MAIL_DOMAIN}}]}
    assert properties["MailFromAttributes"] == {"MailFromDomain": mail_from, "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"}
    assert properties["ConfigurationSetAttributes"] == {"ConfigurationSetName": {"Ref": ids.MAIL_CONFIGURATION_SET}}
    records = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Route53::RecordSet" and logical_id.startswith("Mail")
    }
    dkim = {ids.MAIL_DKIM_RECORD.format(i) for i in (1, 2, 3)}
    assert set(records) == {*dkim, ids.MAIL_FROM_MX_RECORD, ids.MAIL_FROM_SPF_RECORD}
    for logical_id, record in records.items():
        assert record["Condition"] == ids.MAIL_DOMAIN_GIVEN, logical_id
        assert record["Properties"]["HostedZoneId"] == {"Ref": ids.HOSTED_ZONE_ID}, logical_id
    for index in (1, 2, 3):
        record = records[ids.MAIL_DKIM_RECORD.format(index)]["Properties"]
        assert record["Type"] == "CNAME"
        assert record["Name"] == {"Fn::GetAtt": [ids.MAIL_DOMAIN_IDENTITY, f"DkimDNSTokenName{index}"]}
        assert record["ResourceRecords"] == [{"Fn::GetAtt": [ids.MAIL_DOMAIN_IDENTITY, f"DkimDNSTokenValue{index}"]}]
    mx = records[ids.MAIL_FROM_MX_RECORD]["Properties"]
    assert (mx["Type"], mx["Name"]) == ("MX", mail_from)
    assert mx["ResourceRecords"] == [{"Fn::Sub": "10 feedback-smtp.${AWS::Region}.amazonses.com"}]
    spf = records[ids.MAIL_FROM_SPF_RECORD]["Properties"]
    assert (spf["Type"], spf["Name"]) == ("TXT", mail_from)
    assert spf["ResourceRecords"] == ['"v=spf1 include:amazonses.com ~all"']


def test_the_configuration_set_keeps_reputation_metrics_and_sends_bounces_and_complaints_to_the_queue(template):
    configuration_set = _resource(template, ids.MAIL_CONFIGURATION_SET)["Properties"]
    assert configuration_set["ReputationOptions"] == {"ReputationMetricsEnabled": True}
    assert configuration_set["SuppressionOptions"] == {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]}
    destination = _resource(template, ids.MAIL_FEEDBACK_DESTINATION)
    assert destination["DependsOn"] == [ids.MAIL_FEEDBACK_TOPIC_POLICY]
    assert destination["Properties"]["ConfigurationSetName"] == {"Ref": ids.MAIL_CONFIGURATION_SET}
    event = destination["Properties"]["EventDestination"]
    assert event["Enabled"] is True
    # The same events the embedded default's configuration set publishes (service.resources).
    assert sorted(event["MatchingEventTypes"]) == sorted(MAIL_FEEDBACK_EVENT_TYPES) == ["bounce", "complaint"]
    assert event["SnsDestination"] == {"TopicARN": {"Ref": ids.MAIL_FEEDBACK_TOPIC}}
    subscription = _resource(template, ids.MAIL_FEEDBACK_SUBSCRIPTION)["Properties"]
    assert subscription == {
        "TopicArn": {"Ref": ids.MAIL_FEEDBACK_TOPIC},
        "Protocol": "sqs",
        "Endpoint": {"Fn::GetAtt": [ids.MAIL_FEEDBACK_QUEUE, "Arn"]},
        "RawMessageDelivery": False,
    }
    queue = _resource(template, ids.MAIL_FEEDBACK_QUEUE)
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 86400
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert queue["DeletionPolicy"] == queue["UpdateReplacePolicy"] == "Delete"
    assert _resource(template, ids.MAIL_FEEDBACK_QUEUE_POLICY)["Properties"]["Queues"] == [
        {"Ref": ids.MAIL_FEEDBACK_QUEUE}
    ]
    # Unread feedback is an alarm of its own (and its runbook entry: test_every_alarm_is_there_...).
    backlog = _alarms(template)[ids.ALARM_MAIL_FEEDBACK_BACKLOG]
    assert (backlog["Namespace"], backlog["MetricName"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert backlog["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [ids.MAIL_FEEDBACK_QUEUE, "QueueName"]}}
    ]
    outputs = template["Outputs"]
    assert outputs[ids.OUT_MAIL_FEEDBACK_QUEUE]["Value"] == {"Ref": ids.MAIL_FEEDBACK_QUEUE}
    assert outputs[ids.OUT_MAIL_CONFIGURATION_SET]["Value"] == {"Ref": ids.MAIL_CONFIGURATION_SET}


# --- Pinned image, checked release ------------------------------------------------------------------


def test_a_pinned_image_wins_over_the_ssm_parameter(template):
    data = _resource(template, ids.LAUNCH_TEMPLATE)["Properties"]["LaunchTemplateData"]
    assert data["ImageId"] == {"Fn::If": [ids.IMAGE_PINNED, {"Ref": ids.PINNED_IMAGE_ID}, {"Ref": ids.IMAGE_ID}]}
    assert template["Conditions"][ids.IMAGE_PINNED] == {"Fn::Not": [{"Fn::Equals": [{"Ref": ids.PINNED_IMAGE_ID}, ""]}]}
    parameter = template["Parameters"][ids.PINNED_IMAGE_ID]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    for good in ("", "ami-0123abcd", "ami-0123456789abcdef0"):
        assert pattern.match(good), good
    for bad in ("ami-", "ami-XYZ01234", "/aws/service/ami-amazon-linux-latest/x", "ami-0123456789abcdef0 "):
        assert not pattern.match(bad), bad
    assert template["Parameters"][ids.IMAGE_ID]["Type"] == "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"


def _release_check(template, path: Path, sha256: str) -> str:
    script = _substituted(template)
    start, end = script.index(userdata.RELEASE_CHECK_BEGIN), script.index(userdata.RELEASE_CHECK_END)
    block = script[start:end].replace(userdata.RELEASE_PATH, str(path))
    return block.replace("'<ReleaseSha256>'", f"'{sha256}'")


@pytest.mark.parametrize("given", ["right", "wrong", "empty"])
def test_the_release_is_hash_checked_before_anything_of_it_is_installed(template, tmp_path, given):
    import hashlib

    script = _substituted(template)
    fetched = script.index(f"  {userdata.RELEASE_PATH}\n{userdata.RELEASE_CHECK_BEGIN}")
    assert fetched < script.index(userdata.RELEASE_CHECK_END) < script.index(f"tar -xzf {userdata.RELEASE_PATH}")
    assert _user_data_sub(template)[1]["ReleaseSha256"] == {"Ref": ids.RELEASE_SHA256}
    release = tmp_path / "release.tar.gz"
    release.write_bytes(b"the release")
    digest = hashlib.sha256(b"the release").hexdigest()
    sha256 = {"right": digest, "wrong": hashlib.sha256(b"another").hexdigest(), "empty": ""}[given]
    # The boot script runs with `set -euo pipefail` and an ERR trap: a failing command there fails the boot.
    ran = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + _release_check(template, release, sha256) + "echo installing\n"],
        capture_output=True,
        text=True,
        check=False,
    )
    if given == "wrong":
        assert ran.returncode != 0
        assert "installing" not in ran.stdout
        assert "not ReleaseSha256: not installing it" in ran.stderr
    else:
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.splitlines()[-1] == "installing"
        assert ("without a hash check" in ran.stderr) is (given == "empty")
    assert re.compile(template["Parameters"][ids.RELEASE_SHA256]["AllowedPattern"]).match(digest)


def test_every_file_the_boot_script_makes_executable_exists_by_then(template):
    """`chmod` of a file not yet written fails the boot (``set -e`` and the ERR trap)."""
    script = _substituted(template)
    for match in re.finditer(r"^chmod \S+ (.+)$", script, re.M):
        for path in match.group(1).split():
            written = script.find(f"cat > {path} <<")
            assert 0 <= written < match.start(), f"{path} is made executable before it is written"
