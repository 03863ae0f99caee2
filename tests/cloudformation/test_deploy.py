"""Deploy the template into moto's CloudFormation, then look at what exists through each service's API.

moto's stack report is not evidence: it skips resource types it does not implement without failing the
stack. So every check here asks S3, DynamoDB, IAM, ELBv2, Auto Scaling, EC2 and Route 53 themselves, and
the test names the types moto skipped (``MOTO_SKIPS``): those are checked only by the template tests and
cfn-lint, never by a deployment here.

moto lacks one intrinsic function, ``Fn::Cidr``: ``tests/cloudformation/stacks.py`` computes it before the
upload.

moto also ignores some properties of the types it creates: the bucket's public access block, CORS,
lifecycle and ownership controls, the table's TTL, the load balancer's attributes (idle timeout, access
logs) and the group's lifecycle hooks. Those are checked in the template (``test_shapes``)
and, for the embedded default, by ``tests/aws/test_provision.py``.
"""

from __future__ import annotations

import pytest

from cloudformation import ids
from cloudformation.template import (
    FEEDBACK_RETENTION_SECONDS,
    FEEDBACK_VISIBILITY_SECONDS,
    HEALTH_CHECK_PATH,
    INTERFACE_ENDPOINTS,
)
from service import resources
from tests.cloudformation.stacks import create_stack, document, physical_ids, stack_parameters

#: Resource types moto 5.2.5's CloudFormation accepts and silently does not create.
MOTO_SKIPS = {
    "AWS::AutoScaling::ScalingPolicy",
    "AWS::CloudFormation::WaitConditionHandle",
    "AWS::CloudWatch::Alarm",
    "AWS::EC2::VPCCidrBlock",
    "AWS::Logs::MetricFilter",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::SES::EmailIdentity",
    "AWS::SES::ConfigurationSet",
    "AWS::SES::ConfigurationSetEventDestination",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::Subscription",
    "AWS::SecretsManager::Secret",
}
pytestmark = pytest.mark.filterwarnings(
    # moto warns (from its server thread) for each unsupported type it skips; the test lists them instead.
    "ignore:Tried to parse:UserWarning"
)


def _active(template: dict, enable_nat: str) -> dict[str, str]:
    """Logical id -> type of the resources CloudFormation creates with this EnableNat."""
    # The deployments here leave LoginRateLimit at 0 (no WAF) and MailDomain empty (the address identity).
    truth = {
        ids.NAT_ENABLED: enable_nat == "true",
        ids.NAT_DISABLED: enable_nat != "true",
        ids.WAF_ENABLED: False,
        ids.MAIL_DOMAIN_GIVEN: False,
        ids.NO_MAIL_DOMAIN: True,
    }
    return {
        logical_id: resource["Type"]
        for logical_id, resource in template["Resources"].items()
        if truth.get(resource.get("Condition"), True)
    }


@pytest.mark.parametrize("enable_nat", ["true", "false"])
def test_the_stack_deploys_and_its_resources_exist(template, aws, enable_nat):
    route53 = aws("route53")
    parameters = stack_parameters(aws, **{ids.ENABLE_NAT: enable_nat})
    domain, zone, certificate = (
        parameters[ids.DOMAIN_NAME],
        parameters[ids.HOSTED_ZONE_ID],
        parameters[ids.CERTIFICATE_ARN],
    )
    stack = create_stack(aws, parameters)
    physical = physical_ids(aws, stack)

    active = _active(template, enable_nat)
    skipped = sorted({kind for logical_id, kind in active.items() if logical_id not in physical})
    print(f"moto skipped these resource types (EnableNat={enable_nat}): {', '.join(skipped)}")
    assert set(skipped) == MOTO_SKIPS
    assert not set(physical) - set(active), "a resource whose condition is false was created"

    # Data, through S3 and DynamoDB.
    bucket, table = physical[ids.BUCKET], physical[ids.TABLE]
    s3 = aws("s3")
    s3.head_bucket(Bucket=bucket)
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert [{"ApplyServerSideEncryptionByDefault": r["ApplyServerSideEncryptionByDefault"]} for r in rules] == (
        resources.bucket_encryption_rules()
    )
    described_table = aws("dynamodb").describe_table(TableName=table)["Table"]
    assert described_table["KeySchema"] == resources.table_key_schema()
    assert described_table["BillingModeSummary"]["BillingMode"] == resources.TABLE_BILLING_MODE
    assert [i["IndexName"] for i in described_table["GlobalSecondaryIndexes"]] == [resources.GSI1_NAME]

    # Identity, through IAM: the upload role trusts the instance role and carries the shared policy.
    iam = aws("iam")
    instance_role = iam.get_role(RoleName=physical[ids.INSTANCE_ROLE])["Role"]
    upload_role = iam.get_role(RoleName=physical[ids.UPLOAD_ROLE])["Role"]
    assert upload_role["MaxSessionDuration"] == resources.UPLOAD_ROLE_MAX_SESSION_SECONDS
    trust = upload_role["AssumeRolePolicyDocument"]
    assert trust == resources.upload_role_trust_policy(instance_role["Arn"])
    policy = iam.get_role_policy(RoleName=upload_role["RoleName"], PolicyName=resources.UPLOAD_ROLE_POLICY_NAME)
    assert document(policy["PolicyDocument"]) == resources.upload_role_policy(resources.bucket_arn(bucket))
    instance_policy = iam.get_role_policy(RoleName=instance_role["RoleName"], PolicyName="filesync-instance")
    sids = {statement["Sid"] for statement in document(instance_policy["PolicyDocument"])["Statement"]}
    assert {"Table", "NamespaceObjects", "MintUploadCredentials", "SendMailAsSender"} <= sids
    profile = iam.get_instance_profile(InstanceProfileName=physical[ids.INSTANCE_PROFILE])["InstanceProfile"]
    assert [role["RoleName"] for role in profile["Roles"]] == [instance_role["RoleName"]]

    # Front, through ELBv2 and Route 53.
    elbv2 = aws("elbv2")
    (balancer,) = elbv2.describe_load_balancers(LoadBalancerArns=[physical[ids.LOAD_BALANCER]])["LoadBalancers"]
    assert (balancer["Type"], balancer["Scheme"]) == ("application", "internet-facing")
    listeners = {
        listener["Port"]: listener
        for listener in elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    }
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"][0]["CertificateArn"] == certificate
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"
    groups = elbv2.describe_target_groups(LoadBalancerArn=balancer["LoadBalancerArn"])["TargetGroups"]
    assert {group["HealthCheckPath"] for group in groups} == {HEALTH_CHECK_PATH}
    assert len(groups) == 2
    records = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    aliases = {r["Type"]: r["AliasTarget"]["DNSName"] for r in records if r["Name"].rstrip(".") == domain}
    assert set(aliases) == {"A", "AAAA"}
    assert all(name.rstrip(".") == balancer["DNSName"] for name in aliases.values())

    # Operations: the access logs' bucket, the dashboard, failed launches forwarded to the topic.
    aws("s3").head_bucket(Bucket=physical[ids.ACCESS_LOG_BUCKET])
    dashboard = aws("cloudwatch").get_dashboard(DashboardName=physical[ids.DASHBOARD])
    assert "HealthyHostCount" in dashboard["DashboardBody"]
    rule = aws("events").describe_rule(Name=physical[ids.LAUNCH_UNSUCCESSFUL_RULE])
    assert "EC2 Instance Launch Unsuccessful" in rule["EventPattern"]
    (target,) = aws("events").list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"] == physical[ids.ALARM_TOPIC]

    # Mail feedback, through SQS and SNS: the queue the notifier reads, the topic SES publishes to.
    queue = aws("sqs").get_queue_attributes(QueueUrl=physical[ids.MAIL_FEEDBACK_QUEUE], AttributeNames=["All"])
    assert int(queue["Attributes"]["MessageRetentionPeriod"]) == FEEDBACK_RETENTION_SECONDS
    assert int(queue["Attributes"]["VisibilityTimeout"]) == FEEDBACK_VISIBILITY_SECONDS
    aws("sns").get_topic_attributes(TopicArn=physical[ids.MAIL_FEEDBACK_TOPIC])
    assert {"MailFeedback", "SendMailAsSender"} <= sids

    # Compute, through Auto Scaling and EC2.
    (group,) = aws("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[physical[ids.AUTO_SCALING_GROUP]]
    )["AutoScalingGroups"]
    assert group["HealthCheckType"] == "ELB"
    assert sorted(group["TargetGroupARNs"]) == sorted(g["TargetGroupArn"] for g in groups)
    private = {physical[ids.PRIVATE_SUBNET.format(zone)] for zone in range(2)}
    assert set(group["VPCZoneIdentifier"].split(",")) == private
    ec2 = aws("ec2")
    zones = {s["AvailabilityZone"] for s in ec2.describe_subnets(SubnetIds=sorted(private))["Subnets"]}
    assert len(zones) == 2
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [physical[ids.VPC]]}])["VpcEndpoints"]
    kinds = sorted((e["VpcEndpointType"], e["ServiceName"].rsplit(".", 1)[-1]) for e in endpoints)
    gateways = [("Gateway", "dynamodb"), ("Gateway", "s3")]
    interfaces = [("Interface", name) for name in INTERFACE_ENDPOINTS.values()]
    assert kinds == sorted(gateways + (interfaces if enable_nat == "false" else []))
    nats = ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [physical[ids.VPC]]}])["NatGateways"]
    assert len(nats) == (2 if enable_nat == "true" else 0)
