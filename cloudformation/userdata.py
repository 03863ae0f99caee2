"""The boot script of an application instance: install the release, configure, run, report.

Layer: deployment; pure text, no troposphere. ``bootstrap_script`` returns the body of an ``Fn::Sub``: the
template supplies the ``${...}`` variables named in ``SUB_VARIABLES`` (plus ``AWS::Region`` and
``AWS::StackName``). The script avoids shell ``${...}`` so that every ``${`` in it is CloudFormation's.

What an instance runs:
- the release tarball (``make release``: the source tree plus a wheelhouse of the service's lock,
  ``requirements/service.txt``) from ``s3://ReleaseBucket/ReleaseKey``, checked against ``ReleaseSha256`` (a
  mismatch fails the boot before anything of it runs), installed into a virtualenv with no package index and
  every file's hash checked, so an instance needs no route to PyPI and boots the exact locked set every time
  (no emulator, no stack generator);
- one systemd unit per Procfile process type (``filesync@web``, ``filesync@notifier``), each running the
  release's own Procfile line, so the Procfile stays the one definition of each command;
- the service's settings in ``/etc/filesync/env`` (names read by ``service.settings``), the token signing
  secret fetched from Secrets Manager at boot into ``/run/filesync/secrets.env`` (tmpfs, root only; systemd
  reads it), never into the template, the user data or the instance's disk;
- the CloudWatch agent, started first: it ships the boot's own output (cloud-init), each process's log and
  the drain watcher's to the stack's log group, so a failed boot leaves its evidence behind after the
  rollback terminated the instance; and it publishes memory, root disk and notifier-process metrics per
  Auto Scaling group (``AGENT_NAMESPACE``);
- ``cfn-signal`` once ``/readyz`` answers, so a release that cannot become ready rolls the stack back;
- a drain watcher (``filesync-drain``): when Auto Scaling starts terminating the instance (the target
  lifecycle state in the instance metadata turns ``Terminated``, as deregistration from the load balancer
  begins), it stops the services gracefully (SIGTERM: the web process drains, the notifier hands its leases
  back) and then completes the termination lifecycle hook.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

#: The ``Fn::Sub`` variables the script uses besides the pseudo parameters; the template maps each.
SUB_VARIABLES = (
    "Bucket",
    "Table",
    "UploadRoleArn",
    "SenderEmail",
    "MailConfigurationSet",
    "MailFeedbackQueueUrl",
    "DomainName",
    "TokenSecretArn",
    "LogGroup",
    "ReleaseBucket",
    "ReleaseKey",
    "ReleaseSha256",
)

#: Environment variable holding the token signing secret, written at boot from Secrets Manager.
TOKEN_SECRET_VARIABLE = "FILESYNC_TOKEN_SECRET"  # noqa: S105 (a variable name, not a secret)

APP_DIR = "/opt/filesync/app"
VENV_DIR = "/opt/filesync/venv"
LOG_DIR = "/var/log/filesync"
#: Exit status of the Procfile runner when the release has no such process type (EX_CONFIG): systemd does
#: not restart it, so a release without a notifier simply runs none.
MISSING_PROCESS_STATUS = 78
#: ``service.settings`` exits 2 on a bad setting: restarting cannot fix that either.
BAD_SETTINGS_STATUS = 2
#: The CloudWatch agent's metric namespace (the instance role may publish to it alone).
AGENT_NAMESPACE = "CWAgent"
#: How often the agent ships logs: a failed boot waits twice this before it signals (and is terminated).
AGENT_FLUSH_SECONDS = 5
#: The command line the agent's process count looks for (the Procfile's notifier line).
NOTIFIER_PATTERN = "service.notifier"
#: Where the boot script puts the release tarball, and the markers around its hash check (tests run that block).
RELEASE_PATH = "/opt/filesync/release.tar.gz"
RELEASE_CHECK_BEGIN = "# --- the release's hash check"
RELEASE_CHECK_END = "# --- end of the release's hash check"
#: Boot logs shipped besides the processes': cloud-init's, where the user data's output goes.
BOOT_LOGS = {"cloud-init-output": "/var/log/cloud-init-output.log", "cloud-init": "/var/log/cloud-init.log"}


def service_environment(port: int, *, drain_seconds: int, linger_seconds: int) -> dict[str, str]:
    """The variables ``service.settings.Settings.from_env`` reads on an instance (values are ``Fn::Sub``)."""
    return {
        "FILESYNC_BACKEND": "aws",
        "AWS_REGION": "${AWS::Region}",
        "FILESYNC_BUCKET": "${Bucket}",
        "FILESYNC_TABLE": "${Table}",
        "FILESYNC_UPLOAD_ROLE_ARN": "${UploadRoleArn}",
        "FILESYNC_MAIL_FROM": "${SenderEmail}",
        # Mail goes out with the stack's configuration set; its bounces and complaints come back on the queue.
        "FILESYNC_SES_CONFIGURATION_SET": "${MailConfigurationSet}",
        "FILESYNC_MAIL_FEEDBACK_QUEUE_URL": "${MailFeedbackQueueUrl}",
        # The notifier's unsubscribe links point here.
        "FILESYNC_PUBLIC_URL": "https://${DomainName}",
        # Behind the load balancer: the client's address is the last X-Forwarded-For hop it appends.
        "FILESYNC_TRUST_FORWARDED_FOR": "true",
        # The drain after SIGTERM: as long as the API target group's deregistration delay, and lingering
        # for requests the load balancer routes in the seconds after deregistration began.
        "FILESYNC_DRAIN_SECONDS": str(drain_seconds),
        "FILESYNC_DRAIN_LINGER_SECONDS": str(linger_seconds),
        "PORT": str(port),
    }


def agent_config(processes: Sequence[str]) -> dict[str, Any]:
    """The CloudWatch agent's configuration: log files to the stack's log group (``${LogGroup}``), one
    stream per instance and file; memory, root disk and the notifier's process count, each also summed over
    the Auto Scaling group (the alarms' dimension; ``${!...}`` is the agent's own variable, escaped from
    ``Fn::Sub``)."""
    files = {**{name: f"{LOG_DIR}/{name}.log" for name in (*processes, "drain")}, **BOOT_LOGS}
    return {
        "agent": {"metrics_collection_interval": 60, "omit_hostname": True},
        "logs": {
            "force_flush_interval": AGENT_FLUSH_SECONDS,
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {
                            "file_path": path,
                            "log_group_name": "${LogGroup}",
                            "log_stream_name": f"{{instance_id}}/{name}",
                        }
                        for name, path in files.items()
                    ]
                }
            },
        },
        "metrics": {
            "namespace": AGENT_NAMESPACE,
            "append_dimensions": {
                "AutoScalingGroupName": "${!aws:AutoScalingGroupName}",
                "InstanceId": "${!aws:InstanceId}",
            },
            "aggregation_dimensions": [["AutoScalingGroupName"]],
            "metrics_collected": {
                "mem": {"measurement": ["mem_used_percent"]},
                "disk": {"measurement": ["used_percent"], "resources": ["/"], "drop_device": True},
                "procstat": [{"pattern": NOTIFIER_PATTERN, "measurement": ["pid_count"]}],
            },
        },
    }


def bootstrap_script(
    *,
    signal_resource: str,
    port: int,
    readiness_path: str,
    processes: Sequence[str],
    stop_timeout_seconds: int,
    termination_hook: str,
    environment: Mapping[str, str],
) -> str:
    """The user data script. ``signal_resource`` is the logical id of the Auto Scaling group to signal (and
    whose termination hook ``termination_hook`` the drain watcher completes)."""
    env_lines = "\n".join(f"{name}={value}" for name, value in environment.items())
    units = " ".join(f"filesync@{name}.service" for name in processes)
    agent = json.dumps(agent_config(processes), indent=2)
    return f"""#!/bin/bash
# Boot script of a filesync instance, generated by `python -m cloudformation` (cloudformation/userdata.py).
set -euo pipefail

report() {{
  /opt/aws/bin/cfn-signal --exit-code "$1" --stack '${{AWS::StackName}}' --resource '{signal_resource}' \\
    --region '${{AWS::Region}}' || true
}}
fail() {{
  echo "the boot failed; its logs are in the log group '${{LogGroup}}'" >&2
  sleep {2 * AGENT_FLUSH_SECONDS}  # the agent ships every {AGENT_FLUSH_SECONDS} s: let it send the last lines
  report 1
}}
trap 'fail' ERR

dnf install -y -q python3.11 awscli-2 aws-cfn-bootstrap amazon-cloudwatch-agent logrotate
id filesync >/dev/null 2>&1 || useradd --system --home-dir /opt/filesync --shell /sbin/nologin filesync
install -d -m 0755 /opt/filesync /opt/filesync/bin /etc/filesync {APP_DIR} {LOG_DIR}

# Logs and metrics first: whatever fails from here on is in the log group, after the instance is gone.
cat > /opt/aws/amazon-cloudwatch-agent/etc/filesync.json <<'AGENT'
{agent}
AGENT
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \
  -c file:/opt/aws/amazon-cloudwatch-agent/etc/filesync.json

# The release: source tree and wheelhouse; installed with no package index.
aws s3 cp --only-show-errors --region '${{AWS::Region}}' 's3://${{ReleaseBucket}}/${{ReleaseKey}}' \\
  {RELEASE_PATH}
{RELEASE_CHECK_BEGIN}
expected='${{ReleaseSha256}}'
if [ -n "$expected" ]; then
  if ! echo "$expected  {RELEASE_PATH}" | sha256sum --check --strict --status; then
    echo "the release's SHA-256 is not ReleaseSha256: not installing it" >&2
    sha256sum {RELEASE_PATH} >&2
    false
  fi
  echo "the release matches ReleaseSha256"
else
  echo "warning: ReleaseSha256 is empty: the release is installed without a hash check" >&2
fi
{RELEASE_CHECK_END}
tar -xzf {RELEASE_PATH} -C {APP_DIR}
python3.11 -m venv {VENV_DIR}
{VENV_DIR}/bin/pip install --quiet --no-index --find-links {APP_DIR}/wheels -r {APP_DIR}/requirements/service.txt
# The services cannot write here (ProtectSystem=strict): compile now, not on every start.
{VENV_DIR}/bin/python -m compileall -q {APP_DIR}/service

cat > /etc/filesync/env <<'ENV'
{env_lines}
ENV
echo "WEB_CONCURRENCY=$(nproc)" >> /etc/filesync/env

cat > /opt/filesync/bin/fetch-secrets <<'SCRIPT'
#!/bin/bash
# Fetch the token signing secret into a root-only file on tmpfs that systemd reads for the services.
set -euo pipefail
umask 077
mkdir -p /run/filesync
secret=$(aws secretsmanager get-secret-value --region '${{AWS::Region}}' --secret-id '${{TokenSecretArn}}' \\
  --query SecretString --output text)
printf '{TOKEN_SECRET_VARIABLE}=%s\\n' "$secret" > /run/filesync/secrets.env.new
mv /run/filesync/secrets.env.new /run/filesync/secrets.env
SCRIPT

cat > /opt/filesync/bin/procfile-run <<'SCRIPT'
#!/bin/bash
# Run one process type of the release's Procfile, which stays the one definition of each command.
set -euo pipefail
command=$(sed -n "s/^$1:[[:space:]]*//p" {APP_DIR}/Procfile)
if [ -z "$command" ]; then
  echo "the release's Procfile has no '$1' process" >&2
  exit {MISSING_PROCESS_STATUS}
fi
exec /bin/bash -c "$command"
SCRIPT

cat > /opt/filesync/bin/drain-on-termination <<'SCRIPT'
#!/bin/bash
# When Auto Scaling starts terminating this instance (scale-in, a rolling update, an instance refresh, a
# failed health check), stop the services gracefully, then let the termination go on.
set -uo pipefail
imds() {{
  local token
  token=$(curl -fsS -X PUT http://169.254.169.254/latest/api/token -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') &&
    curl -fsS -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}}
until [ "$(imds autoscaling/target-lifecycle-state)" = Terminated ]; do sleep 5; done
echo "termination began: draining {units}"
# SIGTERM: the web process answers its long-polls, finishes its requests and exits; the notifier hands its
# leases back. systemd waits for both (at most TimeoutStopSec).
systemctl stop {units}
echo "stopped; shipping the last logs"
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a stop || true
instance=$(imds instance-id)
group=$(aws cloudformation describe-stack-resource --region '${{AWS::Region}}' --stack-name '${{AWS::StackName}}' \
  --logical-resource-id '{signal_resource}' --query StackResourceDetail.PhysicalResourceId --output text)
# The hook's wait begins once the load balancer has let the instance go: until then completing it fails.
for attempt in $(seq 1 120); do
  if aws autoscaling complete-lifecycle-action --region '${{AWS::Region}}' --auto-scaling-group-name "$group" \
      --lifecycle-hook-name '{termination_hook}' --instance-id "$instance" --lifecycle-action-result CONTINUE; then
    exit 0
  fi
  sleep 5
done
echo "could not complete the lifecycle action; its timeout lets the termination go on" >&2
exit 1
SCRIPT
chmod 0755 /opt/filesync/bin/fetch-secrets /opt/filesync/bin/procfile-run /opt/filesync/bin/drain-on-termination

cat > /etc/systemd/system/filesync-secrets.service <<'UNIT'
[Unit]
Description=filesync: token signing secret from Secrets Manager
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/opt/filesync/bin/fetch-secrets
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT

cat > /etc/systemd/system/filesync@.service <<'UNIT'
[Unit]
Description=filesync %i (the release's Procfile)
Requires=filesync-secrets.service
After=filesync-secrets.service network-online.target
Wants=network-online.target

[Service]
Type=exec
User=filesync
Group=filesync
WorkingDirectory={APP_DIR}
Environment=PATH={VENV_DIR}/bin:/usr/bin:/bin
EnvironmentFile=/etc/filesync/env
EnvironmentFile=/run/filesync/secrets.env
# One /metrics for all of gunicorn's workers (prometheus-client's multiprocess mode), wiped at each start.
RuntimeDirectory=filesync-metrics-%i
Environment=PROMETHEUS_MULTIPROC_DIR=/run/filesync-metrics-%i
ExecStart=/opt/filesync/bin/procfile-run %i
StandardOutput=append:{LOG_DIR}/%i.log
StandardError=inherit
# SIGTERM drains in-flight requests (gunicorn's graceful timeout); then systemd kills what is left.
KillSignal=SIGTERM
TimeoutStopSec={stop_timeout_seconds}
Restart=on-failure
RestartSec=2
RestartPreventExitStatus={BAD_SETTINGS_STATUS} {MISSING_PROCESS_STATUS}
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ProtectHome=yes

[Install]
WantedBy=multi-user.target
UNIT

cat > /etc/systemd/system/filesync-drain.service <<'UNIT'
[Unit]
Description=filesync: drain when Auto Scaling terminates this instance
Wants=network-online.target
After=network-online.target

[Service]
Type=exec
ExecStart=/opt/filesync/bin/drain-on-termination
StandardOutput=append:{LOG_DIR}/drain.log
StandardError=inherit
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
UNIT

cat > /etc/logrotate.d/filesync <<'ROTATE'
{LOG_DIR}/*.log {{
    daily
    maxsize 100M
    rotate 3
    compress
    missingok
    notifempty
    copytruncate
}}
ROTATE


systemctl daemon-reload
systemctl enable --now filesync-secrets.service {units} filesync-drain.service

# Ready when the service says so (its dependencies answer): then the instance may take traffic.
for attempt in $(seq 1 60); do
  if curl -fsS -o /dev/null http://127.0.0.1:{port}{readiness_path}; then
    report 0
    exit 0
  fi
  echo "waiting for /readyz (attempt $attempt)"
  sleep 5
done
echo "the service did not become ready" >&2
trap - ERR
fail
exit 1
"""
