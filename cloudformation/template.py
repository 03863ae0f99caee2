"""The whole production stack: ``build_template(params) -> Template``, pure.

Layer: deployment; imports troposphere, ``cloudformation.{dashboard,ids,policies,userdata}`` and
``service.resources`` (the shapes shared with the embedded default). Sections, in dependency order:

- network: a VPC over two availability zones (IPv4, plus IPv6 on the public side for the dual-stack load
  balancer), public subnets for the load balancer, private subnets for instances, S3 and DynamoDB gateway
  endpoints (that traffic never crosses a NAT), one NAT gateway per zone or, with ``EnableNat=false``,
  interface endpoints for the other AWS APIs the instances call;
- data: the blob bucket and the table (retained when the stack goes, never replaced: the stack policy), the
  token signing secret; ``ExistingTableName``/``ExistingBucketName`` point everything that uses them at a
  table or bucket made elsewhere (a point-in-time restore, a deleted stack's retained data) instead, leaving
  the stack's own in place, so a restore is a parameter change and never replaces or removes a resource;
- mail: the SES sender (the address, or with ``MailDomain`` a domain identity with Easy DKIM and a custom
  MAIL FROM, their DNS records in the hosted zone), a configuration set with reputation metrics whose
  bounce and complaint events go to an SNS topic and on to an SQS queue the notifier reads (it suppresses
  the addresses);
- identity: the instance role, the upload role clients' credentials come from;
- front: the Application Load Balancer (HTTPS, HTTP redirected, ``/metrics`` answered by the listener
  itself, access logs to a bucket of their own, an optional WAF rate rule on ``/v1/auth/``), two target
  groups checking liveness (the API, and the change feed's long-polls kept apart so they do not skew the
  API's response-time alarm; each drains longer than its requests last), Route 53 names;
- compute: launch template and Auto Scaling group with rolling updates gated on instances' readiness, and
  a termination lifecycle hook the instances' drain watcher completes;
- operations: log group, alarms (each with its runbook entry in ``docs/operations.md``) to an SNS topic,
  failed launches forwarded there, a dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from troposphere import (
    AWS_NO_VALUE,
    Base64,
    Cidr,
    Equals,
    Export,
    FindInMap,
    GetAtt,
    GetAZs,
    If,
    Join,
    Not,
    Or,
    Output,
    Parameter,
    Ref,
    Select,
    Sub,
    Tags,
    Template,
    ec2,
    events,
    iam,
    logs,
    route53,
    s3,
    secretsmanager,
    ses,
    sns,
    sqs,
    wafv2,
)
from troposphere import autoscaling as asg
from troposphere import cloudformation as cfn
from troposphere import cloudwatch as cw
from troposphere import dynamodb as ddb
from troposphere import elasticloadbalancingv2 as elb
from troposphere.policies import (
    AutoScalingRollingUpdate,
    AutoScalingScheduledAction,
    CreationPolicy,
    ResourceSignal,
    UpdatePolicy,
)

from cloudformation import dashboard, ids, policies, userdata
from service import resources

#: Liveness, what the load balancer and the Auto Scaling group check: the process answers (no I/O). A
#: dependency's blip must not mark every instance unhealthy and have the group replace the whole fleet.
HEALTH_CHECK_PATH = "/healthz"
#: Readiness, what the boot script waits for before it signals CloudFormation: S3 and DynamoDB reachable.
READINESS_PATH = "/readyz"
#: The termination lifecycle hook the instances' drain watcher completes.
TERMINATION_HOOK_NAME = "filesync-drain"
#: Paths the public listener never forwards: the instance's metrics are for the operators (through Session
#: Manager), not for anyone on the internet.
INTERNAL_PATHS = ("/metrics", "/metrics/*")
#: Long-polls of the change feed (``GET /v1/ns/<ns>/changes?wait=...``) go to their own target group.
FEED_PATH_PATTERN = "/v1/ns/*/changes"
FEED_WAIT_PARAMETER = "wait"
#: Amazon Linux 2023 on x86_64, matching the wheelhouse ``make release`` builds.
DEFAULT_IMAGE_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
#: x86_64 types only (the AMI and the release's wheels are x86_64).
INSTANCE_TYPES = (
    "t3.small",
    "t3.medium",
    "t3.large",
    "m6i.large",
    "m6i.xlarge",
    "m7i.large",
    "m7i.xlarge",
    "c6i.large",
    "c6i.xlarge",
    "c7i.large",
    "c7i.xlarge",
)
#: CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_CHOICES = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653)
#: AWS APIs an instance calls besides S3 and DynamoDB, reached through interface endpoints when there is
#: no NAT gateway: logical id prefix -> endpoint service name. SES's API has no VPC endpoint: without a NAT
#: (or another route out) the notifier cannot send mail.
INTERFACE_ENDPOINTS = {
    "Sts": "sts",
    "SecretsManager": "secretsmanager",
    "Logs": "logs",
    "CloudFormation": "cloudformation",
    # The drain watcher completes the termination lifecycle action.
    "AutoScaling": "autoscaling",
    # Session Manager, and the CloudWatch agent's metrics.
    "Ssm": "ssm",
    "SsmMessages": "ssmmessages",
    "Monitoring": "monitoring",
    # The notifier reads the mail feedback queue.
    "Sqs": "sqs",
}
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
ALARM_PERIOD_SECONDS = 60
#: Below this many requests a minute, a 5xx rate is noise (one error in three requests is 33%).
MIN_REQUESTS_FOR_5XX_RATE = 20
#: The paths the optional WAF rate rule counts: login, sign-up, token refresh.
AUTH_PATH_PREFIX = "/v1/auth/"
#: Where the load balancer's access logs go in their bucket.
ACCESS_LOG_PREFIX = "alb"
#: Where each alarm's runbook entry is: a heading per alarm, its logical id (the anchor is its lower case).
RUNBOOK = "docs/operations.md"
#: Minutes the group may have fewer instances in service than it wants before the launch alarm: longer
#: than an instance may take to become ready (the 15-minute signal timeout).
LAUNCH_ALARM_MINUTES = 20
#: SES reviews an account at a 5% bounce rate and a 0.1% complaint rate (and may pause its sending at 10%
#: and 0.5%): alarm at half the review levels, while there is time to act. SES updates them about hourly.
SES_BOUNCE_RATE = 0.025
SES_COMPLAINT_RATE = 0.0005

#: The service's own CPU per request of the load tool's default mix (`python -m tools.bench sustained`,
#: 2026-11-29: 4.10 ms; what the service does, not the store's work, so it carries over to an instance).
SERVICE_CPU_MS_PER_REQUEST = 4.10
#: The default instance type, its vCPUs, and the CPU a t3.small earns credits for (20% of each vCPU): a group
#: whose average stays at or below it never spends surplus credits in the T3 default (unlimited) mode.
DEFAULT_INSTANCE_TYPE = "t3.small"
DEFAULT_INSTANCE_VCPUS = 2
BURSTABLE_BASELINE_PERCENT = 20
#: Scale out when either is passed: CPU at the baseline, or 70% of the requests a minute that CPU serves at
#: the measured cost per request (2 x 20% of a core / 4.10 ms = 97 requests a second; 70%: 4,100 a minute).
TARGET_CPU_PERCENT = BURSTABLE_BASELINE_PERCENT
TARGET_REQUESTS_PER_MINUTE = 4000
SES_ALARM_PERIOD_SECONDS = 900
MEMORY_ALARM_PERCENT = 90
DISK_ALARM_PERCENT = 85
#: What the notifier logs when a tick fails (``service/core/notify.py``), counted by a log metric filter.
NOTIFIER_FAILURE_MESSAGE = "notifier tick failed"
NOTIFIER_FAILURE_METRIC = "NotifierTickFailures"
#: The custom MAIL FROM domain is this subdomain of ``MailDomain`` (its MX and SPF records in the zone).
MAIL_FROM_SUBDOMAIN = "mail"
MAIL_FROM_SPF = '"v=spf1 include:amazonses.com ~all"'
DNS_TTL_SECONDS = "1800"
#: SQS keeps an unread feedback message this long (its most), so a notifier outage loses none.
FEEDBACK_RETENTION_SECONDS = 14 * 86400
#: A received message comes back to the queue after this long if it was not deleted (the store failed).
FEEDBACK_VISIBILITY_SECONDS = 60
#: The backlog alarm: the oldest unread feedback message is older than this (nobody reads the queue).
FEEDBACK_BACKLOG_SECONDS = 1800
#: The data: retained when the stack goes, and never replaced or removed by an update (the stack policy).
PROTECTED_RESOURCES = (ids.BUCKET, ids.TABLE)


@dataclass(frozen=True, slots=True)
class TemplateParams:
    """Build-time choices; everything an operator picks per deployment is a CloudFormation parameter."""

    description: str = "filesync: file synchronization service (ALB, Auto Scaling EC2, S3, DynamoDB, STS, SES)"
    #: Where the web process listens (the Procfile's ``$PORT``).
    service_port: int = 8080
    #: The upload policy: how long a leaving instance gives requests in flight through the API's target
    #: group (a streamed upload or download through the service) to finish. The API target group's
    #: deregistration delay and the service's ``FILESYNC_DRAIN_SECONDS``. Longer transfers go straight to
    #: S3 (multipart, resumable), never through an instance.
    api_drain_seconds: int = 300
    #: The feed target group's deregistration delay: above the longest long-poll (60 s), so a long-poll
    #: still waiting when the instance leaves is answered, not cut, even if the drain signal is missed.
    feed_drain_seconds: int = 70
    #: The drain keeps the port open at least this long after it began: the load balancer may still route
    #: a request in the seconds after deregistration started.
    drain_linger_seconds: int = 5
    #: The Procfile's gunicorn ``--graceful-timeout``: the drain plus the service's shutdown timeout (25 s),
    #: and a margin. systemd's stop timeout leaves it this long.
    graceful_shutdown_seconds: int = 330
    #: How long the termination lifecycle hook holds a leaving instance for its drain watcher (then
    #: CONTINUE): the stop timeout, and time to ship the last logs.
    termination_hook_seconds: int = 600
    #: The load balancer's idle timeout: above the feed's longest long-poll (60 s) so a waiting request is
    #: not cut, below gunicorn's ``--keep-alive`` (75 s) so the server never closes a connection the load
    #: balancer is about to reuse (which would be a 502).
    idle_timeout_seconds: int = 70
    #: Procfile process types run on every instance, one systemd unit each.
    processes: tuple[str, ...] = ("web", "notifier")
    availability_zones: int = 2


def build_template(params: TemplateParams) -> Template:
    """The stack, from nothing but ``params`` and ``service.resources``."""
    if not 2 <= params.availability_zones <= 3:
        raise ValueError("availability_zones must be 2 or 3")
    t = Template(Description=params.description)
    t.set_version("2010-09-09")
    p = _parameters(t)
    net = _network(t, p, params)
    data = _data(t, p)
    # Logs are evidence: a deleted stack's last hours stay readable (their retention still applies).
    log_group = t.add_resource(
        logs.LogGroup(
            ids.LOG_GROUP,
            DeletionPolicy="Retain",
            UpdateReplacePolicy="Retain",
            RetentionInDays=Ref(p[ids.LOG_RETENTION_DAYS]),
        )
    )
    mail = _mail(t, p)
    roles = _identity(t, p, data, mail, log_group)
    front = _front(t, p, params, net)
    group = _compute(t, p, params, net, data, mail, roles, front, log_group)
    _operations(t, p, front, data, mail, group, log_group)
    _outputs(t, net, data, mail, roles, front, group, log_group)
    return t


# --- Parameters -------------------------------------------------------------------------------------


def _parameters(t: Template) -> dict[str, Parameter]:
    p: dict[str, Parameter] = {}

    def add(logical_id: str, **kwargs: Any) -> None:
        p[logical_id] = t.add_parameter(Parameter(logical_id, **kwargs))

    add(
        ids.DOMAIN_NAME,
        Type="String",
        Description="The service's name, e.g. files.example.com (A and AAAA records are created for it)",
        AllowedPattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        ConstraintDescription="a lower-case DNS name",
    )
    add(
        ids.HOSTED_ZONE_ID,
        Type="AWS::Route53::HostedZone::Id",
        Description="The Route 53 public hosted zone that holds DomainName",
    )
    add(
        ids.CERTIFICATE_ARN,
        Type="String",
        Description="ACM certificate for DomainName, in this stack's region",
        AllowedPattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$",
        ConstraintDescription="an ACM certificate ARN",
    )
    add(
        ids.SENDER_EMAIL,
        Type="String",
        Description="The address notification mail comes from (SES sends it a verification message)",
        AllowedPattern=EMAIL_PATTERN,
        ConstraintDescription="an email address",
    )
    add(
        ids.MAIL_DOMAIN,
        Type="String",
        Default="",
        AllowedPattern=r"^(([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63})?$",
        ConstraintDescription="a lower-case DNS name, or empty",
        Description=(
            "SenderEmail's domain, in the hosted zone HostedZoneId: SES verifies the domain with Easy DKIM and "
            f"sends from a custom MAIL FROM domain ({MAIL_FROM_SUBDOMAIN}.<domain>), their records made in the "
            "zone. Empty: SES verifies SenderEmail alone (a mail to it), without DKIM"
        ),
    )
    add(
        ids.ALARM_EMAIL,
        Type="String",
        Description="Where alarms are mailed (SNS asks it to confirm the subscription)",
        AllowedPattern=EMAIL_PATTERN,
        ConstraintDescription="an email address",
    )
    add(
        ids.RELEASE_BUCKET,
        Type="String",
        Description="S3 bucket holding release tarballs (`make release`), in this region",
        AllowedPattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        ConstraintDescription="an S3 bucket name",
    )
    add(
        ids.RELEASE_KEY,
        Type="String",
        Description="Key of the release to run, e.g. releases/filesync-0a1b2c3.tar.gz; a new key rolls it out",
        AllowedPattern=r"^[^\s]+\.tar\.gz$",
        MaxLength=1024,
        ConstraintDescription="an S3 key ending in .tar.gz",
    )
    add(
        ids.IMAGE_ID,
        Type="AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
        Default=DEFAULT_IMAGE_PARAMETER,
        Description=(
            "SSM parameter naming the AMI (Amazon Linux 2023 x86_64); resolved at each deploy, so a deploy "
            "may roll out a newer image: PinnedImageId fixes it"
        ),
    )
    add(
        ids.PINNED_IMAGE_ID,
        Type="String",
        Default="",
        AllowedPattern=r"^(ami-[0-9a-f]{8}([0-9a-f]{9})?)?$",
        ConstraintDescription="an AMI id (ami-...), or empty",
        Description=(
            "The AMI instances boot, fixed (Amazon Linux 2023 x86_64); wins over ImageId. Empty: whatever "
            "ImageId's SSM parameter names at the deploy"
        ),
    )
    add(
        ids.RELEASE_SHA256,
        Type="String",
        Default="",
        AllowedPattern=r"^([0-9a-f]{64})?$",
        ConstraintDescription="64 lower-case hex digits, or empty",
        Description=(
            "SHA-256 of the release tarball (`sha256sum` of what `make release` wrote); instances refuse a "
            "release that does not match. Empty: not checked (the boot log says so)"
        ),
    )
    add(
        ids.INSTANCE_TYPE,
        Type="String",
        Default=DEFAULT_INSTANCE_TYPE,
        AllowedValues=list(INSTANCE_TYPES),
        Description="EC2 instance type (x86_64)",
    )
    add(
        ids.MIN_SIZE,
        Type="Number",
        Default="2",
        MinValue=2,
        MaxValue=100,
        Description="Fewest instances (at least one per availability zone)",
    )
    add(
        ids.MAX_SIZE,
        Type="Number",
        Default="6",
        MinValue=3,
        MaxValue=100,
        Description="Most instances; must exceed MinSize (a rolling update adds one before removing one)",
    )
    add(
        ids.TARGET_REQUESTS_PER_INSTANCE,
        Type="Number",
        Default=str(TARGET_REQUESTS_PER_MINUTE),
        MinValue=1,
        Description="Scaling target: API requests per instance per minute",
    )
    add(
        ids.TARGET_CPU_PERCENT,
        Type="Number",
        Default=str(TARGET_CPU_PERCENT),
        MinValue=10,
        MaxValue=90,
        Description="Scaling target: average CPU utilization of the group, percent",
    )
    add(
        ids.ENABLE_NAT,
        Type="String",
        Default="true",
        AllowedValues=["true", "false"],
        Description=(
            "One NAT gateway per zone for the instances' outbound traffic. false: interface endpoints for "
            "the AWS APIs the instances call (STS, Secrets Manager, CloudWatch Logs and metrics, "
            "CloudFormation, Auto Scaling, Systems Manager, SQS) instead, and no mail (SES has no VPC endpoint "
            "for its API)"
        ),
    )
    add(
        ids.VPC_CIDR,
        Type="String",
        Default="10.0.0.0/16",
        AllowedPattern=r"^([0-9]{1,3}\.){2}0\.0/16$",
        ConstraintDescription="a /16 block such as 10.0.0.0/16",
        Description="The VPC's IPv4 block; each subnet gets a /20 of it",
    )
    add(
        ids.LOG_RETENTION_DAYS,
        Type="Number",
        Default="30",
        AllowedValues=[str(days) for days in LOG_RETENTION_CHOICES],
        Description="Days the processes' logs are kept",
    )
    add(
        ids.ALARM_5XX_PERCENT,
        Type="Number",
        Default="1",
        MinValue=0,
        MaxValue=100,
        Description="Alarm when more than this percent of requests get a 5xx (load balancer's or ours)",
    )
    add(
        ids.EXISTING_TABLE_NAME,
        Type="String",
        Default="",
        AllowedPattern=r"^([a-zA-Z0-9_.-]{3,255})?$",
        ConstraintDescription="a DynamoDB table name, or empty",
        Description=(
            "Use this table instead of the stack's own (a point-in-time restore of it, or the table a deleted "
            "stack retained). Empty: the stack's own"
        ),
    )
    add(
        ids.EXISTING_BUCKET_NAME,
        Type="String",
        Default="",
        AllowedPattern=r"^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$",
        ConstraintDescription="an S3 bucket name, or empty",
        Description=(
            "Use this bucket instead of the stack's own (one this template made, e.g. retained by a deleted "
            "stack: versioned, with its lifecycle rules). Empty: the stack's own"
        ),
    )
    add(
        ids.CORS_ORIGINS,
        Type="CommaDelimitedList",
        Default="*",
        Description=(
            "Origins whose web pages may upload to and download from the bucket with presigned URLs (its "
            "CORS rule), e.g. https://app.example.com; * for any"
        ),
    )
    add(
        ids.LOGIN_RATE_LIMIT,
        Type="Number",
        Default="0",
        MinValue=0,
        MaxValue=2_000_000_000,
        Description=(
            "Requests to /v1/auth/ (login, sign-up, refresh) one client address may make in 5 minutes before "
            "a WAF web ACL blocks it for a while (at least 10); 0: no WAF"
        ),
    )
    add(
        ids.ALARM_P99_SECONDS,
        Type="Number",
        Default="1",
        MinValue=0,
        Description="Alarm when the API's 99th percentile response time exceeds this (long-polls excluded)",
    )
    t.set_metadata(
        {
            "AWS::CloudFormation::Interface": {
                "ParameterGroups": [
                    {
                        "Label": {"default": "Name"},
                        "Parameters": [ids.DOMAIN_NAME, ids.HOSTED_ZONE_ID, ids.CERTIFICATE_ARN],
                    },
                    {
                        "Label": {"default": "Release"},
                        "Parameters": [ids.RELEASE_BUCKET, ids.RELEASE_KEY, ids.RELEASE_SHA256],
                    },
                    {
                        "Label": {"default": "Capacity"},
                        "Parameters": [
                            ids.INSTANCE_TYPE,
                            ids.IMAGE_ID,
                            ids.PINNED_IMAGE_ID,
                            ids.MIN_SIZE,
                            ids.MAX_SIZE,
                            ids.TARGET_REQUESTS_PER_INSTANCE,
                            ids.TARGET_CPU_PERCENT,
                        ],
                    },
                    {
                        "Label": {"default": "Network and security"},
                        "Parameters": [ids.VPC_CIDR, ids.ENABLE_NAT, ids.CORS_ORIGINS, ids.LOGIN_RATE_LIMIT],
                    },
                    {
                        "Label": {"default": "Data (restore)"},
                        "Parameters": [ids.EXISTING_TABLE_NAME, ids.EXISTING_BUCKET_NAME],
                    },
                    {
                        "Label": {"default": "Mail and operations"},
                        "Parameters": [
                            ids.SENDER_EMAIL,
                            ids.MAIL_DOMAIN,
                            ids.ALARM_EMAIL,
                            ids.ALARM_5XX_PERCENT,
                            ids.ALARM_P99_SECONDS,
                            ids.LOG_RETENTION_DAYS,
                        ],
                    },
                ]
            }
        }
    )
    t.add_condition(ids.NAT_ENABLED, Equals(Ref(p[ids.ENABLE_NAT]), "true"))
    t.add_condition(ids.NAT_DISABLED, Not(Equals(Ref(p[ids.ENABLE_NAT]), "true")))
    t.add_condition(ids.ADOPT_TABLE, Not(Equals(Ref(p[ids.EXISTING_TABLE_NAME]), "")))
    t.add_condition(ids.ADOPT_BUCKET, Not(Equals(Ref(p[ids.EXISTING_BUCKET_NAME]), "")))
    t.add_condition(ids.WAF_ENABLED, Not(Equals(Ref(p[ids.LOGIN_RATE_LIMIT]), "0")))
    t.add_condition(ids.IMAGE_PINNED, Not(Equals(Ref(p[ids.PINNED_IMAGE_ID]), "")))
    t.add_condition(ids.MAIL_DOMAIN_GIVEN, Not(Equals(Ref(p[ids.MAIL_DOMAIN]), "")))
    t.add_condition(ids.NO_MAIL_DOMAIN, Equals(Ref(p[ids.MAIL_DOMAIN]), ""))
    t.add_mapping(ids.ELB_LOG_ACCOUNTS, {r: {"Account": a} for r, a in policies.ELB_LOG_ACCOUNTS.items()})
    regions = [Equals(Ref("AWS::Region"), region) for region in policies.ELB_LOG_ACCOUNTS]
    # Fn::Or takes at most ten conditions.
    t.add_condition(ids.ELB_LOG_ACCOUNT_REGION, Or(*(Or(*regions[i : i + 10]) for i in range(0, len(regions), 10))))
    return p


# --- Network ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Network:
    vpc: ec2.VPC
    public_subnets: list[ec2.Subnet]
    private_subnets: list[ec2.Subnet]
    #: Everything instances need to reach AWS before they boot: NAT routes or interface endpoints.
    ready: cfn.WaitConditionHandle
    load_balancer_ready: ec2.VPCGatewayAttachment


def _name(suffix: str) -> Tags:
    return Tags(Name=Sub("${AWS::StackName}-" + suffix))


def _network(t: Template, p: dict[str, Parameter], params: TemplateParams) -> _Network:
    zones = params.availability_zones
    vpc = t.add_resource(
        ec2.VPC(
            ids.VPC,
            CidrBlock=Ref(p[ids.VPC_CIDR]),
            EnableDnsSupport=True,
            EnableDnsHostnames=True,
            Tags=_name("vpc"),
        )
    )
    ipv6 = t.add_resource(ec2.VPCCidrBlock(ids.VPC_IPV6_CIDR, VpcId=Ref(vpc), AmazonProvidedIpv6CidrBlock=True))
    gateway = t.add_resource(ec2.InternetGateway(ids.INTERNET_GATEWAY, Tags=_name("igw")))
    attachment = t.add_resource(
        ec2.VPCGatewayAttachment(ids.GATEWAY_ATTACHMENT, VpcId=Ref(vpc), InternetGatewayId=Ref(gateway))
    )
    public_routes = t.add_resource(ec2.RouteTable(ids.PUBLIC_ROUTE_TABLE, VpcId=Ref(vpc), Tags=_name("public")))
    t.add_resource(
        ec2.Route(
            ids.PUBLIC_ROUTE_IPV4,
            DependsOn=[attachment],
            RouteTableId=Ref(public_routes),
            DestinationCidrBlock="0.0.0.0/0",
            GatewayId=Ref(gateway),
        )
    )
    t.add_resource(
        ec2.Route(
            ids.PUBLIC_ROUTE_IPV6,
            DependsOn=[attachment],
            RouteTableId=Ref(public_routes),
            DestinationIpv6CidrBlock="::/0",
            GatewayId=Ref(gateway),
        )
    )
    # /20s of the /16: public subnets first, then private ones.
    ipv4_blocks = Cidr(GetAtt(vpc, "CidrBlock"), 2 * zones, 12)
    ipv6_blocks = Cidr(Select(0, GetAtt(vpc, "Ipv6CidrBlocks")), zones, 64)
    public: list[ec2.Subnet] = []
    private: list[ec2.Subnet] = []
    private_tables: list[ec2.RouteTable] = []
    nat_routes: list[ec2.Route] = []
    for zone in range(zones):
        az = Select(zone, GetAZs(""))
        subnet = t.add_resource(
            ec2.Subnet(
                ids.PUBLIC_SUBNET.format(zone),
                DependsOn=[ipv6],
                VpcId=Ref(vpc),
                AvailabilityZone=az,
                CidrBlock=Select(zone, ipv4_blocks),
                Ipv6CidrBlock=Select(zone, ipv6_blocks),
                Tags=_name(f"public-{zone}"),
            )
        )
        t.add_resource(
            ec2.SubnetRouteTableAssociation(
                ids.PUBLIC_SUBNET_ROUTES.format(zone), SubnetId=Ref(subnet), RouteTableId=Ref(public_routes)
            )
        )
        public.append(subnet)
        subnet = t.add_resource(
            ec2.Subnet(
                ids.PRIVATE_SUBNET.format(zone),
                VpcId=Ref(vpc),
                AvailabilityZone=az,
                CidrBlock=Select(zones + zone, ipv4_blocks),
                Tags=_name(f"private-{zone}"),
            )
        )
        table = t.add_resource(
            ec2.RouteTable(ids.PRIVATE_ROUTE_TABLE.format(zone), VpcId=Ref(vpc), Tags=_name(f"private-{zone}"))
        )
        t.add_resource(
            ec2.SubnetRouteTableAssociation(
                ids.PRIVATE_SUBNET_ROUTES.format(zone), SubnetId=Ref(subnet), RouteTableId=Ref(table)
            )
        )
        # One NAT gateway per zone: losing a zone does not cut the other zone's instances off.
        address = t.add_resource(
            ec2.EIP(ids.NAT_ADDRESS.format(zone), Condition=ids.NAT_ENABLED, DependsOn=[attachment], Domain="vpc")
        )
        nat = t.add_resource(
            ec2.NatGateway(
                ids.NAT_GATEWAY.format(zone),
                Condition=ids.NAT_ENABLED,
                AllocationId=GetAtt(address, "AllocationId"),
                SubnetId=Ref(public[zone]),
                Tags=_name(f"nat-{zone}"),
            )
        )
        nat_routes.append(
            t.add_resource(
                ec2.Route(
                    ids.PRIVATE_ROUTE_NAT.format(zone),
                    Condition=ids.NAT_ENABLED,
                    RouteTableId=Ref(table),
                    DestinationCidrBlock="0.0.0.0/0",
                    NatGatewayId=Ref(nat),
                )
            )
        )
        private.append(subnet)
        private_tables.append(table)

    # Gateway endpoints: blob and table traffic stays on AWS's network and off the NAT's per-GB charge.
    for logical_id, service in ((ids.S3_ENDPOINT, "s3"), (ids.DYNAMODB_ENDPOINT, "dynamodb")):
        t.add_resource(
            ec2.VPCEndpoint(
                logical_id,
                VpcId=Ref(vpc),
                VpcEndpointType="Gateway",
                ServiceName=Sub(f"com.amazonaws.${{AWS::Region}}.{service}"),
                RouteTableIds=[Ref(table) for table in private_tables],
            )
        )
    endpoint_group = t.add_resource(
        ec2.SecurityGroup(
            ids.ENDPOINT_SECURITY_GROUP,
            Condition=ids.NAT_DISABLED,
            GroupDescription="HTTPS from the VPC to AWS API interface endpoints",
            VpcId=Ref(vpc),
            SecurityGroupIngress=[
                ec2.SecurityGroupRule(
                    IpProtocol="tcp",
                    FromPort=443,
                    ToPort=443,
                    CidrIp=GetAtt(vpc, "CidrBlock"),
                    Description="AWS API calls from the VPC",
                )
            ],
            Tags=_name("endpoints"),
        )
    )
    endpoints = [
        t.add_resource(
            ec2.VPCEndpoint(
                ids.INTERFACE_ENDPOINT.format(prefix),
                Condition=ids.NAT_DISABLED,
                VpcId=Ref(vpc),
                VpcEndpointType="Interface",
                ServiceName=Sub(f"com.amazonaws.${{AWS::Region}}.{service}"),
                PrivateDnsEnabled=True,
                SubnetIds=[Ref(subnet) for subnet in private],
                SecurityGroupIds=[Ref(endpoint_group)],
            )
        )
        for prefix, service in INTERFACE_ENDPOINTS.items()
    ]
    # DependsOn cannot name a resource that may not exist; a reference under Fn::If in metadata can, so
    # instances wait for whichever way out this stack has.
    ready = t.add_resource(
        cfn.WaitConditionHandle(
            ids.NETWORK_READY,
            Metadata={
                "NatRoutes": [If(ids.NAT_ENABLED, Ref(route), Ref(AWS_NO_VALUE)) for route in nat_routes],
                "InterfaceEndpoints": [If(ids.NAT_DISABLED, Ref(e), Ref(AWS_NO_VALUE)) for e in endpoints],
                "PrivateRoutes": [Ref(table) for table in private_tables],
            },
        )
    )
    return _Network(vpc, public, private, ready, attachment)


# --- Data -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Data:
    bucket: s3.Bucket
    table: ddb.Table
    secret: secretsmanager.Secret
    #: The bucket and the table the service uses: the stack's own, or the adopted ones.
    bucket_name: Any
    bucket_arn: Any
    table_name: Any
    table_arn: Any


def _cors_rule(rule: dict[str, Any], origins: Any) -> s3.CorsRules:
    """An S3 API CORS rule as CloudFormation spells it, for the deployment's ``origins``."""
    return s3.CorsRules(
        AllowedMethods=rule["AllowedMethods"],
        AllowedOrigins=origins,
        AllowedHeaders=rule["AllowedHeaders"],
        ExposedHeaders=rule["ExposeHeaders"],
        MaxAge=rule["MaxAgeSeconds"],
    )


def _lifecycle_rule(rule: dict[str, Any]) -> s3.LifecycleRule:
    """An S3 API lifecycle rule as CloudFormation spells it (the empty prefix filter is no prefix)."""
    prefix = rule["Filter"]["Prefix"]
    actions: dict[str, Any] = {}
    if "AbortIncompleteMultipartUpload" in rule:
        actions["AbortIncompleteMultipartUpload"] = s3.AbortIncompleteMultipartUpload(
            DaysAfterInitiation=rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        )
    if "NoncurrentVersionExpiration" in rule:
        actions["NoncurrentVersionExpiration"] = s3.NoncurrentVersionExpiration(
            NoncurrentDays=rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        )
    if "Expiration" in rule:
        actions["ExpiredObjectDeleteMarker"] = rule["Expiration"]["ExpiredObjectDeleteMarker"]
    return s3.LifecycleRule(Id=rule["ID"], Status=rule["Status"], **({"Prefix": prefix} if prefix else {}), **actions)


def _encryption_rule(rule: dict[str, Any]) -> s3.ServerSideEncryptionRule:
    return s3.ServerSideEncryptionRule(
        ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(
            SSEAlgorithm=rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
        )
    )


def _kept_private_bucket() -> dict[str, Any]:
    """What every bucket of the stack has: kept when the stack goes, no public access, encrypted, owned by
    the bucket owner."""
    return {
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "PublicAccessBlockConfiguration": s3.PublicAccessBlockConfiguration(**resources.bucket_public_access_block()),
        "BucketEncryption": s3.BucketEncryption(
            ServerSideEncryptionConfiguration=[_encryption_rule(r) for r in resources.bucket_encryption_rules()]
        ),
        "OwnershipControls": s3.OwnershipControls(
            Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]
        ),
    }


def _data(t: Template, p: dict[str, Parameter]) -> _Data:
    # Data outlives the stack: deleting or replacing it leaves the bucket and the table behind.
    bucket = t.add_resource(
        s3.Bucket(
            ids.BUCKET,
            **_kept_private_bucket(),
            CorsConfiguration=s3.CorsConfiguration(
                CorsRules=[_cors_rule(r, Ref(p[ids.CORS_ORIGINS])) for r in resources.bucket_cors_rules()]
            ),
            VersioningConfiguration=s3.VersioningConfiguration(Status=resources.BUCKET_VERSIONING),
            LifecycleConfiguration=s3.LifecycleConfiguration(
                Rules=[_lifecycle_rule(r) for r in resources.bucket_lifecycle_rules()]
            ),
        )
    )
    bucket_name = If(ids.ADOPT_BUCKET, Ref(p[ids.EXISTING_BUCKET_NAME]), Ref(bucket))
    bucket_arn = If(
        ids.ADOPT_BUCKET,
        Sub("arn:${AWS::Partition}:s3:::${Name}", Name=Ref(p[ids.EXISTING_BUCKET_NAME])),
        GetAtt(bucket, "Arn"),
    )
    # On the bucket in use: adopting a bucket moves the policy there.
    t.add_resource(
        s3.BucketPolicy(
            ids.BUCKET_POLICY,
            Bucket=bucket_name,
            PolicyDocument=policies.bucket_policy(bucket_arn),
        )
    )
    table = t.add_resource(
        ddb.Table(
            ids.TABLE,
            DeletionPolicy="Retain",
            UpdateReplacePolicy="Retain",
            DeletionProtectionEnabled=True,
            BillingMode=resources.TABLE_BILLING_MODE,
            KeySchema=[ddb.KeySchema(**key) for key in resources.table_key_schema()],
            AttributeDefinitions=[ddb.AttributeDefinition(**a) for a in resources.table_attribute_definitions()],
            GlobalSecondaryIndexes=[
                ddb.GlobalSecondaryIndex(
                    IndexName=index["IndexName"],
                    KeySchema=[ddb.KeySchema(**key) for key in index["KeySchema"]],
                    Projection=ddb.Projection(**index["Projection"]),
                )
                for index in resources.table_global_secondary_indexes()
            ],
            PointInTimeRecoverySpecification=ddb.PointInTimeRecoverySpecification(PointInTimeRecoveryEnabled=True),
            TimeToLiveSpecification=ddb.TimeToLiveSpecification(
                AttributeName=resources.TABLE_TTL_ATTRIBUTE, Enabled=True
            ),
        )
    )
    # Generated by CloudFormation, read by instances at boot: no person or template ever holds it.
    # Punctuation is excluded so the value is safe in a systemd environment file. It goes with the stack:
    # tokens it signed mean nothing without the stack's instances (a stack rebuilt on the retained data
    # makes a new one, and users sign in again).
    secret = t.add_resource(
        secretsmanager.Secret(
            ids.TOKEN_SECRET,
            DeletionPolicy="Delete",
            UpdateReplacePolicy="Delete",
            Description=Sub("${AWS::StackName}: filesync access-token signing secret (HS256)"),
            GenerateSecretString=secretsmanager.GenerateSecretString(PasswordLength=64, ExcludePunctuation=True),
        )
    )
    table_name = If(ids.ADOPT_TABLE, Ref(p[ids.EXISTING_TABLE_NAME]), Ref(table))
    table_arn = If(
        ids.ADOPT_TABLE,
        Sub(
            "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${Name}",
            Name=Ref(p[ids.EXISTING_TABLE_NAME]),
        ),
        GetAtt(table, "Arn"),
    )
    return _Data(bucket, table, secret, bucket_name, bucket_arn, table_name, table_arn)


# --- Mail -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Mail:
    configuration_set: ses.ConfigurationSet
    queue: sqs.Queue
    #: The SES identity mail is sent as: ``MailDomain`` if given, else ``SenderEmail``.
    identity: Any


def _mail(t: Template, p: dict[str, Parameter]) -> _Mail:
    """The sender's identity, the configuration set every mail goes out with, and its bounce and complaint
    events' way to the notifier (configuration set -> SNS topic -> SQS queue)."""
    zone, domain = Ref(p[ids.HOSTED_ZONE_ID]), Ref(p[ids.MAIL_DOMAIN])
    configuration_set = t.add_resource(
        ses.ConfigurationSet(
            ids.MAIL_CONFIGURATION_SET,
            # Per-configuration-set bounce and complaint rates, beside the account's.
            ReputationOptions=ses.ReputationOptions(ReputationMetricsEnabled=True),
            SendingOptions=ses.SendingOptions(SendingEnabled=True),
            # SES itself drops mail to an address on the account's suppression list (the service's own list
            # holds it back before it is sent).
            SuppressionOptions=ses.SuppressionOptions(SuppressedReasons=["BOUNCE", "COMPLAINT"]),
        )
    )
    configuration_set_arn = Sub(
        "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:configuration-set/${Name}",
        Name=Ref(configuration_set),
    )
    defaults = ses.ConfigurationSetAttributes(ConfigurationSetName=Ref(configuration_set))
    t.add_resource(
        ses.EmailIdentity(
            ids.SENDER_IDENTITY,
            Condition=ids.NO_MAIL_DOMAIN,
            EmailIdentity=Ref(p[ids.SENDER_EMAIL]),
            ConfigurationSetAttributes=defaults,
        )
    )
    mail_from = Sub("${Sub}.${Domain}", Sub=MAIL_FROM_SUBDOMAIN, Domain=domain)
    identity = t.add_resource(
        ses.EmailIdentity(
            ids.MAIL_DOMAIN_IDENTITY,
            Condition=ids.MAIL_DOMAIN_GIVEN,
            EmailIdentity=domain,
            DkimAttributes=ses.DkimAttributes(SigningEnabled=True),
            DkimSigningAttributes=ses.DkimSigningAttributes(NextSigningKeyLength="RSA_2048_BIT"),
            # Bounces come back to a domain of ours (SPF aligned); if its MX is ever missing, SES falls back to
            # its own MAIL FROM rather than refusing to send.
            MailFromAttributes=ses.MailFromAttributes(
                MailFromDomain=mail_from, BehaviorOnMxFailure="USE_DEFAULT_VALUE"
            ),
            ConfigurationSetAttributes=defaults,
        )
    )
    for index in (1, 2, 3):
        t.add_resource(
            route53.RecordSetType(
                ids.MAIL_DKIM_RECORD.format(index),
                Condition=ids.MAIL_DOMAIN_GIVEN,
                HostedZoneId=zone,
                Name=GetAtt(identity, f"DkimDNSTokenName{index}"),
                Type="CNAME",
                TTL=DNS_TTL_SECONDS,
                ResourceRecords=[GetAtt(identity, f"DkimDNSTokenValue{index}")],
            )
        )
    for logical_id, record_type, value in (
        (ids.MAIL_FROM_MX_RECORD, "MX", Sub("10 feedback-smtp.${AWS::Region}.amazonses.com")),
        (ids.MAIL_FROM_SPF_RECORD, "TXT", MAIL_FROM_SPF),
    ):
        t.add_resource(
            route53.RecordSetType(
                logical_id,
                Condition=ids.MAIL_DOMAIN_GIVEN,
                HostedZoneId=zone,
                Name=mail_from,
                Type=record_type,
                TTL=DNS_TTL_SECONDS,
                ResourceRecords=[value],
            )
        )
    topic = t.add_resource(sns.Topic(ids.MAIL_FEEDBACK_TOPIC, DisplayName=Sub("${AWS::StackName} mail feedback")))
    topic_policy = t.add_resource(
        sns.TopicPolicy(
            ids.MAIL_FEEDBACK_TOPIC_POLICY,
            Topics=[Ref(topic)],
            PolicyDocument=policies.mail_feedback_topic_policy(Ref(topic), configuration_set_arn),
        )
    )
    queue = t.add_resource(
        sqs.Queue(
            ids.MAIL_FEEDBACK_QUEUE,
            # Notifications in flight, not data: they go with the stack (the suppressions are in the table).
            DeletionPolicy="Delete",
            UpdateReplacePolicy="Delete",
            MessageRetentionPeriod=FEEDBACK_RETENTION_SECONDS,
            VisibilityTimeout=FEEDBACK_VISIBILITY_SECONDS,
            SqsManagedSseEnabled=True,
        )
    )
    t.add_resource(
        sqs.QueuePolicy(
            ids.MAIL_FEEDBACK_QUEUE_POLICY,
            Queues=[Ref(queue)],
            PolicyDocument=policies.mail_feedback_queue_policy(GetAtt(queue, "Arn"), Ref(topic)),
        )
    )
    t.add_resource(
        sns.SubscriptionResource(
            ids.MAIL_FEEDBACK_SUBSCRIPTION,
            TopicArn=Ref(topic),
            Protocol="sqs",
            Endpoint=GetAtt(queue, "Arn"),
            # SNS's envelope around SES's message, as the notifier expects (it reads bare ones too).
            RawMessageDelivery=False,
        )
    )
    t.add_resource(
        ses.ConfigurationSetEventDestination(
            ids.MAIL_FEEDBACK_DESTINATION,
            # SES checks that it may publish to the topic when the destination is made.
            DependsOn=[topic_policy],
            ConfigurationSetName=Ref(configuration_set),
            EventDestination=ses.EventDestination(
                Name="bounces-and-complaints",
                Enabled=True,
                MatchingEventTypes=list(resources.MAIL_FEEDBACK_EVENT_TYPES),
                SnsDestination=ses.SnsDestination(TopicARN=Ref(topic)),
            ),
        )
    )
    return _Mail(configuration_set, queue, If(ids.MAIL_DOMAIN_GIVEN, domain, Ref(p[ids.SENDER_EMAIL])))


# --- Identity ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Roles:
    instance: iam.Role
    instance_policy: iam.PolicyType
    profile: iam.InstanceProfile
    upload: iam.Role


def _substitute(document: Any, **variables: Any) -> Any:
    """``document`` with each string that names one of ``variables`` (``${Name}``) made an ``Fn::Sub``: the
    shared policy shapes build ARNs by formatting strings, which here are only known at deploy time."""
    if isinstance(document, dict):
        return {key: _substitute(value, **variables) for key, value in document.items()}
    if isinstance(document, list):
        return [_substitute(value, **variables) for value in document]
    if isinstance(document, str) and any(f"${{{name}}}" in document for name in variables):
        return Sub(document, **{name: value for name, value in variables.items() if f"${{{name}}}" in document})
    return document


def _identity(t: Template, p: dict[str, Parameter], data: _Data, mail: _Mail, log_group: logs.LogGroup) -> _Roles:
    instance = t.add_resource(
        iam.Role(
            ids.INSTANCE_ROLE,
            Description="filesync application instances",
            AssumeRolePolicyDocument=policies.instance_trust_policy(),
        )
    )
    # The upload role trusts the instance role, and the instance role may assume the upload role: the
    # instance role's permissions are a separate resource so the two do not refer to each other.
    # The service writes the role's list of revoked sessions (an inline policy of its own, not managed
    # here); the permissions boundary, the role's own policy again, caps whatever it could write there.
    role_policy = _substitute(resources.upload_role_policy("${BucketArn}"), BucketArn=data.bucket_arn)
    boundary = t.add_resource(
        iam.ManagedPolicy(
            ids.UPLOAD_ROLE_BOUNDARY,
            Description="The most filesync clients' temporary credentials can ever do",
            PolicyDocument=role_policy,
        )
    )
    upload = t.add_resource(
        iam.Role(
            ids.UPLOAD_ROLE,
            Description="Temporary credentials for file sync clients (narrowed per session)",
            AssumeRolePolicyDocument=resources.upload_role_trust_policy(GetAtt(instance, "Arn")),
            MaxSessionDuration=resources.UPLOAD_ROLE_MAX_SESSION_SECONDS,
            PermissionsBoundary=Ref(boundary),
            Policies=[iam.Policy(PolicyName=resources.UPLOAD_ROLE_POLICY_NAME, PolicyDocument=role_policy)],
        )
    )
    instance_policy = t.add_resource(
        iam.PolicyType(
            ids.INSTANCE_ROLE_POLICY,
            PolicyName="filesync-instance",
            Roles=[Ref(instance)],
            PolicyDocument=policies.instance_role_policy(
                table_arn=data.table_arn,
                bucket_arn=data.bucket_arn,
                upload_role_arn=GetAtt(upload, "Arn"),
                sender_email=Ref(p[ids.SENDER_EMAIL]),
                mail_identity=mail.identity,
                configuration_set=Ref(mail.configuration_set),
                feedback_queue_arn=GetAtt(mail.queue, "Arn"),
                token_secret_arn=Ref(data.secret),
                release_bucket=Ref(p[ids.RELEASE_BUCKET]),
                release_key=Ref(p[ids.RELEASE_KEY]),
                log_group_arn=GetAtt(log_group, "Arn"),
                group_logical_id=ids.AUTO_SCALING_GROUP,
                metrics_namespace=userdata.AGENT_NAMESPACE,
            ),
        )
    )
    profile = t.add_resource(iam.InstanceProfile(ids.INSTANCE_PROFILE, Roles=[Ref(instance)]))
    return _Roles(instance, instance_policy, profile, upload)


# --- Front ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Front:
    load_balancer: elb.LoadBalancer
    security_group: ec2.SecurityGroup
    api: elb.TargetGroup
    feed: elb.TargetGroup


def _target_group(logical_id: str, vpc: ec2.VPC, params: TemplateParams, drain_seconds: int) -> elb.TargetGroup:
    return elb.TargetGroup(
        logical_id,
        VpcId=Ref(vpc),
        TargetType="instance",
        Protocol="HTTP",
        Port=params.service_port,
        HealthCheckProtocol="HTTP",
        HealthCheckPath=HEALTH_CHECK_PATH,
        HealthCheckIntervalSeconds=10,
        HealthCheckTimeoutSeconds=5,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=3,
        Matcher=elb.Matcher(HttpCode="200"),
        TargetGroupAttributes=[
            # A leaving instance gets no new requests and this long to finish the ones it has (the service
            # drains meanwhile: long-polls answered at once, connections closed after their response; the
            # deregistration ends early once none is open).
            elb.TargetGroupAttribute(Key="deregistration_delay.timeout_seconds", Value=str(drain_seconds)),
        ],
    )


def _access_logs(t: Template, p: dict[str, Parameter]) -> tuple[s3.Bucket, s3.BucketPolicy]:
    """The load balancer's access logs: a bucket of their own, kept ``LogRetentionDays``."""
    bucket = t.add_resource(
        s3.Bucket(
            ids.ACCESS_LOG_BUCKET,
            # Evidence, like the log group: it outlives the stack (its objects still expire). Access logs may
            # only go to a bucket encrypted with S3-managed keys, which the shared rules are.
            **_kept_private_bucket(),
            LifecycleConfiguration=s3.LifecycleConfiguration(
                Rules=[
                    s3.LifecycleRule(
                        Id="expire-access-logs", Status="Enabled", ExpirationInDays=Ref(p[ids.LOG_RETENTION_DAYS])
                    )
                ]
            ),
        )
    )
    arn = GetAtt(bucket, "Arn")
    regional = If(
        ids.ELB_LOG_ACCOUNT_REGION,
        policies.regional_log_account_statement(
            arn, ACCESS_LOG_PREFIX, FindInMap(ids.ELB_LOG_ACCOUNTS, Ref("AWS::Region"), "Account")
        ),
        Ref(AWS_NO_VALUE),
    )
    policy = t.add_resource(
        s3.BucketPolicy(
            ids.ACCESS_LOG_BUCKET_POLICY,
            Bucket=Ref(bucket),
            PolicyDocument=policies.access_log_bucket_policy(arn, ACCESS_LOG_PREFIX, regional),
        )
    )
    return bucket, policy


def _login_rate_rule(t: Template, p: dict[str, Parameter], load_balancer: elb.LoadBalancer) -> None:
    """With ``LoginRateLimit``: a WAF web ACL in front of the load balancer that blocks a client address
    making more than that many requests to ``/v1/auth/`` in 5 minutes, before they cost an argon2 hash each
    (the service's own throttle counts wrong passwords per account and per address, after the request)."""
    visibility = {"CloudWatchMetricsEnabled": True, "SampledRequestsEnabled": True}
    acl = t.add_resource(
        wafv2.WebACL(
            ids.WEB_ACL,
            Condition=ids.WAF_ENABLED,
            Scope="REGIONAL",
            Description="filesync: rate limit on the authentication paths",
            DefaultAction=wafv2.DefaultAction(Allow=wafv2.AllowAction()),
            VisibilityConfig=wafv2.VisibilityConfig(MetricName=Sub("${AWS::StackName}-waf"), **visibility),
            Rules=[
                wafv2.WebACLRule(
                    Name="auth-rate",
                    Priority=0,
                    Action=wafv2.RuleAction(Block=wafv2.BlockAction()),
                    Statement=wafv2.Statement(
                        RateBasedStatement=wafv2.RateBasedStatement(
                            Limit=Ref(p[ids.LOGIN_RATE_LIMIT]),
                            AggregateKeyType="IP",
                            ScopeDownStatement=wafv2.Statement(
                                ByteMatchStatement=wafv2.ByteMatchStatement(
                                    FieldToMatch=wafv2.FieldToMatch(UriPath={}),
                                    PositionalConstraint="STARTS_WITH",
                                    SearchString=AUTH_PATH_PREFIX,
                                    TextTransformations=[wafv2.TextTransformation(Priority=0, Type="NONE")],
                                )
                            ),
                        )
                    ),
                    VisibilityConfig=wafv2.VisibilityConfig(
                        MetricName=Sub("${AWS::StackName}-auth-rate"), **visibility
                    ),
                )
            ],
        )
    )
    t.add_resource(
        wafv2.WebACLAssociation(
            ids.WEB_ACL_ASSOCIATION,
            Condition=ids.WAF_ENABLED,
            ResourceArn=Ref(load_balancer),
            WebACLArn=GetAtt(acl, "Arn"),
        )
    )


def _front(t: Template, p: dict[str, Parameter], params: TemplateParams, net: _Network) -> _Front:
    group = t.add_resource(
        ec2.SecurityGroup(
            ids.LOAD_BALANCER_SECURITY_GROUP,
            GroupDescription="filesync load balancer: HTTP and HTTPS from anywhere",
            VpcId=Ref(net.vpc),
            SecurityGroupIngress=[
                ec2.SecurityGroupRule(IpProtocol="tcp", FromPort=port, ToPort=port, Description=text, **source)
                for port, text in ((443, "HTTPS"), (80, "HTTP, redirected to HTTPS"))
                for source in ({"CidrIp": "0.0.0.0/0"}, {"CidrIpv6": "::/0"})
            ],
            Tags=_name("load-balancer"),
        )
    )
    access_logs, access_log_policy = _access_logs(t, p)
    load_balancer = t.add_resource(
        elb.LoadBalancer(
            ids.LOAD_BALANCER,
            # The load balancer checks that it may write its logs when they are turned on.
            DependsOn=[net.load_balancer_ready, access_log_policy],
            Type="application",
            Scheme="internet-facing",
            IpAddressType="dualstack",
            Subnets=[Ref(subnet) for subnet in net.public_subnets],
            SecurityGroups=[Ref(group)],
            LoadBalancerAttributes=[
                elb.LoadBalancerAttributes(Key="idle_timeout.timeout_seconds", Value=str(params.idle_timeout_seconds)),
                elb.LoadBalancerAttributes(Key="routing.http.drop_invalid_header_fields.enabled", Value="true"),
                elb.LoadBalancerAttributes(Key="access_logs.s3.enabled", Value="true"),
                elb.LoadBalancerAttributes(Key="access_logs.s3.bucket", Value=Ref(access_logs)),
                elb.LoadBalancerAttributes(Key="access_logs.s3.prefix", Value=ACCESS_LOG_PREFIX),
            ],
            Tags=_name("alb"),
        )
    )
    _login_rate_rule(t, p, load_balancer)
    api = t.add_resource(_target_group(ids.TARGET_GROUP, net.vpc, params, params.api_drain_seconds))
    feed = t.add_resource(_target_group(ids.FEED_TARGET_GROUP, net.vpc, params, params.feed_drain_seconds))
    https = t.add_resource(
        elb.Listener(
            ids.HTTPS_LISTENER,
            LoadBalancerArn=Ref(load_balancer),
            Protocol="HTTPS",
            Port=443,
            SslPolicy=TLS_POLICY,
            Certificates=[elb.Certificate(CertificateArn=Ref(p[ids.CERTIFICATE_ARN]))],
            DefaultActions=[elb.Action(Type="forward", TargetGroupArn=Ref(api))],
        )
    )
    t.add_resource(
        elb.Listener(
            ids.HTTP_LISTENER,
            LoadBalancerArn=Ref(load_balancer),
            Protocol="HTTP",
            Port=80,
            DefaultActions=[
                elb.Action(
                    Type="redirect",
                    RedirectConfig=elb.RedirectConfig(Protocol="HTTPS", Port="443", StatusCode="HTTP_301"),
                )
            ],
        )
    )
    t.add_resource(
        elb.ListenerRule(
            ids.INTERNAL_PATHS_RULE,
            ListenerArn=Ref(https),
            Priority=1,
            Conditions=[
                elb.Condition(
                    Field="path-pattern", PathPatternConfig=elb.PathPatternConfig(Values=list(INTERNAL_PATHS))
                )
            ],
            Actions=[
                elb.ListenerRuleAction(
                    Type="fixed-response",
                    FixedResponseConfig=elb.FixedResponseConfig(
                        StatusCode="404",
                        ContentType="application/json",
                        MessageBody='{"title": "Not Found", "status": 404}',
                    ),
                )
            ],
        )
    )
    # Long-polls last up to a minute by design; counted with the API they would own its p99.
    t.add_resource(
        elb.ListenerRule(
            ids.FEED_LISTENER_RULE,
            ListenerArn=Ref(https),
            Priority=10,
            Conditions=[
                elb.Condition(
                    Field="path-pattern", PathPatternConfig=elb.PathPatternConfig(Values=[FEED_PATH_PATTERN])
                ),
                elb.Condition(
                    Field="query-string",
                    QueryStringConfig=elb.QueryStringConfig(
                        Values=[elb.QueryStringKeyValue(Key=FEED_WAIT_PARAMETER, Value="*")]
                    ),
                ),
            ],
            Actions=[elb.ListenerRuleAction(Type="forward", TargetGroupArn=Ref(feed))],
        )
    )
    for logical_id, record_type in ((ids.DNS_RECORD_A, "A"), (ids.DNS_RECORD_AAAA, "AAAA")):
        t.add_resource(
            route53.RecordSetType(
                logical_id,
                HostedZoneId=Ref(p[ids.HOSTED_ZONE_ID]),
                Name=Ref(p[ids.DOMAIN_NAME]),
                Type=record_type,
                AliasTarget=route53.AliasTarget(
                    HostedZoneId=GetAtt(load_balancer, "CanonicalHostedZoneID"),
                    DNSName=GetAtt(load_balancer, "DNSName"),
                    EvaluateTargetHealth=True,
                ),
            )
        )
    return _Front(load_balancer, group, api, feed)


# --- Compute ----------------------------------------------------------------------------------------


def _compute(
    t: Template,
    p: dict[str, Parameter],
    params: TemplateParams,
    net: _Network,
    data: _Data,
    mail: _Mail,
    roles: _Roles,
    front: _Front,
    log_group: logs.LogGroup,
) -> asg.AutoScalingGroup:
    group = t.add_resource(
        ec2.SecurityGroup(
            ids.INSTANCE_SECURITY_GROUP,
            GroupDescription="filesync instances: the service port from the load balancer only",
            VpcId=Ref(net.vpc),
            SecurityGroupIngress=[
                ec2.SecurityGroupRule(
                    IpProtocol="tcp",
                    FromPort=params.service_port,
                    ToPort=params.service_port,
                    SourceSecurityGroupId=Ref(front.security_group),
                    Description="Requests and health checks from the load balancer",
                )
            ],
            Tags=_name("instances"),
        )
    )
    script = userdata.bootstrap_script(
        signal_resource=ids.AUTO_SCALING_GROUP,
        port=params.service_port,
        readiness_path=READINESS_PATH,
        processes=params.processes,
        # systemd's stop timeout leaves gunicorn its graceful timeout, then kills.
        stop_timeout_seconds=params.graceful_shutdown_seconds + 10,
        termination_hook=TERMINATION_HOOK_NAME,
        environment=userdata.service_environment(
            params.service_port, drain_seconds=params.api_drain_seconds, linger_seconds=params.drain_linger_seconds
        ),
    )
    variables = {
        "Bucket": data.bucket_name,
        "Table": data.table_name,
        "UploadRoleArn": GetAtt(roles.upload, "Arn"),
        "SenderEmail": Ref(p[ids.SENDER_EMAIL]),
        "MailConfigurationSet": Ref(mail.configuration_set),
        "MailFeedbackQueueUrl": Ref(mail.queue),
        "DomainName": Ref(p[ids.DOMAIN_NAME]),
        "TokenSecretArn": Ref(data.secret),
        "LogGroup": Ref(log_group),
        "ReleaseBucket": Ref(p[ids.RELEASE_BUCKET]),
        "ReleaseKey": Ref(p[ids.RELEASE_KEY]),
        "ReleaseSha256": Ref(p[ids.RELEASE_SHA256]),
    }
    launch_template = t.add_resource(
        ec2.LaunchTemplate(
            ids.LAUNCH_TEMPLATE,
            LaunchTemplateData=ec2.LaunchTemplateData(
                ImageId=If(ids.IMAGE_PINNED, Ref(p[ids.PINNED_IMAGE_ID]), Ref(p[ids.IMAGE_ID])),
                InstanceType=Ref(p[ids.INSTANCE_TYPE]),
                IamInstanceProfile=ec2.IamInstanceProfile(Arn=GetAtt(roles.profile, "Arn")),
                SecurityGroupIds=[Ref(group)],
                MetadataOptions=ec2.MetadataOptions(
                    HttpEndpoint="enabled", HttpTokens="required", HttpPutResponseHopLimit=1
                ),
                BlockDeviceMappings=[
                    ec2.LaunchTemplateBlockDeviceMapping(
                        DeviceName="/dev/xvda",
                        Ebs=ec2.EBSBlockDevice(
                            VolumeType="gp3", VolumeSize=20, Encrypted=True, DeleteOnTermination=True
                        ),
                    )
                ],
                UserData=Base64(Sub(script, **variables)),
                TagSpecifications=[
                    ec2.TagSpecifications(ResourceType=kind, Tags=_name("app")) for kind in ("instance", "volume")
                ],
            ),
        )
    )
    group_resource = t.add_resource(
        asg.AutoScalingGroup(
            ids.AUTO_SCALING_GROUP,
            # Instances need their permissions and a way to AWS before their first boot.
            DependsOn=[roles.instance_policy, net.ready],
            VPCZoneIdentifier=[Ref(subnet) for subnet in net.private_subnets],
            LaunchTemplate=asg.LaunchTemplateSpecification(
                LaunchTemplateId=Ref(launch_template), Version=GetAtt(launch_template, "LatestVersionNumber")
            ),
            MinSize=Ref(p[ids.MIN_SIZE]),
            MaxSize=Ref(p[ids.MAX_SIZE]),
            TargetGroupARNs=[Ref(front.api), Ref(front.feed)],
            # The load balancer's liveness check (``/healthz``) decides an instance's health, not just EC2's.
            HealthCheckType="ELB",
            HealthCheckGracePeriod=300,
            DefaultInstanceWarmup=120,
            # Instance refreshes (an AMI update outside a deploy, `aws autoscaling start-instance-refresh`)
            # and rebalancing launch before they terminate: capacity never dips.
            InstanceMaintenancePolicy=asg.InstanceMaintenancePolicy(MinHealthyPercentage=100, MaxHealthyPercentage=200),
            MetricsCollection=[asg.MetricsCollection(Granularity="1Minute")],
            Tags=[asg.Tag("Name", Sub("${AWS::StackName}-app"), True)],
            # A leaving instance waits (Terminating:Wait) until its drain watcher has stopped the service
            # gracefully and completes this hook, or the timeout passes (then the termination goes on).
            LifecycleHookSpecificationList=[
                asg.LifecycleHookSpecification(
                    LifecycleHookName=TERMINATION_HOOK_NAME,
                    LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                    HeartbeatTimeout=params.termination_hook_seconds,
                    DefaultResult="CONTINUE",
                )
            ],
            # The first instances must report ready, or the stack fails.
            CreationPolicy=CreationPolicy(ResourceSignal=ResourceSignal(Count=Ref(p[ids.MIN_SIZE]), Timeout="PT15M")),
            # A new release or AMI changes the launch template: instances are replaced one at a time, each
            # new one in service (signalled ready) before an old one goes; a failure rolls the stack back.
            UpdatePolicy=UpdatePolicy(
                AutoScalingRollingUpdate=AutoScalingRollingUpdate(
                    MinInstancesInService=Ref(p[ids.MIN_SIZE]),
                    MaxBatchSize=1,
                    WaitOnResourceSignals=True,
                    PauseTime="PT15M",
                    SuspendProcesses=[
                        "HealthCheck",
                        "ReplaceUnhealthy",
                        "AZRebalance",
                        "AlarmNotification",
                        "ScheduledActions",
                    ],
                ),
                AutoScalingScheduledAction=AutoScalingScheduledAction(IgnoreUnmodifiedGroupSizeProperties=True),
            ),
        )
    )
    t.add_resource(
        asg.ScalingPolicy(
            ids.REQUEST_SCALING_POLICY,
            AutoScalingGroupName=Ref(group_resource),
            PolicyType="TargetTrackingScaling",
            TargetTrackingConfiguration=asg.TargetTrackingConfiguration(
                PredefinedMetricSpecification=asg.PredefinedMetricSpecification(
                    PredefinedMetricType="ALBRequestCountPerTarget",
                    ResourceLabel=Join(
                        "/",
                        [GetAtt(front.load_balancer, "LoadBalancerFullName"), GetAtt(front.api, "TargetGroupFullName")],
                    ),
                ),
                TargetValue=Ref(p[ids.TARGET_REQUESTS_PER_INSTANCE]),
            ),
        )
    )
    t.add_resource(
        asg.ScalingPolicy(
            ids.CPU_SCALING_POLICY,
            AutoScalingGroupName=Ref(group_resource),
            PolicyType="TargetTrackingScaling",
            TargetTrackingConfiguration=asg.TargetTrackingConfiguration(
                PredefinedMetricSpecification=asg.PredefinedMetricSpecification(
                    PredefinedMetricType="ASGAverageCPUUtilization"
                ),
                TargetValue=Ref(p[ids.TARGET_CPU_PERCENT]),
            ),
        )
    )
    return group_resource


# --- Operations -------------------------------------------------------------------------------------


def _metric(
    query_id: str, namespace: str, name: str, dimensions: dict[str, Any], stat: str = "Sum"
) -> cw.MetricDataQuery:
    return cw.MetricDataQuery(
        Id=query_id,
        ReturnData=False,
        MetricStat=cw.MetricStat(
            Metric=cw.Metric(
                Namespace=namespace,
                MetricName=name,
                Dimensions=[cw.MetricDimension(Name=key, Value=value) for key, value in dimensions.items()],
            ),
            Period=ALARM_PERIOD_SECONDS,
            Stat=stat,
        ),
    )


def _runbook(logical_id: str, what: str) -> str:
    """An alarm's description: what it means, and where its runbook entry is (a heading per alarm)."""
    return f"{what}. Runbook: {RUNBOOK}#{logical_id.lower()}"


def _dimensions(dimensions: dict[str, Any]) -> list[cw.MetricDimension]:
    return [cw.MetricDimension(Name=key, Value=value) for key, value in dimensions.items()]


def _operations(
    t: Template,
    p: dict[str, Parameter],
    front: _Front,
    data: _Data,
    mail: _Mail,
    group: asg.AutoScalingGroup,
    log_group: logs.LogGroup,
) -> None:
    topic = t.add_resource(sns.Topic(ids.ALARM_TOPIC, DisplayName=Sub("${AWS::StackName} alarms")))
    t.add_resource(
        sns.SubscriptionResource(
            ids.ALARM_SUBSCRIPTION, TopicArn=Ref(topic), Protocol="email", Endpoint=Ref(p[ids.ALARM_EMAIL])
        )
    )
    # Failed launches, with their cause, as Auto Scaling reports them (the launch-failure alarm says only
    # that instances are missing).
    launches = t.add_resource(
        events.Rule(
            ids.LAUNCH_UNSUCCESSFUL_RULE,
            Description="Auto Scaling could not launch an instance of the group",
            EventPattern={
                "source": ["aws.autoscaling"],
                "detail-type": ["EC2 Instance Launch Unsuccessful"],
                "detail": {"AutoScalingGroupName": [Ref(group)]},
            },
            Targets=[events.Target(Id="alarm-topic", Arn=Ref(topic))],
        )
    )
    t.add_resource(
        sns.TopicPolicy(
            ids.ALARM_TOPIC_POLICY,
            Topics=[Ref(topic)],
            PolicyDocument=policies.alarm_topic_policy(Ref(topic), GetAtt(launches, "Arn")),
        )
    )
    notify = {"AlarmActions": [Ref(topic)], "OKActions": [Ref(topic)], "TreatMissingData": "notBreaching"}
    balancer = {"LoadBalancer": GetAtt(front.load_balancer, "LoadBalancerFullName")}
    api = {**balancer, "TargetGroup": GetAtt(front.api, "TargetGroupFullName")}
    elb_namespace = "AWS/ApplicationELB"
    group_dimensions = {"AutoScalingGroupName": Ref(group)}
    alarms: list[cw.Alarm] = []

    def alarm(logical_id: str, what: str, **kwargs: Any) -> None:
        # Named after the stack and the logical id, as the runbook's headings are: the name in a
        # notification leads straight to its entry (and the dashboard builds the ARNs from the names).
        settings = {**notify, **kwargs}
        alarms.append(
            t.add_resource(
                cw.Alarm(
                    logical_id,
                    AlarmName=Sub("${AWS::StackName}-" + logical_id),
                    AlarmDescription=_runbook(logical_id, what),
                    **settings,
                )
            )
        )

    alarm(
        ids.ALARM_5XX,
        "More than Alarm5xxPercent of requests answered 5xx (by the load balancer or us)",
        ComparisonOperator="GreaterThanThreshold",
        Threshold=Ref(p[ids.ALARM_5XX_PERCENT]),
        EvaluationPeriods=5,
        DatapointsToAlarm=3,
        Metrics=[
            _metric("requests", elb_namespace, "RequestCount", balancer),
            _metric("target", elb_namespace, "HTTPCode_Target_5XX_Count", balancer),
            _metric("balancer", elb_namespace, "HTTPCode_ELB_5XX_Count", balancer),
            cw.MetricDataQuery(
                Id="rate",
                Label="5xx percent",
                ReturnData=True,
                Expression=(
                    f"IF(FILL(requests, 0) >= {MIN_REQUESTS_FOR_5XX_RATE}, "
                    "100 * (FILL(target, 0) + FILL(balancer, 0)) / FILL(requests, 0), 0)"
                ),
            ),
        ],
    )
    alarm(
        ids.ALARM_P99,
        "The API's 99th percentile response time is above AlarmP99Seconds",
        Namespace=elb_namespace,
        MetricName="TargetResponseTime",
        Dimensions=_dimensions(api),
        ExtendedStatistic="p99",
        Period=ALARM_PERIOD_SECONDS,
        EvaluationPeriods=5,
        DatapointsToAlarm=3,
        ComparisonOperator="GreaterThanThreshold",
        Threshold=Ref(p[ids.ALARM_P99_SECONDS]),
    )
    alarm(
        ids.ALARM_UNHEALTHY,
        "An instance fails its /healthz health check",
        Namespace=elb_namespace,
        MetricName="UnHealthyHostCount",
        Dimensions=_dimensions(api),
        Statistic="Maximum",
        Period=ALARM_PERIOD_SECONDS,
        EvaluationPeriods=3,
        ComparisonOperator="GreaterThanThreshold",
        Threshold=0,
    )
    alarm(
        ids.ALARM_HEALTHY,
        "Fewer healthy instances behind the API than MinSize for 3 minutes (no data: none)",
        Namespace=elb_namespace,
        MetricName="HealthyHostCount",
        Dimensions=_dimensions(api),
        Statistic="Minimum",
        Period=ALARM_PERIOD_SECONDS,
        EvaluationPeriods=3,
        ComparisonOperator="LessThanThreshold",
        Threshold=Ref(p[ids.MIN_SIZE]),
        TreatMissingData="breaching",
    )
    alarm(
        ids.ALARM_LAUNCHES,
        f"The group has had fewer instances in service than it wants for {LAUNCH_ALARM_MINUTES} minutes: "
        "launches fail or new instances never become ready",
        ComparisonOperator="GreaterThanThreshold",
        Threshold=0,
        EvaluationPeriods=LAUNCH_ALARM_MINUTES,
        DatapointsToAlarm=LAUNCH_ALARM_MINUTES,
        Metrics=[
            _metric("desired", "AWS/AutoScaling", "GroupDesiredCapacity", group_dimensions, "Maximum"),
            _metric("inservice", "AWS/AutoScaling", "GroupInServiceInstances", group_dimensions, "Minimum"),
            cw.MetricDataQuery(
                Id="missing", Label="instances missing", ReturnData=True, Expression="desired - inservice"
            ),
        ],
    )
    table = {"TableName": data.table_name}
    index = {**table, "GlobalSecondaryIndexName": resources.GSI1_NAME}
    alarm(
        ids.ALARM_THROTTLES,
        "DynamoDB throttled the table or its index for minutes on end",
        ComparisonOperator="GreaterThanThreshold",
        Threshold=0,
        EvaluationPeriods=5,
        DatapointsToAlarm=3,
        Metrics=[
            _metric("reads", "AWS/DynamoDB", "ReadThrottleEvents", table),
            _metric("writes", "AWS/DynamoDB", "WriteThrottleEvents", table),
            _metric("indexreads", "AWS/DynamoDB", "ReadThrottleEvents", index),
            _metric("indexwrites", "AWS/DynamoDB", "WriteThrottleEvents", index),
            cw.MetricDataQuery(
                Id="throttles",
                Label="throttle events",
                ReturnData=True,
                Expression="FILL(reads, 0) + FILL(writes, 0) + FILL(indexreads, 0) + FILL(indexwrites, 0)",
            ),
        ],
    )
    alarm(
        ids.ALARM_NOTIFIER_DOWN,
        "An instance has had no notifier process for 5 minutes (no data: the agent reports nothing)",
        Namespace=userdata.AGENT_NAMESPACE,
        MetricName="procstat_lookup_pid_count",
        Dimensions=_dimensions(group_dimensions),
        Statistic="Minimum",
        Period=ALARM_PERIOD_SECONDS,
        EvaluationPeriods=5,
        ComparisonOperator="LessThanThreshold",
        Threshold=1,
        TreatMissingData="breaching",
    )
    notifier_namespace = Sub("filesync/${AWS::StackName}")
    t.add_resource(
        logs.MetricFilter(
            ids.NOTIFIER_FAILURES_FILTER,
            LogGroupName=Ref(log_group),
            FilterPattern=f'{{ $.message = "{NOTIFIER_FAILURE_MESSAGE}*" }}',
            MetricTransformations=[
                logs.MetricTransformation(
                    MetricNamespace=notifier_namespace,
                    MetricName=NOTIFIER_FAILURE_METRIC,
                    MetricValue="1",
                    DefaultValue=0,
                )
            ],
        )
    )
    alarm(
        ids.ALARM_NOTIFIER_FAILING,
        "Notifier ticks keep failing (mail is not going out)",
        Namespace=notifier_namespace,
        MetricName=NOTIFIER_FAILURE_METRIC,
        Statistic="Sum",
        Period=ALARM_PERIOD_SECONDS,
        EvaluationPeriods=5,
        DatapointsToAlarm=3,
        ComparisonOperator="GreaterThanThreshold",
        Threshold=0,
    )
    for logical_id, metric, threshold, what in (
        (ids.ALARM_SES_BOUNCES, "Reputation.BounceRate", SES_BOUNCE_RATE, "bounce"),
        (ids.ALARM_SES_COMPLAINTS, "Reputation.ComplaintRate", SES_COMPLAINT_RATE, "complaint"),
    ):
        alarm(
            logical_id,
            f"The account's SES {what} rate is above {threshold:.2%} (SES reviews the account at twice that)",
            Namespace="AWS/SES",
            MetricName=metric,
            Statistic="Maximum",
            Period=SES_ALARM_PERIOD_SECONDS,
            EvaluationPeriods=1,
            ComparisonOperator="GreaterThanThreshold",
            Threshold=threshold,
        )
    alarm(
        ids.ALARM_MAIL_FEEDBACK_BACKLOG,
        f"The mail feedback queue's oldest message is older than {FEEDBACK_BACKLOG_SECONDS // 60} minutes: no "
        "notifier reads it, so bounced and complaining addresses are not suppressed",
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=_dimensions({"QueueName": GetAtt(mail.queue, "QueueName")}),
        Statistic="Maximum",
        Period=300,
        EvaluationPeriods=3,
        ComparisonOperator="GreaterThanThreshold",
        Threshold=FEEDBACK_BACKLOG_SECONDS,
    )
    for logical_id, metric, threshold, what in (
        (ids.ALARM_MEMORY, "mem_used_percent", MEMORY_ALARM_PERCENT, "memory"),
        (ids.ALARM_DISK, "disk_used_percent", DISK_ALARM_PERCENT, "root disk"),
    ):
        alarm(
            logical_id,
            f"An instance's {what} is more than {threshold}% used for 5 minutes",
            Namespace=userdata.AGENT_NAMESPACE,
            MetricName=metric,
            Dimensions=_dimensions(group_dimensions),
            Statistic="Maximum",
            Period=ALARM_PERIOD_SECONDS,
            EvaluationPeriods=5,
            ComparisonOperator="GreaterThanThreshold",
            Threshold=threshold,
        )
    variables = {
        "LoadBalancer": GetAtt(front.load_balancer, "LoadBalancerFullName"),
        "ApiTargetGroup": GetAtt(front.api, "TargetGroupFullName"),
        "FeedTargetGroup": GetAtt(front.feed, "TargetGroupFullName"),
        "Group": Ref(group),
        "Table": data.table_name,
        "NotifierNamespace": notifier_namespace,
        "FeedbackQueue": GetAtt(mail.queue, "QueueName"),
    }
    body = dashboard.dashboard_body([a.title for a in alarms], notifier_metric=NOTIFIER_FAILURE_METRIC)
    t.add_resource(
        cw.Dashboard(ids.DASHBOARD, DashboardName=Sub("${AWS::StackName}"), DashboardBody=Sub(body, **variables))
    )


# --- Outputs ----------------------------------------------------------------------------------------


def _outputs(
    t: Template,
    net: _Network,
    data: _Data,
    mail: _Mail,
    roles: _Roles,
    front: _Front,
    group: asg.AutoScalingGroup,
    log_group: logs.LogGroup,
) -> None:
    for logical_id, description, value in (
        (ids.OUT_SERVICE_URL, "The service's URL", Sub("https://${" + ids.DOMAIN_NAME + "}")),
        (ids.OUT_LOAD_BALANCER_DNS, "The load balancer's DNS name", GetAtt(front.load_balancer, "DNSName")),
        (ids.OUT_BUCKET, "Blob bucket in use (FILESYNC_BUCKET)", data.bucket_name),
        (ids.OUT_TABLE, "Metadata table in use (FILESYNC_TABLE)", data.table_name),
        (ids.OUT_INSTANCE_ROLE, "Role of the application instances", GetAtt(roles.instance, "Arn")),
        (ids.OUT_UPLOAD_ROLE, "Role of clients' credentials (FILESYNC_UPLOAD_ROLE_ARN)", GetAtt(roles.upload, "Arn")),
        (ids.OUT_TOKEN_SECRET, "Secrets Manager secret holding FILESYNC_TOKEN_SECRET", Ref(data.secret)),
        (ids.OUT_LOG_GROUP, "Log group of the processes' output", Ref(log_group)),
        (ids.OUT_ALARM_TOPIC, "SNS topic alarms go to", Ref(t.resources[ids.ALARM_TOPIC])),
        (ids.OUT_AUTO_SCALING_GROUP, "Auto Scaling group of the instances", Ref(group)),
        (ids.OUT_VPC, "The VPC", Ref(net.vpc)),
        (ids.OUT_ACCESS_LOG_BUCKET, "The load balancer's access logs", Ref(t.resources[ids.ACCESS_LOG_BUCKET])),
        (ids.OUT_DASHBOARD, "The CloudWatch dashboard", Ref(t.resources[ids.DASHBOARD])),
        (
            ids.OUT_MAIL_CONFIGURATION_SET,
            "SES configuration set mail is sent with (FILESYNC_SES_CONFIGURATION_SET)",
            Ref(mail.configuration_set),
        ),
        (
            ids.OUT_MAIL_FEEDBACK_QUEUE,
            "Queue of SES bounces and complaints (FILESYNC_MAIL_FEEDBACK_QUEUE_URL)",
            Ref(mail.queue),
        ),
    ):
        t.add_output(
            Output(
                logical_id,
                Description=description,
                Value=value,
                Export=Export(Sub("${AWS::StackName}-" + logical_id)),
            )
        )
