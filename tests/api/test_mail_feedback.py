"""SES feedback end to end against the emulator: bounce and complaint notifications published to the SNS
topic (moto's SES does not publish a configuration set's events, so the tests publish what SES would,
shaped as AWS documents it), delivered by SNS to the SQS queue, read by the notifier's feedback consumer,
recorded in DynamoDB; then no digest and no confirmation mail go to the suppressed address, and its account
says so."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

import orjson
import pytest

from service.aws.clients import open_clients
from service.aws.feedback import SqsFeedbackQueue
from service.aws.notify import SesMailer
from service.core.errors import DependencyUnavailable
from service.core.feedback import MAX_WAIT_SECONDS, RECEIVE_MAX, FeedbackConsumer
from service.embedded import provision_emulator
from service.metrics import Metrics
from service.settings import NotifySettings
from service.wiring import build_feedback_consumer, build_notifier
from tests.api.helpers import PASSWORD
from tests.api.test_notifications import WINDOW, Clock, account, change, confirm, mail_to, make_world
from tests.core.test_feedback import bounce, complaint, envelope

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def feedback_settings(settings, aws_session):
    """Provisioned with the configuration set, the topic and the queue (as ``python -m service`` is)."""
    provisioned = await provision_emulator(settings, aws_session, mail_feedback=True)
    return dataclasses.replace(
        provisioned,
        notify=dataclasses.replace(
            provisioned.notify,
            window_seconds=WINDOW,
            shards=4,
            public_url="https://files.test",
            # A read of an empty queue returns after a second, not twenty.
            feedback_wait_seconds=1,
        ),
    )


@pytest.fixture
async def client(feedback_settings, make_client, app_factory):
    return await make_client(app_factory(feedback_settings))


@pytest.fixture
async def clients(feedback_settings, aws_session):
    async with open_clients(feedback_settings.aws, Metrics(), aws_session) as opened:
        yield opened


async def publish(feedback_settings, aws_session, message: dict) -> None:
    """What SES does with a configuration set's bounce or complaint event: publish it to the topic."""
    name = f"{feedback_settings.table}-mail-feedback"
    aws = feedback_settings.aws
    async with aws_session.client("sns", endpoint_url=aws.endpoint_url) as sns:
        topic = (await sns.create_topic(Name=name))["TopicArn"]  # idempotent: the provisioned topic's ARN
        await sns.publish(TopicArn=topic, Message=orjson.dumps(message).decode())


async def queued(feedback_settings, clients) -> int:
    attributes = await clients.sqs.get_queue_attributes(
        QueueUrl=feedback_settings.notify.feedback_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return sum(int(value) for value in attributes["Attributes"].values())


async def account_of(client, headers) -> dict:
    response = await client.get("/v1/account", headers=headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_hard_bounce_through_sns_and_sqs_suppresses_the_address_and_the_account_says_so(
    client, feedback_settings, clients, aws_session
):
    tag = uuid.uuid4().hex[:8]
    address = f"bob-{tag}@example.com"
    bob = await account(client, f"bob{tag}", address)
    assert (await account_of(client, bob))["email_suppressed"] is False
    await publish(feedback_settings, aws_session, bounce("Permanent", address.upper()))
    await publish(feedback_settings, aws_session, complaint(f"carol-{tag}@example.com", key="notificationType"))
    await publish(feedback_settings, aws_session, bounce("Transient", f"dave-{tag}@example.com"))
    metrics = Metrics()
    consumer = build_feedback_consumer(feedback_settings, clients, metrics)
    assert consumer is not None
    assert await consumer.poll() == 3
    assert consumer.counts == {"suppressed": 2, "soft_bounce": 1}
    assert metrics.registry.get_sample_value("filesync_mail_feedback_total", {"outcome": "suppressed"}) == 2
    assert await queued(feedback_settings, clients) == 0, "every message read is deleted"
    seen = await account_of(client, bob)
    assert (seen["email"], seen["email_suppressed"], seen["email_suppressed_reason"]) == (address, True, "bounce")


async def test_malformed_and_foreign_messages_are_deleted_and_counted_and_the_worker_goes_on(
    client, feedback_settings, clients, aws_session
):
    url = feedback_settings.notify.feedback_queue_url
    for body in ("not json", "[]", '{"Type": "Notification", "Message": "{"}', '{"hello": 1}', envelope(bounce("?"))):
        await clients.sqs.send_message(QueueUrl=url, MessageBody=body)
    tag = uuid.uuid4().hex[:8]
    await publish(feedback_settings, aws_session, complaint(f"erin-{tag}@example.com"))
    consumer = build_feedback_consumer(feedback_settings, clients)
    assert consumer is not None
    read = 0
    deadline = time.monotonic() + 20
    while read < 6 and time.monotonic() < deadline:
        read += await consumer.poll()
    assert consumer.counts == {"malformed": 4, "foreign": 1, "suppressed": 1}
    assert await queued(feedback_settings, clients) == 0


async def test_no_digest_goes_to_a_suppressed_address_counted_and_logged_once(
    client, feedback_settings, clients, aws_session, caplog
):
    clock = Clock()
    world = await make_world(client, feedback_settings, followers=("bob", "carl"))
    await publish(feedback_settings, aws_session, bounce("Permanent", world.addresses["bob"]))
    consumer = build_feedback_consumer(feedback_settings, clients)
    assert consumer is not None
    assert await consumer.poll() == 1
    metrics = Metrics()
    worker = build_notifier(feedback_settings, clients, clock=clock, metrics=metrics)
    for round_ in range(2):
        await change(world, f"docs/report-{round_}.txt")
        await worker.tick()
        clock.now += WINDOW + 1
        await worker.tick()
        await worker.tick()
    assert len(await mail_to("", world.addresses["carl"])) == 2, "the other follower still gets his digests"
    assert await mail_to("", world.addresses["bob"]) == []
    assert metrics.registry.get_sample_value("filesync_mail_suppressed_total", {"kind": "digest"}) == 2
    logged = [r for r in caplog.records if "it is suppressed" in r.getMessage()]
    assert len(logged) == 1


async def test_no_confirmation_mail_to_a_suppressed_address_and_a_new_address_ends_it(
    client, feedback_settings, clients, aws_session
):
    tag = uuid.uuid4().hex[:8]
    bad, good = f"gone-{tag}@example.com", f"new-{tag}@example.com"
    await publish(feedback_settings, aws_session, complaint(bad))
    consumer = build_feedback_consumer(feedback_settings, clients)
    assert consumer is not None
    assert await consumer.poll() == 1
    bob = await account(client, f"bob{tag}", None)
    changed = await client.put("/v1/account/email", json={"email": bad, "current_password": PASSWORD}, headers=bob)
    assert changed.status == 200, await changed.text()
    body = await changed.json()
    assert (body["email"], body["email_suppressed"], body["email_suppressed_reason"]) == (bad, True, "complaint")
    assert await mail_to("", bad, confirmations=True) == []
    resent = await client.post("/v1/account/email/confirmation", headers=bob)
    assert resent.status == 204
    assert await mail_to("", bad, confirmations=True) == [], "a re-send is held back too"
    changed = await client.put("/v1/account/email", json={"email": good, "current_password": PASSWORD}, headers=bob)
    body = await changed.json()
    assert (body["email"], body["email_suppressed"], body["email_suppressed_reason"]) == (good, False, None)
    await confirm(client, good)
    assert (await account_of(client, bob))["email_suppressed"] is False


async def test_mail_goes_out_with_the_configuration_set(feedback_settings, clients):
    """moto's SES accepts the configuration set and keeps no trace of it: the request itself is read, as
    botocore built it, from the client's own event (no fake: the request goes to the emulator)."""
    sent: list[dict] = []
    clients.ses.meta.events.register(
        "provide-client-params.ses.SendRawEmail", lambda params, **_: sent.append(dict(params))
    )
    mailer = SesMailer(clients.ses, feedback_settings.mail_from, feedback_settings.notify.configuration_set)
    await mailer.send("someone@example.com", b"Subject: hi\r\n\r\nhello\r\n")
    (params,) = sent
    assert params["ConfigurationSetName"] == f"{feedback_settings.table}-mail"
    described = await clients.ses.describe_configuration_set(
        ConfigurationSetName=params["ConfigurationSetName"], ConfigurationSetAttributeNames=["eventDestinations"]
    )
    (destination,) = described["EventDestinations"]
    assert sorted(destination["MatchingEventTypes"]) == ["bounce", "complaint"]


async def test_the_in_process_notifier_reads_the_queue(feedback_settings, make_client, app_factory, aws_session):
    """The embedded default's notifier consumes the queue on its own."""
    settings = dataclasses.replace(
        feedback_settings, notify=dataclasses.replace(feedback_settings.notify, in_process=True)
    )
    served = await make_client(app_factory(settings))
    tag = uuid.uuid4().hex[:8]
    address = f"fay-{tag}@example.com"
    fay = await account(served, f"fay{tag}", address)
    await publish(settings, aws_session, bounce("Permanent", address))
    deadline = time.monotonic() + 15
    while not (await account_of(served, fay))["email_suppressed"]:
        assert time.monotonic() < deadline, "the in-process notifier never read the bounce"
        await asyncio.sleep(0.1)


def test_no_queue_means_no_consumer_and_no_lookups(settings):
    assert settings.notify.feedback_queue_url is None
    assert build_feedback_consumer(settings, clients=None) is None  # type: ignore[arg-type]
    assert NotifySettings().feedback_wait_seconds == MAX_WAIT_SECONDS


async def test_one_read_takes_at_most_ten_messages(feedback_settings, clients):
    url = feedback_settings.notify.feedback_queue_url
    await clients.sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f'{{"n": {i}}}'} for i in range(10)]
    )
    await clients.sqs.send_message(QueueUrl=url, MessageBody='{"n": 10}')
    consumer = build_feedback_consumer(feedback_settings, clients)
    assert consumer is not None
    assert await consumer.poll() == RECEIVE_MAX == 10
    assert await consumer.poll() == 1
    assert consumer.counts == {"foreign": 11}


class FailingStore:
    """DynamoDB refusing writes (a fault the emulator cannot make), behind the store's interface."""

    async def suppress(self, suppression) -> None:
        raise DependencyUnavailable("DynamoDB is busy; retry shortly.")

    async def suppression(self, address):
        return None


async def test_a_message_whose_suppressions_cannot_be_written_stays_queued(feedback_settings, clients, aws_session):
    await publish(feedback_settings, aws_session, bounce("Permanent", f"kept-{uuid.uuid4().hex[:8]}@example.com"))
    consumer = FeedbackConsumer(
        SqsFeedbackQueue(clients.sqs, feedback_settings.notify.feedback_queue_url), FailingStore(), wait_seconds=1
    )
    assert await consumer.poll() == 1
    assert consumer.counts == {}
    assert await queued(feedback_settings, clients) == 1, "not deleted: it comes back after its visibility timeout"
