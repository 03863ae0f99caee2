"""``python -m service``: run the service, or administer it (``python -m service users|folders ...``).

With no AWS settings in the environment it starts the embedded default (moto's server in-process,
provisioned), prints the service's URL and the emulator's endpoint, and serves until Ctrl-C or SIGTERM,
then drains in-flight requests and stops. With AWS settings it uses them and provisions nothing.

Layer: composition (entry point).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import socket
import sys

import uvloop
from aiohttp import web

from service import admin
from service.app import create_app, make_runner
from service.embedded import EmulatorError, provision_emulator, run_emulator
from service.logs import configure_logging
from service.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Run the file sync service (embedded emulator unless AWS is configured), or administer it.",
        epilog="Settings come from the environment (FILESYNC_*, AWS_*; the Configuration table of "
        "docs/operations.md): with no AWS settings the service starts an embedded emulator and provisions it. "
        "Exit codes: 0 stopped cleanly (Ctrl-C or SIGTERM drain in-flight requests first), 1 failed, "
        "2 bad usage or settings (the message names the variable).",
    )
    parser.add_argument("--host", help="address to listen on (default: FILESYNC_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on, 0 for any free one (default: PORT or 8080)")
    commands = parser.add_subparsers(dest="command", metavar="{users,folders}")
    users = commands.add_parser("users", help="manage accounts (needs AWS settings)")
    actions = users.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create an account; the password comes from FILESYNC_PASSWORD or a prompt")
    add.add_argument("name", metavar="NAME", help="the username")
    for action, text in (("disable", "disable an account and end its sessions"), ("enable", "enable it")):
        actions.add_parser(action, help=text).add_argument("name", metavar="NAME", help="the username")
    quota = actions.add_parser(
        "quota", help="set an account's storage quota (bytes of retained versions); prints it and the usage"
    )
    quota.add_argument("name", metavar="NAME", help="the username")
    quota.add_argument(
        "size", help="bytes, or with a unit (500MB, 10GiB); 0 or 'unlimited': no limit; 'default': the default"
    )
    folders = commands.add_parser(
        "folders", help="maintain the folder markers and the children index (needs AWS settings)"
    )
    folder_actions = folders.add_subparsers(dest="action", required=True)
    backfill = folder_actions.add_parser(
        "backfill", help="write the markers and children-index entries of files committed before the service kept them"
    )
    backfill.add_argument("namespaces", nargs="+", metavar="NS", help="namespace id")
    return parser


def _url(address: object) -> str:
    host, port = address[:2] if isinstance(address, tuple) else (str(address), 0)
    host = f"[{host}]" if ":" in str(host) else host
    return f"http://{host}:{port}"


async def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM; start and provision the emulator first if embedded."""
    with contextlib.ExitStack() as stack:
        emulator = None
        if settings.backend == "embedded":
            emulator = stack.enter_context(run_emulator())
            settings = await provision_emulator(settings.for_emulator(emulator), mail_feedback=True)
        # Bound before the app starts, so the app knows its own URL (for links in emails) even on port 0.
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        sock = socket.create_server((settings.host, settings.port), family=family)
        stack.callback(sock.close)
        url = _url(sock.getsockname())
        if settings.notify.public_url is None:
            settings = dataclasses.replace(settings, notify=dataclasses.replace(settings.notify, public_url=url))
        runner = make_runner(create_app(settings))
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            lines = [f"filesync serving on {url}"]
            if emulator:
                lines.append(f"embedded AWS emulator at {emulator} (data lives as long as this process)")
            lines.append("press Ctrl-C to stop")
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        # The administration commands act on the table (and the upload role) only: no signing secret.
        settings = Settings.from_env(signs_tokens=args.command not in ("users", "folders"))
    except SettingsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    settings = dataclasses.replace(
        settings,
        host=settings.host if args.host is None else args.host,
        port=settings.port if args.port is None else args.port,
    )
    configure_logging(settings.log_format, settings.log_level)
    if args.command == "users":
        return admin.run_users_command(settings, args.action, args.name, getattr(args, "size", None))
    if args.command == "folders":
        return admin.run_folders_command(settings, args.namespaces)
    # uvloop, as under gunicorn's uvloop worker in production: faster transports for the same code.
    try:
        uvloop.run(serve(settings))
    except EmulatorError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
