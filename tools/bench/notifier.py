"""Notifier throughput: changes processed per second, SES calls and DynamoDB requests per 1,000 changes.

A shared namespace with ``--followers`` members, each following the whole namespace with an email address,
receives ``--changes`` changes from another member (commits of ``--per-commit`` files, through the service).
Then a notifier starts in this process against the same emulator, with a 1 s window, and works until every
follower's digest was sent. Reported: changes per second from start to the last digest, SES ``SendRawEmail``
calls and DynamoDB requests per 1,000 changes. Baseline, measured in the same run: reading the same journal
entries straight from DynamoDB (the least any notifier must do), as a ratio.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import uvloop

from service.aws.clients import open_clients
from service.aws.files import DynamoJournal
from service.aws.identity import DynamoIdentityStore
from service.content import EMPTY_HASH
from service.metrics import Metrics
from service.settings import NotifySettings, Settings
from service.wiring import build_notifier
from tools.bench import BenchParser
from tools.bench.compare import sample
from tools.bench.harness import ProgressLine, stack
from tools.sdk.client import FileSyncClient

PASSWORD = "benchmark password"  # noqa: S105 - the benchmark's throwaway accounts


async def confirm_addresses(settings: Settings, usernames: list[str]) -> None:
    """Mark the followers' addresses confirmed, as following their confirmation links would (set-up, not
    measured: double opt-in mails no digest to an unconfirmed address)."""
    async with open_clients(settings.aws, Metrics()) as clients:
        store = DynamoIdentityStore(clients.dynamodb, settings.table)
        for name in usernames:
            user = await store.get_user(name)
            if user is None or user.email is None or user.email_nonce is None:
                raise RuntimeError(f"{name} has no address waiting for confirmation")
            await store.confirm_email(name, user.email, user.email_nonce)


async def run(followers: int, changes: int, per_commit: int) -> None:
    async with stack() as running:
        async with FileSyncClient(running.service, timeout=600) as author:
            await author.sign_up("author", PASSWORD)
            await author.log_in("author", PASSWORD)
            ns = (await author.create_namespace("Team")).id
            for i in range(followers):
                name = f"follower{i:04d}"
                async with FileSyncClient(running.service) as member:
                    await member.sign_up(name, PASSWORD, f"{name}@example.com")
                    await author.share(ns, name, "viewer")
                    await member.log_in(name, PASSWORD)
                    await member.follow(ns)
            await confirm_addresses(running.settings, [f"follower{i:04d}" for i in range(followers)])
            progress = ProgressLine("committing", changes, unit="changes")
            for start in range(0, changes, per_commit):
                count = min(per_commit, changes - start)
                entries = [
                    {"path": f"docs/f{start + j:07d}.txt", "content_hash": EMPTY_HASH, "size": 0, "mtime": 1.0}
                    for j in range(count)
                ]
                await author.commit(ns, entries)
                progress(count)

        settings = dataclasses.replace(
            running.settings,
            mail_from=running.settings.mail_from,
            notify=NotifySettings(window_seconds=1.0, tick_seconds=0.1, public_url="https://files.example.com"),
        )
        metrics = Metrics()
        async with open_clients(settings.aws, metrics) as clients:
            notifier = build_notifier(settings, clients)
            started = time.perf_counter()
            await notifier.tick()  # takes the whole backlog in (the window has not closed yet)
            fanned = time.perf_counter() - started
            fan_out_requests = sample(metrics.render().decode(), "filesync_aws_requests_total", service="dynamodb")
            while notifier.sent < followers:
                await notifier.tick()
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
            await notifier.release()
        text = metrics.render().decode()
        ses_calls = sample(text, "filesync_aws_requests_total", service="ses", operation="SendRawEmail")
        dynamodb = sample(text, "filesync_aws_requests_total", service="dynamodb")

        async with open_clients(settings.aws, Metrics()) as clients:
            journal = DynamoJournal(clients.dynamodb, settings.table)
            bare_started = time.perf_counter()
            after, seen = 0, 0
            while entries_page := await journal.since(ns, after, 100):
                after = entries_page[-1].seq
                seen += sum(len(e.changes) for e in entries_page)
            bare = time.perf_counter() - bare_started

    per_k = 1000 / changes
    print(f"notifier: {changes} changes to {followers} followers, all digests sent in {elapsed:.2f} s")
    print(f"  fan-out: {changes / fanned:,.0f} changes/s into {followers} digests ({fanned:.3f} s for the backlog)")
    print(f"  end to end: {changes / elapsed:,.0f} changes/s (the 1 s window included)")
    print(f"  SES SendRawEmail: {ses_calls:.0f} calls = {ses_calls * per_k:.1f} per 1,000 changes")
    print(
        f"  DynamoDB requests: {fan_out_requests:.0f} for the fan-out = {fan_out_requests * per_k:.1f} per 1,000 "
        f"changes; {dynamodb:.0f} in all, with leases and polling while the window ran"
    )
    print(f"  baseline: reading the {seen} changes from the journal alone: {bare:.3f} s")
    print(f"  fan-out / bare journal read: {fanned / bare:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = BenchParser("python -m tools.bench notifier", __doc__)
    parser.add_argument("--followers", type=int, default=50)
    parser.add_argument("--changes", type=int, default=5000)
    parser.add_argument("--per-commit", type=int, default=50)
    args = parser.parse_args(argv)
    uvloop.run(run(args.followers, args.changes, args.per_commit))
    return 0
