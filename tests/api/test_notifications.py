"""Change notifications end to end: follows over HTTP, the notifier against the emulator's DynamoDB and SES,
mail read back from the emulator. The notifier runs in-process on a clock the tests move, so windows, leases
and days pass instantly; crashes are exceptions raised at the exact step (a fake only around the real parts).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import re
import time
import uuid
from email.message import EmailMessage

import aiohttp
import pytest
from aiohttp import web

from service.aws.clients import open_clients
from service.aws.notify import SesMailer
from service.core.addresses import confirmation_signer
from service.core.follows import UnsubscribeSigner
from service.core.notify import Notifier
from service.embedded import MAIL_PATH
from service.metrics import Metrics
from service.settings import NotifySettings
from service.wiring import build_notifier
from tests import conftest
from tests.api.files_helpers import commit
from tests.api.helpers import PASSWORD, bearer, log_in, problem

EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
WINDOW = 60.0
LEASE = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0  # a fixed day, far from midnight UTC

    def __call__(self) -> float:
        return self.now


class Crash(BaseException):
    """The process dies here: nothing after this line of the notifier runs."""


CONFIRM_SUBJECT = "Confirm this address for file change notifications"


async def mail_to(moto_endpoint: str, address: str, *, confirmations: bool = False) -> list[EmailMessage]:
    """Every digest (or with ``confirmations``, every confirmation mail) the emulator's SES accepted for
    ``address``, read from the emulator's mail listing (``""``: the session's emulator)."""
    endpoint = moto_endpoint or conftest.EMULATOR["endpoint"]
    async with aiohttp.ClientSession() as http, http.get(endpoint + MAIL_PATH) as response:
        assert response.status == 200, await response.text()
        sent = await response.json()
    found = []
    for entry in sent:
        if address in entry["destinations"]:
            message = email.message_from_string(entry["raw"], policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            if (message["Subject"] == CONFIRM_SUBJECT) == confirmations:
                found.append(message)
    return found


def confirmation_link(message: EmailMessage | str) -> str:
    """The path and query of the link in a confirmation mail (whatever the service's public URL)."""
    text = message if isinstance(message, str) else text_of(message)
    [link] = re.findall(r"https?://[^/\s]+(/v1/account/email/confirm\?token=\S+)", text)
    return link


async def confirm(client, address: str) -> None:
    """Follow the link of the (latest) confirmation mail sent to ``address``, as its owner would."""
    *_, message = await mail_to("", address, confirmations=True)
    response = await client.post(confirmation_link(message))
    assert response.status == 200, await response.text()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


async def account(client, name: str, address: str | None) -> dict[str, str]:
    body = {"username": name, "password": PASSWORD, **({"email": address} if address else {})}
    response = await client.post("/v1/auth/signup", json=body)
    assert response.status == 201, await response.text()
    assert (await response.json())["email"] == address
    if address:  # double opt-in: no digest goes to an address before its owner confirmed it
        await confirm(client, address)
    return bearer(await log_in(client, name))


@dataclasses.dataclass
class World:
    client: object
    settings: object
    ns: str
    alice: dict[str, str]
    followers: dict[str, dict[str, str]]
    addresses: dict[str, str]


@pytest.fixture
def notify_settings(provisioned):
    return dataclasses.replace(
        provisioned,
        notify=NotifySettings(
            window_seconds=WINDOW,
            daily_cap=24,
            max_listed=50,
            shards=4,
            lease_seconds=LEASE,
            public_url="https://files.test",
            in_process=False,  # the tests run their own notifier
        ),
    )


@pytest.fixture
async def client(notify_settings, make_client, app_factory):
    """The service with the notifier's settings (the shard count must agree between the two)."""
    return await make_client(app_factory(notify_settings))


async def make_world(client, settings, followers: tuple[str, ...] = ("bob",)) -> World:
    tag = uuid.uuid4().hex[:8]
    alice_address = f"alice-{tag}@example.com"
    alice = await account(client, "alice", alice_address)
    created = await client.post("/v1/namespaces", json={"name": "Team"}, headers=alice)
    ns = (await created.json())["id"]
    heads, addresses = {}, {"alice": alice_address}
    for name in followers:
        addresses[name] = f"{name}-{tag}@example.com"
        heads[name] = await account(client, name, addresses[name])
        added = await client.put(f"/v1/namespaces/{ns}/members/{name}", json={"role": "editor"}, headers=alice)
        assert added.status == 200
        follow = await client.put(f"/v1/ns/{ns}/follows/docs", headers=heads[name])
        assert follow.status == 200, await follow.text()
    # Alice follows too: she must never hear about her own changes.
    assert (await client.put(f"/v1/ns/{ns}/follows/docs", headers=alice)).status == 200
    return World(client, settings, ns, alice, heads, addresses)


async def change(world: World, path: str, who: dict[str, str] | None = None) -> None:
    await commit(
        world.client,
        who or world.alice,
        world.ns,
        [{"path": path, "content_hash": EMPTY, "size": 0, "mtime": 1.0, "parent_rev": None}],
    )


@pytest.fixture
async def clients(notify_settings, aws_session):
    async with open_clients(notify_settings.aws, Metrics(), aws_session) as opened:
        yield opened


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def notifier(notify_settings, clients, clock):
    def make(**kwargs) -> Notifier:
        return build_notifier(notify_settings, clients, clock=clock, **kwargs)

    return make


async def test_thirty_changes_in_one_window_make_one_email_for_the_follower_and_none_for_the_author(
    client, notify_settings, notifier, clock, moto_endpoint
):
    world = await make_world(client, notify_settings)
    for i in range(30):
        await change(world, f"docs/report-{i:02d}.txt")
    await change(world, "elsewhere/not-followed.txt")
    worker = notifier()
    await worker.tick()
    assert await mail_to(moto_endpoint, world.addresses["bob"]) == [], "sent before the window closed"
    clock.now += WINDOW + 1
    await worker.tick()
    await worker.tick()
    [message] = await mail_to(moto_endpoint, world.addresses["bob"])
    text = text_of(message)
    assert "30 changes" in message["Subject"]
    assert all(f"docs/report-{i:02d}.txt added" in text for i in range(30))
    assert "not-followed" not in text
    assert await mail_to(moto_endpoint, world.addresses["alice"]) == []
    assert message["List-Unsubscribe"].startswith("<https://files.test/v1/unsubscribe?token=")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_more_changes_than_listed_become_and_n_more(client, notify_settings, notifier, clock, moto_endpoint):
    world = await make_world(client, notify_settings)
    for i in range(0, 30, 10):
        await commit(
            client,
            world.alice,
            world.ns,
            [
                {"path": f"docs/f{j}.txt", "content_hash": EMPTY, "size": 0, "mtime": 1.0, "parent_rev": None}
                for j in range(i, i + 10)
            ],
        )
    worker = notifier()
    worker._config = dataclasses.replace(worker._config, rules=dataclasses.replace(worker._config.rules, max_listed=12))
    await worker.tick()
    clock.now += WINDOW + 1
    await worker.tick()
    [message] = await mail_to(moto_endpoint, world.addresses["bob"])
    text = text_of(message)
    assert text.count(" added (by alice)") == 12
    assert "and 18 more." in text


async def test_a_followers_own_change_and_a_former_member_are_not_told(
    client, notify_settings, notifier, clock, moto_endpoint
):
    world = await make_world(client, notify_settings, followers=("bob", "carol"))
    await change(world, "docs/by-bob.txt", world.followers["bob"])
    removed = await client.delete(f"/v1/namespaces/{world.ns}/members/carol", headers=world.alice)
    assert removed.status == 204
    worker = notifier()
    await worker.tick()
    clock.now += WINDOW + 1
    await worker.tick()
    assert await mail_to(moto_endpoint, world.addresses["bob"]) == []
    assert await mail_to(moto_endpoint, world.addresses["carol"]) == []
    [to_alice] = await mail_to(moto_endpoint, world.addresses["alice"])
    assert "docs/by-bob.txt added (by bob)" in text_of(to_alice)


async def test_a_member_removed_between_two_changes_hears_only_of_the_first(
    client, notify_settings, notifier, clock, moto_endpoint
):
    world = await make_world(client, notify_settings, followers=("bob", "carol"))
    await change(world, "docs/before-removal.txt")
    worker = notifier()
    await worker.tick()  # carol's digest takes the first change in
    removed = await client.delete(f"/v1/namespaces/{world.ns}/members/carol", headers=world.alice)
    assert removed.status == 204
    await change(world, "docs/after-removal.txt")
    await worker.tick()
    clock.now += WINDOW + 1
    await worker.tick()
    [to_bob] = await mail_to(moto_endpoint, world.addresses["bob"])
    assert "docs/after-removal.txt added" in text_of(to_bob)
    [to_carol] = await mail_to(moto_endpoint, world.addresses["carol"])
    assert "docs/before-removal.txt added" in text_of(to_carol)
    assert "after-removal" not in text_of(to_carol)
    # Her follows there ended with the membership.
    carol = world.followers["carol"]
    assert (await (await client.get("/v1/follows", headers=carol)).json())["follows"] == []


class RemovalDuringRead:
    """The real journal, but carol is removed and alice commits again just before the fan-out's first read
    (the race a notifier that read the members first would lose)."""

    def __init__(self, real, client, world: World) -> None:
        self.real, self.client, self.world, self.raced = real, client, world, False

    def __getattr__(self, name):
        return getattr(self.real, name)

    async def since(self, ns, after_seq, limit):
        if not self.raced:
            self.raced = True
            response = await self.client.delete(
                f"/v1/namespaces/{self.world.ns}/members/carol", headers=self.world.alice
            )
            assert response.status == 204
            await change(self.world, "docs/during-the-read.txt")
        return await self.real.since(ns, after_seq, limit)


async def test_a_removal_racing_the_fan_out_tells_the_removed_member_nothing_after_it(
    client, notify_settings, notifier, clock, moto_endpoint
):
    world = await make_world(client, notify_settings, followers=("bob", "carol"))
    await change(world, "docs/first.txt")
    worker = notifier()
    worker._journal = RemovalDuringRead(worker._journal, client, world)
    await worker.tick()
    clock.now += WINDOW + 1
    await worker.tick()
    [to_bob] = await mail_to(moto_endpoint, world.addresses["bob"])
    assert "docs/during-the-read.txt added" in text_of(to_bob)
    assert await mail_to(moto_endpoint, world.addresses["carol"]) == []


class CrashingMailer:
    """SES itself, but the process dies right after SES accepted the ``crash_on``-th message."""

    def __init__(self, real: SesMailer, crash_on: int) -> None:
        self.real, self.crash_on, self.calls = real, crash_on, 0

    async def send(self, recipient: str, raw_message: bytes) -> None:
        await self.real.send(recipient, raw_message)
        self.calls += 1
        if self.calls == self.crash_on:
            raise Crash


async def test_a_crash_after_ses_accepted_loses_nothing_and_duplicates_at_most_that_digest(
    client, notify_settings, notifier, clients, clock, moto_endpoint
):
    followers = ("bob", "carol", "dave")
    world = await make_world(client, notify_settings, followers=followers)
    for i in range(5):
        await change(world, f"docs/n{i}.txt")
    first = notifier(mailer=CrashingMailer(SesMailer(clients.ses, notify_settings.mail_from), crash_on=1))
    first._config = dataclasses.replace(first._config, concurrency=1)
    await first.tick()  # fan-out only: the window is open
    clock.now += WINDOW + 1
    with pytest.raises(Crash):
        await first.tick()
    # The dead notifier's leases expire; a new one takes over and finishes the work.
    clock.now += LEASE + 1
    second = notifier()
    await second.tick()
    await second.tick()
    counts = {}
    for name in followers:
        mails = await mail_to(moto_endpoint, world.addresses[name])
        counts[name] = len(mails)
        assert mails, f"{name} was never told"
        for message in mails:  # every email carries every change: nothing lost
            assert all(f"docs/n{i}.txt added" in text_of(message) for i in range(5))
        assert len({text_of(m) for m in mails}) == 1, "a duplicate is the same digest again"
    # What is possible: the one digest SES accepted just before the crash is sent again (one follower, once).
    assert sorted(counts.values()) == [1, 1, 2]


class CrashOnAdvance:
    """The real store, but the process dies when the fan-out is about to advance a namespace's cursor."""

    def __init__(self, real) -> None:
        self.real = real

    def __getattr__(self, name):
        return getattr(self.real, name)

    async def advance(self, *args):
        raise Crash


async def test_a_crash_before_the_cursor_moves_counts_each_change_once(
    client, notify_settings, notifier, clock, moto_endpoint
):
    world = await make_world(client, notify_settings)
    for i in range(3):
        await change(world, f"docs/c{i}.txt")
    first = notifier()
    first._store = CrashOnAdvance(first._store)
    with pytest.raises(Crash):
        await first.tick()  # the digests took the changes in; the cursor did not move
    clock.now += LEASE + 1
    second = notifier()
    await second.tick()  # reads the same entries again
    clock.now += WINDOW + 1
    await second.tick()
    [message] = await mail_to(moto_endpoint, world.addresses["bob"])
    assert "3 changes" in message["Subject"]
    assert text_of(message).count(" added (by alice)") == 3


async def test_two_notifiers_at_once_send_each_digest_once(client, notify_settings, notifier, clock, moto_endpoint):
    followers = ("bob", "carol", "dave", "erin", "frank")
    world = await make_world(client, notify_settings, followers=followers)
    for i in range(4):
        await change(world, f"docs/t{i}.txt")
    one, two = notifier(), notifier()
    for _ in range(3):
        await asyncio.gather(one.tick(), two.tick())
    clock.now += WINDOW + 1
    for _ in range(3):
        await asyncio.gather(one.tick(), two.tick())
        clock.now += 1
    assert not set(one.held) & set(two.held), "a shard held by both"
    assert set(one.held) | set(two.held) == set(range(notify_settings.notify.shards))
    for name in followers:
        assert len(await mail_to(moto_endpoint, world.addresses[name])) == 1, name
    assert one.sent + two.sent == len(followers)


@pytest.fixture
async def throttling_ses(moto_endpoint, make_client):
    """A proxy in front of the emulator's SES that answers ``Throttling`` to the first ``budget`` sends."""
    state = {"budget": 0, "throttled": 0}

    async def proxy(request: web.Request) -> web.Response:
        body = await request.read()
        if b"Action=SendRawEmail" in body and state["budget"] > 0:
            state["budget"] -= 1
            state["throttled"] += 1
            error = (
                "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                "<Message>Maximum sending rate exceeded.</Message></Error><RequestId>1</RequestId></ErrorResponse>"
            )
            return web.Response(status=400, text=error, content_type="text/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with (
            aiohttp.ClientSession() as http,
            http.post(moto_endpoint + request.path_qs, data=body, headers=headers) as upstream,
        ):
            return web.Response(status=upstream.status, body=await upstream.read(), content_type=upstream.content_type)

    app = web.Application()
    app.router.add_post("/{tail:.*}", proxy)
    served = await make_client(app)
    return str(served.make_url("")).rstrip("/"), state


async def test_ses_throttling_delays_mail_but_loses_none(
    client, notify_settings, aws_session, clock, moto_endpoint, throttling_ses
):
    url, state = throttling_ses
    state["budget"] = 5
    world = await make_world(client, notify_settings)
    for i in range(3):
        await change(world, f"docs/s{i}.txt")
    settings = dataclasses.replace(
        # botocore's own retries off: each throttle reaches the notifier, whose backoff is under test.
        notify_settings,
        aws=dataclasses.replace(notify_settings.aws, service_endpoints=(("ses", url),), max_attempts=1),
    )
    async with open_clients(settings.aws, Metrics(), aws_session) as clients:
        worker = build_notifier(settings, clients, clock=clock)
        await worker.tick()
        clock.now += WINDOW + 1
        for _ in range(20):
            await worker.tick()
            if await mail_to(moto_endpoint, world.addresses["bob"]):
                break
            clock.now += 61  # past any backoff
    assert state["throttled"] == 5
    [message] = await mail_to(moto_endpoint, world.addresses["bob"])
    assert all(f"docs/s{i}.txt added" in text_of(message) for i in range(3))


async def test_hostile_names_are_escaped_and_add_no_header_or_recipient(
    client, notify_settings, notifier, clock, moto_endpoint
):
    world = await make_world(client, notify_settings)
    hostile = ["a\r\nBcc: x@evil.example", "=?UTF-8?Q?=0A?=", "<script>"]
    for name in hostile:  # as file names: refused at the door, each naming its rule
        response = await client.post(
            f"/v1/ns/{world.ns}/commit",
            json={
                "entries": [
                    {"path": f"docs/{name}", "content_hash": EMPTY, "size": 0, "mtime": 1.0, "parent_rev": None}
                ]
            },
            headers=world.alice,
        )
        body = await problem(response, 422)
        assert re.search("control-character|reserved-character", body["detail"])
    bad_user = await client.post("/v1/auth/signup", json={"username": "x\r\nBcc: y", "password": PASSWORD})
    await problem(bad_user, 422)
    bad_address = await client.put(
        "/v1/account/email",
        json={"email": "bob@example.com\r\nBcc: x@evil.example", "current_password": PASSWORD},
        headers=world.followers["bob"],
    )
    await problem(bad_address, 422)
    # As a shared folder's name they are allowed: they must arrive as text.
    renamed = await client.post(
        "/v1/namespaces", json={"name": "<script>alert(1)</script> =?UTF-8?Q?=0A?="}, headers=world.alice
    )
    evil_ns = (await renamed.json())["id"]
    await client.put(f"/v1/namespaces/{evil_ns}/members/bob", json={"role": "viewer"}, headers=world.alice)
    assert (await client.put(f"/v1/ns/{evil_ns}/follow", headers=world.followers["bob"])).status == 200
    await commit(
        client,
        world.alice,
        evil_ns,
        [
            {
                "path": "x&y <b>.txt".replace("<", "").replace(">", ""),
                "content_hash": EMPTY,
                "size": 0,
                "mtime": 1.0,
                "parent_rev": None,
            }
        ],
    )
    worker = notifier()
    await worker.tick()
    clock.now += WINDOW + 1
    await worker.tick()
    [message] = await mail_to(moto_endpoint, world.addresses["bob"])
    assert set(message.keys()) == {
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "Auto-Submitted",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "MIME-Version",
        "Content-Type",
    }
    assert message["To"] == world.addresses["bob"]
    assert "evil" not in str(message["To"]) + str(message["Subject"])
    page = html_of(message)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "x&amp;y b.txt" in page
    assert "=?UTF-8?Q?=0A?=" in text_of(message)  # shown literally, never decoded into anything


async def test_the_daily_cap_turns_a_flood_into_one_digest_the_next_day(
    client, notify_settings, notifier, clock, moto_endpoint
):
    world = await make_world(client, notify_settings)
    worker = notifier()
    worker._config = dataclasses.replace(worker._config, rules=dataclasses.replace(worker._config.rules, daily_cap=2))
    for round_ in range(5):
        await change(world, f"docs/r{round_}.txt")
        await worker.tick()
        clock.now += WINDOW + 1
        await worker.tick()
    assert len(await mail_to(moto_endpoint, world.addresses["bob"])) == 2
    clock.now += 86400
    await worker.tick()
    mails = await mail_to(moto_endpoint, world.addresses["bob"])
    assert len(mails) == 3
    assert "3 changes" in mails[-1]["Subject"]


async def test_follows_over_http(client, notify_settings):
    world = await make_world(client, notify_settings)
    bob = world.followers["bob"]
    listed = await (await client.get("/v1/follows", headers=bob)).json()
    assert listed["follows"] == [
        {"namespace": world.ns, "path": "docs", "created_at": listed["follows"][0]["created_at"]}
    ]
    # Only members may follow: anyone else's namespace is not found.
    mallory = await account(client, "mallory", None)
    await problem(await client.put(f"/v1/ns/{world.ns}/follows/docs", headers=mallory), 404)
    await problem(await client.put(f"/v1/ns/{world.ns}/follows/a%3Ab", headers=bob), 422)
    assert (await client.put(f"/v1/ns/{world.ns}/follow", headers=bob)).status == 200
    assert (await client.delete(f"/v1/ns/{world.ns}/follows/docs", headers=bob)).status == 204
    listed = await (await client.get("/v1/follows", headers=bob)).json()
    assert [f["path"] for f in listed["follows"]] == [""]
    # The address is part of the account; changing it takes the password.
    wrong = await client.put(
        "/v1/account/email", json={"email": "b@example.com", "current_password": "nope nope"}, headers=bob
    )
    await problem(wrong, 403)
    changed = await client.put(
        "/v1/account/email", json={"email": "B@Example.com", "current_password": PASSWORD}, headers=bob
    )
    assert (await changed.json())["email"] == "B@example.com"
    removed = await client.put("/v1/account/email", json={"email": None, "current_password": PASSWORD}, headers=bob)
    assert (await removed.json())["email"] is None


async def test_the_unsubscribe_link_in_an_email_works_without_logging_in(
    client, notify_settings, notifier, clock, moto_endpoint
):
    world = await make_world(client, notify_settings)
    await change(world, "docs/u.txt")
    worker = notifier()
    await worker.tick()
    clock.now += WINDOW + 1
    await worker.tick()
    [message] = await mail_to(moto_endpoint, world.addresses["bob"])
    link = message["List-Unsubscribe"].strip("<>").removeprefix("https://files.test")
    forged = re.sub(r"token=([^.]*)\.", lambda m: f"token={m.group(1)}x.", link)
    await problem(await client.post(forged), 404)
    page = await client.get(link)  # a link scanner's GET changes nothing
    assert page.status == 200
    assert "Unsubscribe" in await page.text()
    assert len((await (await client.get("/v1/follows", headers=world.followers["bob"])).json())["follows"]) == 1
    done = await client.post(link)
    assert (await done.json()) == {"ended": 1}
    assert (await (await client.get("/v1/follows", headers=world.followers["bob"])).json())["follows"] == []


async def test_an_address_of_254_characters_is_accepted_and_255_refused(client):
    bob = await account(client, "bob", None)
    domain = ".".join(["d" * 60, "e" * 60, "f" * 60]) + ".com"  # 186 characters
    at_limit = "b" * (254 - 1 - len(domain)) + "@" + domain
    assert len(at_limit) == 254
    accepted = await client.put(
        "/v1/account/email", json={"email": at_limit, "current_password": PASSWORD}, headers=bob
    )
    assert (await accepted.json())["email"] == at_limit
    past = "b" + at_limit
    body = await problem(
        await client.put("/v1/account/email", json={"email": past, "current_password": PASSWORD}, headers=bob), 422
    )
    assert body["errors"][0]["path"] == "$.email"


# --- double opt-in -------------------------------------------------------------------------------------


async def test_an_unconfirmed_address_gets_one_confirmation_mail_and_no_digest(
    client, notify_settings, notifier, clock, moto_endpoint
):
    world = await make_world(client, notify_settings)
    address = f"eve-{uuid.uuid4().hex[:8]}@example.com"
    signed_up = await client.post("/v1/auth/signup", json={"username": "eve", "password": PASSWORD, "email": address})
    assert (await signed_up.json())["email_confirmed"] is False
    eve = bearer(await log_in(client, "eve"))
    await client.put(f"/v1/namespaces/{world.ns}/members/eve", json={"role": "viewer"}, headers=world.alice)
    assert (await client.put(f"/v1/ns/{world.ns}/follows/docs", headers=eve)).status == 200
    await change(world, "docs/before-confirming.txt")
    worker = notifier()
    await worker.tick()
    clock.now += WINDOW + 1
    await worker.tick()
    assert len(await mail_to(moto_endpoint, world.addresses["bob"])) == 1  # bob's confirmed address is told
    assert await mail_to(moto_endpoint, address) == [], "a digest went to an unconfirmed address"
    [confirmation] = await mail_to(moto_endpoint, address, confirmations=True)
    assert "Team" not in text_of(confirmation)  # nothing a user typed (a namespace's name) reaches it
    assert (await (await client.get("/v1/account", headers=eve)).json())["email_confirmed"] is False
    # The same address again: nothing changes, nothing more is sent.
    same = await client.put("/v1/account/email", json={"email": address, "current_password": PASSWORD}, headers=eve)
    assert (await same.json())["email_confirmed"] is False
    assert len(await mail_to(moto_endpoint, address, confirmations=True)) == 1
    await confirm(client, address)
    assert (await (await client.get("/v1/account", headers=eve)).json())["email_confirmed"] is True
    await change(world, "docs/after-confirming.txt")
    await worker.tick()
    clock.now += WINDOW + 1
    await worker.tick()
    [digest] = await mail_to(moto_endpoint, address)
    assert "docs/after-confirming.txt added" in text_of(digest)
    assert "before-confirming" not in text_of(digest)  # dropped while unconfirmed, never held back for later


async def test_a_confirmation_link_works_once_and_an_expired_or_forged_one_is_404(client, notify_settings):
    bob = await account(client, "bob", None)
    address = f"bob-{uuid.uuid4().hex[:8]}@example.com"
    changed = await client.put("/v1/account/email", json={"email": address, "current_password": PASSWORD}, headers=bob)
    assert await changed.json() == {**await changed.json(), "email": address, "email_confirmed": False}
    [mail] = await mail_to("", address, confirmations=True)
    link = confirmation_link(mail)
    path, token = link.split("?token=")
    forged = f"{path}?token={token[:-1]}{'A' if token[-1] != 'A' else 'B'}"
    for method in ("GET", "POST"):
        body = await problem(await client.request(method, forged), 404)
        assert "not valid" in body["detail"]
    signer = confirmation_signer(notify_settings.token_secret)
    claims = {k: v for k, v in signer.verify(token, 0).items() if k != "exp"}
    expired = f"{path}?token={signer.sign(claims, time.time() - 1)}"
    for method in ("GET", "POST"):
        body = await problem(await client.request(method, expired), 404)
        assert "expired" in body["detail"]
    page = await client.get(link)  # what a mail scanner does: shows a button, confirms nothing
    assert page.status == 200
    assert "<button" in await page.text()
    assert address in await page.text()
    assert (await (await client.get("/v1/account", headers=bob)).json())["email_confirmed"] is False
    done = await client.post(link)
    assert await done.json() == {"email": address, "email_confirmed": True}
    for method in ("POST", "GET"):  # once only
        await problem(await client.request(method, link), 404)
    assert (await (await client.get("/v1/account", headers=bob)).json())["email_confirmed"] is True
    # A new address is unconfirmed again.
    other = f"bob2-{uuid.uuid4().hex[:8]}@example.com"
    again = await client.put("/v1/account/email", json={"email": other, "current_password": PASSWORD}, headers=bob)
    assert (await again.json())["email_confirmed"] is False


async def test_a_link_for_an_address_changed_since_is_404(client):
    bob = await account(client, "bob", None)
    first, second = (f"{n}-{uuid.uuid4().hex[:8]}@example.com" for n in ("one", "two"))
    for address in (first, second):
        response = await client.put(
            "/v1/account/email", json={"email": address, "current_password": PASSWORD}, headers=bob
        )
        assert response.status == 200
    [old] = await mail_to("", first, confirmations=True)
    await problem(await client.post(confirmation_link(old)), 404)
    assert (await (await client.get("/v1/account", headers=bob)).json())["email_confirmed"] is False


async def test_confirmation_mails_are_limited_per_account_and_per_address(client, notify_settings):
    assert notify_settings.notify.confirm_mails_per_hour == 3
    address = f"frank-{uuid.uuid4().hex[:8]}@example.com"
    body = {"username": "frank", "password": PASSWORD, "email": address}
    assert (await client.post("/v1/auth/signup", json=body)).status == 201  # mail 1
    frank = bearer(await log_in(client, "frank"))
    for _ in range(2):  # mails 2 and 3
        assert (await client.post("/v1/account/email/confirmation", headers=frank)).status == 204
    refused = await client.post("/v1/account/email/confirmation", headers=frank)
    await problem(refused, 429)
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert len(await mail_to("", address, confirmations=True)) == 3
    other = f"frank2-{uuid.uuid4().hex[:8]}@example.com"
    change = {"email": other, "current_password": PASSWORD}
    await problem(await client.put("/v1/account/email", json=change, headers=frank), 429)
    assert (await (await client.get("/v1/account", headers=frank)).json())["email"] == address  # unchanged
    # Another account cannot mail the same address past its quota either.
    grace = await account(client, "grace", None)
    change = {"email": address, "current_password": PASSWORD}
    await problem(await client.put("/v1/account/email", json=change, headers=grace), 429)
    assert (await (await client.get("/v1/account", headers=grace)).json())["email"] is None
    assert len(await mail_to("", address, confirmations=True)) == 3
    # Nothing waits for confirmation: nothing to send.
    await problem(await client.post("/v1/account/email/confirmation", headers=grace), 409)


# --- unsubscribe links ---------------------------------------------------------------------------------

ONE_CLICK = {"data": "List-Unsubscribe=One-Click", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


async def digest_link(world: World, notifier, clock, moto_endpoint) -> str:
    await change(world, "docs/u.txt")
    worker = notifier()
    await worker.tick()
    clock.now += WINDOW + 1
    await worker.tick()
    [message] = await mail_to(moto_endpoint, world.addresses["bob"])
    return message["List-Unsubscribe"].strip("<>").removeprefix("https://files.test")


async def follows_of(client, world: World) -> list[str]:
    listed = await (await client.get("/v1/follows", headers=world.followers["bob"])).json()
    return sorted(f["path"] for f in listed["follows"])


async def test_an_unsubscribe_link_does_not_end_follows_made_after_its_email(
    client, notify_settings, notifier, clock, moto_endpoint
):
    world = await make_world(client, notify_settings)
    link = await digest_link(world, notifier, clock, moto_endpoint)
    bob = world.followers["bob"]
    # After the email: the follow removed and made again, and a new one.
    assert (await client.delete(f"/v1/ns/{world.ns}/follows/docs", headers=bob)).status == 204
    assert (await client.put(f"/v1/ns/{world.ns}/follows/docs", headers=bob)).status == 200
    assert (await client.put(f"/v1/ns/{world.ns}/follows/reports", headers=bob)).status == 200
    done = await client.post(link, **ONE_CLICK)
    assert await done.json() == {"ended": 0}
    assert await follows_of(client, world) == ["docs", "reports"]


async def test_an_unsubscribe_link_ends_the_follows_of_its_email_in_one_click_and_expires(
    client, notify_settings, notifier, clock, moto_endpoint
):
    world = await make_world(client, notify_settings)
    bob = world.followers["bob"]
    assert (await client.put(f"/v1/ns/{world.ns}/follow", headers=bob)).status == 200
    link = await digest_link(world, notifier, clock, moto_endpoint)
    # Following again what one follows keeps the follow as it was: the link still ends it.
    assert (await client.put(f"/v1/ns/{world.ns}/follows/docs", headers=bob)).status == 200
    done = await client.post(link, **ONE_CLICK)  # RFC 8058: a POST with this body, no login
    assert await done.json() == {"ended": 2}
    assert await follows_of(client, world) == []
    # Expired: the same claims signed with the service's key, but past their lifetime.
    assert (await client.put(f"/v1/ns/{world.ns}/follows/docs", headers=bob)).status == 200
    far = 4_000_000_000.0
    stale = UnsubscribeSigner(notify_settings.token_secret, -2 * 86400).sign("bob", through=far, now=time.time())
    for method in ("GET", "POST"):
        body = await problem(await client.request(method, f"/v1/unsubscribe?token={stale}"), 404)
        assert "expired" in body["detail"]
    assert await follows_of(client, world) == ["docs"]
    fresh = UnsubscribeSigner(notify_settings.token_secret, 86400).sign("bob", through=far, now=time.time())
    assert await (await client.post(f"/v1/unsubscribe?token={fresh}", **ONE_CLICK)).json() == {"ended": 1}
