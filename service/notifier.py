"""``python -m service.notifier``: the notifier process (the Procfile's ``notifier:`` line).

Layer: composition (entry point). Reads the same settings as the web process; any number may run (they
divide the work by leases in DynamoDB), and each reads the mail feedback queue if one is configured (SQS
hands each message to one reader). SIGINT or SIGTERM: finish the current tick, hand the leases back so
another notifier takes over at once, end the feedback queue's long-poll, and exit. The embedded default
runs a notifier inside ``python -m service`` instead, so this entry point needs AWS settings.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop

from service.aws.clients import open_clients
from service.logs import configure_logging
from service.metrics import Metrics
from service.settings import Settings, SettingsError
from service.wiring import build_feedback_consumer, build_notifier


async def run(settings: Settings) -> None:
    metrics = Metrics()
    async with open_clients(settings.aws, metrics) as clients:
        notifier = build_notifier(settings, clients, metrics=metrics)
        feedback = build_feedback_consumer(settings, clients, metrics)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await asyncio.gather(notifier.run_until_stopped(stop), *([feedback.run(stop)] if feedback is not None else []))


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if settings.backend == "embedded":
        sys.stderr.write(
            "error: the notifier process needs AWS settings; the embedded default (python -m service) "
            "runs its own notifier\n"
        )
        return 2
    if settings.notify.public_url is None:
        sys.stderr.write("error: set FILESYNC_PUBLIC_URL (the service's https URL, for unsubscribe links)\n")
        return 2
    configure_logging(settings.log_format, settings.log_level)
    uvloop.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
