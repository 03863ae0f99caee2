"""What a message in the mail feedback queue says: SES's two shapes, in an SNS envelope or bare; hostile input
named, never raised."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from service.core.feedback import MAX_RECIPIENTS, Suppression, parse_feedback

NOW = 1_900_000_000.0


def bounce(bounce_type: str = "Permanent", *addresses: str, key: str = "eventType") -> dict:
    """An SES bounce as AWS documents it (event publishing: ``eventType``; identity notifications:
    ``notificationType``)."""
    return {
        key: "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {"emailAddress": a, "action": "failed", "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1"}
                for a in addresses or ("gone@example.com",)
            ],
            "timestamp": "2030-03-17T17:46:40.000Z",
            "feedbackId": "0100018e-feedback",
        },
        "mail": {"timestamp": "2030-03-17T17:46:39.000Z", "messageId": "0100018e-id", "source": "f@example.com"},
    }


def complaint(*addresses: str, key: str = "eventType", feedback_type: str = "abuse") -> dict:
    return {
        key: "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": a} for a in addresses],
            "complaintFeedbackType": feedback_type,
            "timestamp": "2030-03-17T17:46:40.000Z",
            "feedbackId": "0100018e-feedback",
        },
        "mail": {"messageId": "0100018e-id"},
    }


def envelope(message: dict) -> str:
    """SNS's envelope, as an SQS subscription without raw delivery receives it."""
    return orjson.dumps(
        {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:filesync-mail-feedback",
            "Message": orjson.dumps(message).decode(),
            "Timestamp": "2030-03-17T17:46:41.000Z",
        }
    ).decode()


@pytest.mark.parametrize("key", ["eventType", "notificationType"])
@pytest.mark.parametrize("wrap", [envelope, lambda m: orjson.dumps(m).decode()], ids=["sns-envelope", "raw"])
def test_a_permanent_bounce_suppresses_every_bounced_recipient_in_either_shape(key, wrap):
    feedback = parse_feedback(wrap(bounce("Permanent", "Gone@Example.com", "Ann <ann@example.org>", key=key)), NOW)
    assert feedback.outcome == "suppressed"
    at = datetime(2030, 3, 17, 17, 46, 40, tzinfo=UTC).timestamp()
    assert feedback.suppressions == (
        Suppression("gone@example.com", "bounce", at, "Permanent/General"),
        Suppression("ann@example.org", "bounce", at, "Permanent/General"),
    )


@pytest.mark.parametrize("key", ["eventType", "notificationType"])
def test_a_complaint_suppresses_the_complaining_recipient(key):
    feedback = parse_feedback(envelope(complaint("angry@example.com", key=key)), NOW)
    assert feedback.outcome == "suppressed"
    assert [(s.address, s.reason, s.detail) for s in feedback.suppressions] == [
        ("angry@example.com", "complaint", "abuse")
    ]


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_a_soft_bounce_suppresses_nothing(bounce_type):
    feedback = parse_feedback(envelope(bounce(bounce_type)), NOW)
    assert (feedback.outcome, feedback.suppressions) == ("soft_bounce", ())


def test_a_not_spam_report_and_other_events_suppress_nothing():
    assert parse_feedback(envelope(complaint("a@example.com", feedback_type="not-spam")), NOW).outcome == "ignored"
    assert parse_feedback(envelope({"eventType": "Delivery", "delivery": {}}), NOW).outcome == "ignored"


def test_a_report_without_a_usable_time_is_dated_when_read():
    message = bounce()
    message["bounce"]["timestamp"] = "yesterday"
    (suppression,) = parse_feedback(envelope(message), NOW).suppressions
    assert suppression.at == NOW


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        ("not json at all", "malformed"),
        ("[1, 2]", "malformed"),
        ('"a string"', "malformed"),
        ("\xff\xfe", "malformed"),
        ('{"Type": "Notification", "Message": "{not json"}', "malformed"),
        ('{"Type": "Notification", "Message": 7}', "malformed"),
        ('{"Type": "SubscriptionConfirmation", "SubscribeURL": "https://example.com"}', "foreign"),
        ('{"hello": "world"}', "foreign"),
        (envelope({"eventType": "Exploded"}), "foreign"),
        (envelope({"eventType": "Bounce"}), "malformed"),
        (envelope({"eventType": "Bounce", "bounce": []}), "malformed"),
        (envelope({"eventType": "Bounce", "bounce": {"bounceType": "Permanent"}}), "malformed"),
        (
            envelope({"eventType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients": []}}),
            "malformed",
        ),
        (
            envelope({"eventType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": 5}]}}),
            "malformed",
        ),
        (envelope({"eventType": "Complaint", "complaint": {"complainedRecipients": ["a@b.c"]}}), "malformed"),
        (envelope(complaint("no-at-sign")), "malformed"),
        (envelope(complaint("x" * 400 + "@example.com")), "malformed"),
        (envelope(bounce("Sideways")), "malformed"),
    ],
)
def test_hostile_messages_are_named_not_raised(body, outcome):
    feedback = parse_feedback(body, NOW)
    assert feedback.outcome == outcome
    assert feedback.suppressions == ()


def test_a_report_naming_more_recipients_than_ses_sends_to_is_not_ses_s():
    addresses = [f"r{i}@example.com" for i in range(MAX_RECIPIENTS + 1)]
    assert parse_feedback(envelope(complaint(*addresses)), NOW).outcome == "malformed"
    assert parse_feedback(envelope(complaint(*addresses[:MAX_RECIPIENTS])), NOW).outcome == "suppressed"
