"""The stack's CloudWatch dashboard: the one page an operator opens first.

Layer: deployment; pure data, no troposphere. ``dashboard_body`` returns the body of an ``Fn::Sub`` (the
dashboard's JSON) whose ``${...}`` are the names in ``VARIABLES`` and pseudo parameters; the template maps
each to its resource. Alarms are named ``<stack>-<logical id>``, so their ARNs are built from names.
Metric names and dimensions are the alarms' own, so what an alarm watches is on the page next to its state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

#: ``Fn::Sub`` variables besides the alarms: load balancer and target group full names, the Auto Scaling
#: group's name (also the agent's metrics' dimension), the table in use and the namespace of the
#: notifier's log metric.
VARIABLES = ("LoadBalancer", "ApiTargetGroup", "FeedTargetGroup", "Group", "Table", "NotifierNamespace")
AGENT_NAMESPACE = "CWAgent"
WIDTH = 12
HEIGHT = 6


def _metrics(title: str, metrics: list[list[Any]], *, stat: str = "Sum", y: int, x: int) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": WIDTH,
        "height": HEIGHT,
        "properties": {
            "title": title,
            "view": "timeSeries",
            "region": "${AWS::Region}",
            "period": 60,
            "stat": stat,
            "metrics": metrics,
        },
    }


def dashboard_body(alarms: Sequence[str], *, notifier_metric: str) -> str:
    """The dashboard's JSON, an ``Fn::Sub`` body: the alarms' states first, then the figures they watch."""
    elb = "AWS/ApplicationELB"
    api = ["LoadBalancer", "${LoadBalancer}", "TargetGroup", "${ApiTargetGroup}"]
    feed = ["LoadBalancer", "${LoadBalancer}", "TargetGroup", "${FeedTargetGroup}"]
    group = ["AutoScalingGroupName", "${Group}"]
    table = ["TableName", "${Table}"]
    rows: list[tuple[dict[str, Any], ...]] = [
        (
            {
                "type": "alarm",
                "x": 0,
                "y": 0,
                "width": 2 * WIDTH,
                "height": HEIGHT,
                "properties": {
                    "title": "Alarms",
                    "alarms": [
                        "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"
                        f"${{AWS::StackName}}-{alarm}"
                        for alarm in alarms
                    ],
                },
            },
        ),
    ]
    y = HEIGHT
    Panel = tuple[str, str]
    pairs: list[tuple[Panel, list[list[Any]], Panel, list[list[Any]]]] = [
        (
            ("Requests and 5xx (load balancer)", "Sum"),
            [
                [elb, "RequestCount", "LoadBalancer", "${LoadBalancer}"],
                [elb, "HTTPCode_Target_5XX_Count", "LoadBalancer", "${LoadBalancer}"],
                [elb, "HTTPCode_ELB_5XX_Count", "LoadBalancer", "${LoadBalancer}"],
            ],
            ("API response time (long-polls excluded)", "p99"),
            [[elb, "TargetResponseTime", *api, {"stat": "p50"}], [elb, "TargetResponseTime", *api, {"stat": "p99"}]],
        ),
        (
            ("Hosts: healthy and unhealthy per target group, in service and desired", "Minimum"),
            [
                [elb, "HealthyHostCount", *api],
                [elb, "HealthyHostCount", *feed],
                [elb, "UnHealthyHostCount", *api, {"stat": "Maximum"}],
                ["AWS/AutoScaling", "GroupInServiceInstances", *group],
                ["AWS/AutoScaling", "GroupDesiredCapacity", *group, {"stat": "Maximum"}],
            ],
            ("CPU and memory (the busiest instance)", "Maximum"),
            [
                ["AWS/EC2", "CPUUtilization", *group],
                [AGENT_NAMESPACE, "mem_used_percent", *group],
                [AGENT_NAMESPACE, "disk_used_percent", *group],
            ],
        ),
        (
            ("DynamoDB: capacity used and throttles", "Sum"),
            [
                ["AWS/DynamoDB", "ConsumedReadCapacityUnits", *table],
                ["AWS/DynamoDB", "ConsumedWriteCapacityUnits", *table],
                ["AWS/DynamoDB", "ReadThrottleEvents", *table],
                ["AWS/DynamoDB", "WriteThrottleEvents", *table],
            ],
            ("Notifier: processes (fewest on an instance) and failed ticks", "Minimum"),
            [
                [AGENT_NAMESPACE, "procstat_lookup_pid_count", *group],
                ["${NotifierNamespace}", notifier_metric, {"stat": "Sum"}],
            ],
        ),
        (
            ("SES: sent, bounces and complaints", "Sum"),
            [["AWS/SES", "Send"], ["AWS/SES", "Bounce"], ["AWS/SES", "Complaint"]],
            ("SES reputation: bounce and complaint rates; the feedback queue's oldest message (s)", "Maximum"),
            [
                ["AWS/SES", "Reputation.BounceRate"],
                ["AWS/SES", "Reputation.ComplaintRate"],
                ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "${FeedbackQueue}", {"yAxis": "right"}],
            ],
        ),
    ]
    for (left_title, left_stat), left, (right_title, right_stat), right in pairs:
        rows.append(
            (
                _metrics(left_title, left, stat=left_stat, y=y, x=0),
                _metrics(right_title, right, stat=right_stat, y=y, x=WIDTH),
            )
        )
        y += HEIGHT
    body = {"widgets": [widget for row in rows for widget in row]}
    return orjson.dumps(body).decode()
