"""Deploying the template into moto's CloudFormation, for the deployment tests.

moto lacks one intrinsic function, ``Fn::Cidr``; ``resolve_cidrs`` computes it as AWS would before the
upload (for the IPv6 side from a documentation prefix, since moto does not allocate the VPC's IPv6 block
either). Its target groups have no ``TargetGroupFullName`` attribute (only alarms and the dashboard use it:
a name in the same form stands in). Every stack gets names of its own (a hosted zone, a certificate, a
domain), so tests sharing one emulator never see each other's stacks.
"""

from __future__ import annotations

import ast
import ipaddress
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from cloudformation import ids
from cloudformation.__main__ import render

VPC_CIDR = "10.0.0.0/16"
IPV6_BLOCK = "2001:db8:0:ff00::/56"

AwsClient = Callable[[str], Any]


def resolve_cidrs(node: Any) -> Any:
    """The template with what moto cannot evaluate replaced by what AWS would make of it."""
    if isinstance(node, dict):
        if node.keys() == {"Fn::GetAtt"} and node["Fn::GetAtt"][1] == "TargetGroupFullName":
            return f"targetgroup/{node['Fn::GetAtt'][0]}/0123456789abcdef"
        if "Fn::Cidr" in node:
            block, count, bits = node["Fn::Cidr"]
            network = ipaddress.ip_network(IPV6_BLOCK if "Fn::Select" in block else VPC_CIDR)
            subnets = network.subnets(new_prefix=network.max_prefixlen - int(bits))
            return [str(subnet) for _, subnet in zip(range(int(count)), subnets, strict=False)]
        return {key: resolve_cidrs(value) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve_cidrs(value) for value in node]
    return node


def document(value: Any) -> Any:
    """A policy document as IAM returns it: moto keeps inline policies made by its CloudFormation as the
    Python ``repr`` of the template's JSON, where AWS returns JSON."""
    if isinstance(value, str):
        return ast.literal_eval(value) if value.startswith("{'") else orjson.loads(value)
    return value


def template_body() -> str:
    return orjson.dumps(resolve_cidrs(orjson.loads(render("json")))).decode()


def stack_parameters(aws: AwsClient, **overrides: str) -> dict[str, str]:
    """Every required parameter, with a hosted zone and a certificate made for this stack."""
    suffix = uuid.uuid4().hex[:8]
    zone = aws("route53").create_hosted_zone(Name=f"{suffix}.example.com", CallerReference=suffix)
    domain = f"files.{suffix}.example.com"
    return {
        ids.DOMAIN_NAME: domain,
        ids.HOSTED_ZONE_ID: zone["HostedZone"]["Id"].rsplit("/", 1)[-1],
        ids.CERTIFICATE_ARN: aws("acm").request_certificate(DomainName=domain)["CertificateArn"],
        ids.SENDER_EMAIL: f"filesync@{suffix}.example.com",
        ids.ALARM_EMAIL: f"ops@{suffix}.example.com",
        ids.RELEASE_BUCKET: "filesync-releases",
        ids.RELEASE_KEY: "releases/filesync-test.tar.gz",
        ids.VPC_CIDR: VPC_CIDR,
        **overrides,
    }


def _parameters(parameters: dict[str, str]) -> list[dict[str, str]]:
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()]


def create_stack(aws: AwsClient, parameters: dict[str, str]) -> str:
    """Create a stack and return its name once complete."""
    stack = f"filesync-cfn-{uuid.uuid4().hex[:8]}"
    cloudformation = aws("cloudformation")
    cloudformation.create_stack(
        StackName=stack,
        TemplateBody=template_body(),
        Parameters=_parameters(parameters),
        Capabilities=["CAPABILITY_IAM"],
    )
    assert cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    return stack


def update_stack(aws: AwsClient, stack: str, parameters: dict[str, str]) -> None:
    cloudformation = aws("cloudformation")
    cloudformation.update_stack(
        StackName=stack,
        TemplateBody=template_body(),
        Parameters=_parameters(parameters),
        Capabilities=["CAPABILITY_IAM"],
    )
    assert cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"


def physical_ids(aws: AwsClient, stack: str) -> dict[str, str]:
    summaries = aws("cloudformation").list_stack_resources(StackName=stack)["StackResourceSummaries"]
    # moto also lists a nameless entry of its own.
    return {s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries if s["LogicalResourceId"]}


def outputs(aws: AwsClient, stack: str) -> dict[str, str]:
    (described,) = aws("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    return {output["OutputKey"]: output["OutputValue"] for output in described["Outputs"]}
