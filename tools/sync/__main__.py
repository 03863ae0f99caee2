"""``python -m tools.sync``: the sync client people run.

    python -m tools.sync [--config DIR] signup --server URL USER [--email ADDRESS]  # password: env or prompt
    python -m tools.sync [--config DIR] login  --server URL USER
    python -m tools.sync [--config DIR] sync LOCAL_DIR [--namespace NS] [--watch] [--quiet]
    python -m tools.sync [--config DIR] share LOCAL_DIR|NS --with USER --role editor|viewer
    python -m tools.sync [--config DIR] history PATH
    python -m tools.sync [--config DIR] restore PATH --rev REV
    python -m tools.sync [--config DIR] status LOCAL_DIR
    python -m tools.sync [--config DIR] follow PATH ;  unfollow PATH      # emails about changes (a file or folder)
    python -m tools.sync [--config DIR] email ADDRESS | --remove          # where those emails go

``--config DIR`` holds one device's state (tokens, one state database per synced folder), so two devices
can run on one machine. Expected failures (wrong password, server down, a file the OS will not let us
read) print one sentence and exit non-zero; never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hashlib
import os
import platform
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from service.paths import normalize_path
from tools.sdk.errors import ApiError
from tools.sync.scan import scan, scan_stats
from tools.sync.state import StateDB

if TYPE_CHECKING:
    from tools.sdk.client import FileSyncClient
    from tools.sync.engine import SyncReport


class UserError(Exception):
    """Something the user can fix; the message says what."""


class Config:
    """The device's configuration directory: tokens and the synced folders' state databases."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.file = directory / "config.json"

    def load(self) -> dict[str, Any]:
        if not self.file.exists():
            raise UserError(f"not logged in (no {self.file}); run `python -m tools.sync login --server URL USER`")
        data: dict[str, Any] = orjson.loads(self.file.read_bytes())
        return data

    def save(self, data: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = self.file.with_suffix(".tmp")
        temp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        temp.chmod(0o600)
        os.replace(temp, self.file)

    def state_for(self, folder: Path) -> StateDB:
        name = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
        return StateDB(self.directory / "folders" / f"{name}.db")

    def folders(self) -> list[tuple[Path, StateDB]]:
        found = []
        for db_file in sorted((self.directory / "folders").glob("*.db")):
            state = StateDB(db_file)
            root = state.get("root")
            if root:
                found.append((Path(root), state))
            else:
                state.close()
        return found


def _password() -> str:
    from_env = os.environ.get("FILESYNC_PASSWORD")
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise UserError("no password: set FILESYNC_PASSWORD or run in a terminal")
    return getpass.getpass("Password: ")


class Progress:
    """Progress bars on stderr (tqdm), one per phase; silent with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self._quiet = quiet or not sys.stderr.isatty()
        self._bars: dict[str, Any] = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        if self._quiet or total == 0:
            return
        from tqdm import tqdm

        bar = self._bars.get(label)
        if bar is None:
            bar = self._bars[label] = tqdm(total=total, desc=label, unit="B", unit_scale=True, leave=False)
        bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


async def _session(config: Config) -> tuple[FileSyncClient, dict[str, Any]]:
    """A client with a valid access token: the saved one while it lasts, else a refreshed one."""
    from tools.sdk.client import FileSyncClient

    data = config.load()
    api = FileSyncClient(data["server"])
    await api.__aenter__()
    try:
        await _fresh_token(api, config, data)
    except BaseException:
        await api.__aexit__(None, None, None)
        raise
    return api, data


async def _fresh_token(api: FileSyncClient, config: Config, data: dict[str, Any]) -> None:
    if time.time() < data.get("access_expires_at", 0) - 30:
        api.token = data["access_token"]
        return
    try:
        tokens = await api.refresh(data["refresh_token"])
    except ApiError as exc:
        if exc.status == 401:
            raise UserError("the session has ended; run `python -m tools.sync login` again") from None
        raise
    data.update(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        access_expires_at=time.time() + tokens.expires_in,
    )
    config.save(data)


async def cmd_signup(args: argparse.Namespace, config: Config) -> int:
    from tools.sdk.client import FileSyncClient

    async with FileSyncClient(args.server) as api:
        password = _password()
        await api.sign_up(args.user, password, args.email)
        return await _log_in(api, args, config, password)


async def cmd_login(args: argparse.Namespace, config: Config) -> int:
    from tools.sdk.client import FileSyncClient

    async with FileSyncClient(args.server) as api:
        return await _log_in(api, args, config, _password())


async def _log_in(api: FileSyncClient, args: argparse.Namespace, config: Config, password: str) -> int:
    tokens = await api.log_in(args.user, password)
    previous = config.load() if config.file.exists() else {}
    config.save(
        {
            "server": args.server.rstrip("/"),
            "username": tokens.username,
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "access_expires_at": time.time() + tokens.expires_in,
            "device": args.device or previous.get("device") or platform.node() or "device",
        }
    )
    print(f"logged in to {args.server} as {tokens.username}")
    return 0


def quick_no_change(config: Config, root: Path) -> bool:
    """True when nothing changed on either side, found with one HTTP request and nothing heavier than
    the standard library: no local file differs from the state database by size or mtime, and the feed
    has nothing after our cursor. Anything else (or any doubt) says False and the full sync runs."""
    if not config.file.exists():
        return False
    data = config.load()
    if time.time() >= data.get("access_expires_at", 0) - 30:
        return False
    state = config.state_for(root)
    try:
        ns, cursor = state.get("namespace"), state.get("cursor")
        if not ns or not cursor:
            return False
        skipped: list[str] = []
        if not state.matches(scan_stats(root, skipped)) or skipped:
            return False
    finally:
        state.close()
    import urllib.error
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the configured service URL
        f"{data['server']}/v1/ns/{ns}/changes?cursor={cursor}&limit=1",
        headers={"Authorization": f"Bearer {data['access_token']}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            page = orjson.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return not page.get("changes")


async def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    from tools.sync.engine import SyncEngine

    root = Path(args.folder).resolve()
    if not root.is_dir():
        raise UserError(f"{args.folder} is not a folder")
    api, data = await _session(config)
    state = config.state_for(root)
    progress = Progress(args.quiet)
    try:
        ns = state.get("namespace")
        if args.namespace and ns and args.namespace != ns:
            raise UserError(f"{root} already syncs namespace {ns}; use another folder for {args.namespace}")
        ns = ns or args.namespace or (await api.account()).home_namespace
        state.set("namespace", ns)
        state.set("root", str(root))
        engine = SyncEngine(api, ns, root, state, device=data.get("device", "device"), progress=progress)
        if not args.watch:
            report = await engine.sync()
            progress.close()
            if not args.quiet:
                print(_summary(report))
            return 0
        async with _LocalWatch(root) as local:
            while True:
                local.changed.clear()  # whatever changes from here on is seen by the next round
                report = await engine.sync()
                progress.close()
                if not args.quiet:
                    print(_summary(report))
                await _fresh_token(api, config, data)
                await _wait_for_change(api, ns, state, local)
                await _fresh_token(api, config, data)
    finally:
        state.close()
        await api.__aexit__(None, None, None)


class _LocalWatch:
    """Watches the folder for the whole session, so a change made while a round runs is never missed.

    Our own downloads also show up here; they cost one more round that finds nothing to do.
    """

    def __init__(self, root: Path) -> None:
        import asyncio

        self.root = root
        self.changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _LocalWatch:
        import asyncio

        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _run(self) -> None:
        from watchfiles import awatch

        async for _ in awatch(self.root, debounce=500, step=100, stop_event=self._stop):
            self.changed.set()


async def _wait_for_change(api: FileSyncClient, ns: str, state: StateDB, local: _LocalWatch) -> None:
    """Until the server's feed moves past our cursor or a local file changes (debounced)."""
    import asyncio

    cursor = state.get("cursor") or "s0"

    async def remote() -> None:
        while True:
            page = await api.changes(ns, cursor, wait=30)
            if page.changes or page.cursor != cursor:
                return
            await asyncio.sleep(page.backoff_seconds)

    waiting = [asyncio.create_task(remote()), asyncio.create_task(local.changed.wait())]
    done, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in done:
        task.result()


def _summary(report: SyncReport) -> str:
    parts = [
        f"{report.uploaded} uploaded",
        f"{report.downloaded} downloaded",
        f"{report.deleted_local + report.deleted_remote} deleted",
        f"{report.conflicts} conflicts kept as copies",
    ]
    line = "synced: " + ", ".join(parts)
    if report.pending_conflicts:
        line += f"; {report.pending_conflicts} changed again meanwhile (run sync again)"
    for skipped in report.skipped:
        line += f"\nskipped {skipped}"
    return line


async def cmd_status(args: argparse.Namespace, config: Config) -> int:
    root = Path(args.folder).resolve()
    state = config.state_for(root)
    try:
        known = {e.key: e for e in state.entries()}
        skipped: list[str] = []
        changed, added = [], []
        seen = set()
        for item in scan(root, skipped):
            seen.add(item.key)
            before = known.get(item.key)
            if before is None:
                added.append(item.path)
            elif (before.size, before.mtime_ns) != (item.size, item.mtime_ns):
                changed.append(item.path)
        removed = [e.path for k, e in known.items() if k not in seen]
        print(f"{root}: namespace {state.get('namespace') or '(not synced yet)'}, {len(known)} files synced")
        for label, paths in (("new", added), ("modified", changed), ("deleted", removed)):
            for path in sorted(paths):
                print(f"  {label:9} {path}")
        for line in skipped:
            print(f"  skipped   {line}")
        if not (added or changed or removed):
            print("  nothing to upload")
        return 0
    finally:
        state.close()


def _locate(config: Config, target: str, allow_root: bool = False) -> tuple[str, str]:
    """(namespace, path in it) of a local file inside a synced folder ("" for the folder itself)."""
    absolute = Path(target).resolve()
    for root, state in config.folders():
        try:
            relative = absolute.relative_to(root)
        except ValueError:
            state.close()
            continue
        ns = state.get("namespace")
        state.close()
        if ns and allow_root and relative == Path():
            return ns, ""
        if ns:
            return ns, normalize_path(relative.as_posix(), "PATH")
    raise UserError(f"{target} is not inside a synced folder")


async def cmd_history(args: argparse.Namespace, config: Config) -> int:
    ns, path = _locate(config, args.path)
    api, _ = await _session(config)
    try:
        for version in await api.history(ns, path):
            kind = "deleted" if version.deleted else f"{version.size} bytes {version.content_hash[:12]}"
            print(f"rev {version.rev:4}  {version.committed_by:12}  {kind}")
        return 0
    finally:
        await api.__aexit__(None, None, None)


async def cmd_restore(args: argparse.Namespace, config: Config) -> int:
    ns, path = _locate(config, args.path)
    api, _ = await _session(config)
    try:
        result = await api.restore(ns, path, args.rev)
        if result.status != "committed" or result.file is None:
            raise UserError(f"not restored: {result.reason}")
        print(f"restored rev {args.rev} of {path} as rev {result.file.rev}; run sync to fetch it")
        return 0
    finally:
        await api.__aexit__(None, None, None)


async def cmd_share(args: argparse.Namespace, config: Config) -> int:
    ns = args.target
    folder = Path(args.target)
    if folder.is_dir():
        state = config.state_for(folder.resolve())
        ns = state.get("namespace") or ""
        state.close()
        if not ns:
            raise UserError(f"{args.target} is not synced yet; run sync first")
    api, _ = await _session(config)
    try:
        await api.share(ns, args.user, args.role)
        print(f"{args.user} is now {args.role} of namespace {ns}")
        return 0
    finally:
        await api.__aexit__(None, None, None)


async def cmd_follow(args: argparse.Namespace, config: Config) -> int:
    ns, path = _locate(config, args.path, allow_root=True)
    api, _ = await _session(config)
    try:
        if args.command == "follow":
            await api.follow(ns, path or None)
            account = await api.account()
            print(f"following {path or 'the whole folder'}")
            if not account.email:
                print("note: your account has no email address yet; set one with: email ADDRESS")
        else:
            await api.unfollow(ns, path or None)
            print(f"no longer following {path or 'the whole folder'}")
        return 0
    finally:
        await api.__aexit__(None, None, None)


async def cmd_email(args: argparse.Namespace, config: Config) -> int:
    if not args.remove and not args.address:
        raise UserError("give an ADDRESS, or --remove")
    api, _ = await _session(config)
    try:
        account = await api.set_email(None if args.remove else args.address, _password())
        print(f"notifications go to {account.email}" if account.email else "no notification emails")
        return 0
    finally:
        await api.__aexit__(None, None, None)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.sync", description="Sync a folder with the service.")
    default = os.environ.get("FILESYNC_CONFIG") or str(Path.home() / ".config" / "filesync")
    parser.add_argument("--config", default=default, help=f"this device's state directory (default {default})")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("signup", "login"):
        sub = commands.add_parser(name, help=f"{name} and remember the session")
        sub.add_argument("--server", required=True)
        sub.add_argument("--device", help="this device's name, used in conflicted copies (default: host name)")
        sub.add_argument("user")
        if name == "signup":
            sub.add_argument("--email", help="where change notifications go (optional)")
    sync = commands.add_parser("sync", help="sync a folder both ways")
    sync.add_argument("folder")
    sync.add_argument("--namespace", help="namespace id (default: your home namespace)")
    sync.add_argument("--watch", action="store_true", help="keep syncing as things change, until Ctrl-C")
    sync.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    status = commands.add_parser("status", help="what sync would upload (no network)")
    status.add_argument("folder")
    share = commands.add_parser("share", help="add someone to the namespace of a folder")
    share.add_argument("target", help="a synced folder or a namespace id")
    share.add_argument("--with", dest="user", required=True)
    share.add_argument("--role", choices=("owner", "editor", "viewer"), required=True)
    history = commands.add_parser("history", help="the versions of a file")
    history.add_argument("path")
    restore = commands.add_parser("restore", help="make an old version current again")
    restore.add_argument("path")
    restore.add_argument("--rev", type=int, required=True)
    for name, text in (("follow", "email me when it changes"), ("unfollow", "stop those emails")):
        commands.add_parser(name, help=f"{text} (a file, or a folder and everything in it)").add_argument("path")
    email = commands.add_parser("email", help="set where notifications go (password: FILESYNC_PASSWORD or a prompt)")
    email.add_argument("address", nargs="?")
    email.add_argument("--remove", action="store_true", help="no notification emails")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, Config], Coroutine[Any, Any, int]]] = {
    "signup": cmd_signup,
    "login": cmd_login,
    "sync": cmd_sync,
    "status": cmd_status,
    "share": cmd_share,
    "history": cmd_history,
    "restore": cmd_restore,
    "follow": cmd_follow,
    "unfollow": cmd_follow,
    "email": cmd_email,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = Config(Path(args.config))
    try:
        if args.command == "sync" and not args.watch and quick_no_change(config, Path(args.folder).resolve()):
            if not args.quiet:
                print("synced: nothing changed")
            return 0
        import uvloop

        return uvloop.run(COMMANDS[args.command](args, config))
    except KeyboardInterrupt:
        return 130
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        print(f"error: {exc.detail}" if exc.status == 0 else f"error: {exc.title}: {exc.detail}", file=sys.stderr)
        return 1
    except PermissionError as exc:
        print(f"error: permission denied: {exc.filename}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
