"""``python -m tools.sync``: the sync client people run.

    python -m tools.sync [--config DIR] signup --server URL USER [--email ADDRESS]  # password: env or prompt
    python -m tools.sync [--config DIR] login  --server URL USER
    python -m tools.sync [--config DIR] sync FOLDER [--namespace NS] [--watch] [--quiet]
    python -m tools.sync [--config DIR] relink FOLDER [--namespace NS]   # attach afresh after the server forgot it
    python -m tools.sync [--config DIR] status FOLDER [--ignored]
    python -m tools.sync [--config DIR] namespaces [list | create NAME | show NS]
    python -m tools.sync [--config DIR] members add NS USER [--role ROLE] ;  members remove NS USER
    python -m tools.sync [--config DIR] share FOLDER|NS --with USER --role ROLE   # = members add
    python -m tools.sync [--config DIR] history PATH
    python -m tools.sync [--config DIR] restore PATH --rev REV
    python -m tools.sync [--config DIR] follow PATH ;  unfollow PATH      # emails about changes (a file or folder)
    python -m tools.sync [--config DIR] email ADDRESS | --remove          # where those emails go
    python -m tools.sync [--config DIR] usage                              # storage used, and the quota
    python -m tools.sync [--config DIR] trash list PATH ;  trash restore PATH... [--folder]   # deleted files

``--config DIR`` holds one device's state (tokens, one state database per synced folder), so two devices
can run on one machine. ``main`` is the one place failures end: ``tools.sync.failures`` turns each into an
exit code and one line that says what failed and what to do (never a traceback); its docstring lists the
exit codes. A server that forgot this device (an embedded server keeps nothing across restarts) is
recognised: the line names the command that mends it (``login``, ``signup``, ``relink``). An item a sync
cannot sync (a symlink, a name another platform cannot hold, an unreadable file, ...) is left alone and
named with its reason, in the summary and in ``status``; the rest syncs, and the exit code says so (3).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hashlib
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from service.paths import normalize_path, path_key
from tools.sdk.errors import ApiError, NotFound, Unauthenticated, is_transient
from tools.sync.failures import (
    EXIT_CODES_HELP,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SKIPPED,
    Context,
    Guidance,
    UserError,
    explain,
    unexpected,
)
from tools.sync.ignore import IgnoreRules
from tools.sync.localfs import Folder, display
from tools.sync.scan import Issue, scan, scan_stats
from tools.sync.state import NOT_SYNCED, ROUND_KINDS, IssueRow, StateDB

if TYPE_CHECKING:
    from service.wire import NamespaceSummary
    from tools.sdk.client import FileSyncClient
    from tools.sync.engine import SyncEngine, SyncReport
    from tools.sync.headstart import HeadStart

#: The name in help and in the commands this CLI suggests: ``filesync`` as the installed console script.
PROG = "filesync" if Path(sys.argv[0]).name == "filesync" else "python -m tools.sync"
DEFAULT_CONFIG = Path.home() / ".config" / "filesync"


class Config:
    """The device's configuration directory: tokens and the synced folders' state databases."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.file = directory / "config.json"

    def load(self) -> dict[str, Any]:
        if not self.file.exists():
            raise UserError(f"not logged in (no {self.file}); run `{self.command('login', '--server', 'URL', 'USER')}`")
        data: dict[str, Any] = orjson.loads(self.file.read_bytes())
        return data

    def save(self, data: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = self.file.with_suffix(".tmp")
        temp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
        temp.chmod(0o600)
        os.replace(temp, self.file)

    def state_path(self, folder: Path) -> Path:
        name = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
        return self.directory / "folders" / f"{name}.db"

    def state_for(self, folder: Path) -> StateDB:
        return StateDB(self.state_path(folder))

    def forget_state(self, folder: Path) -> None:
        """Drop everything this device knew about syncing ``folder`` (never the folder's files)."""
        database = self.state_path(folder)
        for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm"), Path(f"{database}-journal")):
            path.unlink(missing_ok=True)

    def command(self, *args: str) -> str:
        """A command line of this CLI as the user would type it (with this ``--config`` unless the default)."""
        words = [PROG]
        default = Path(os.environ.get("FILESYNC_CONFIG") or DEFAULT_CONFIG)
        if self.directory.resolve() != default.resolve():
            words += ["--config", str(self.directory)]
        return " ".join([*words, *(shlex.quote(a) for a in args)])

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


def server_url(text: str) -> str:
    """The service's base URL from ``--server``. Without a scheme, a loopback host (``localhost``,
    ``127.x.x.x``, ``::1``) means ``http://`` (the embedded default serves plain HTTP there) and any other
    host ``https://``; anything that is not an http(s) URL with a host and a valid port is refused."""
    given = text.strip()
    if not given:
        raise UserError("--server is empty; give the service's URL, e.g. http://127.0.0.1:8080")
    url = given if "://" in given else f"{'http' if _loopback(given) else 'https'}://{given}"
    problem = ""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number from 0 to 65535
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            problem = f"the scheme must be http or https, not {parts.scheme!r}"
        elif not parts.hostname:
            problem = "it names no host"
        elif port == 0:
            problem = "port 0 is not a port a server listens on"
        elif parts.query or parts.fragment or parts.username or parts.password:
            problem = "give the base URL alone: no user, query or fragment"
    if problem:
        raise UserError(f"--server {given!r} is not a server URL ({problem}); e.g. http://127.0.0.1:8080")
    return url.rstrip("/")


def _loopback(hostport: str) -> bool:
    host = urlsplit(f"//{hostport}").hostname or ""
    return host == "localhost" or host.endswith(".localhost") or host == "::1" or host.startswith("127.")


class SessionEnded(Guidance):
    def __init__(self, config: Config, data: dict[str, Any]) -> None:
        server, user = data["server"], data.get("username", "USER")
        super().__init__(
            f"the server at {server} no longer accepts this device's session for {user} (it ended or was revoked,"
            " or the server forgot the account: an embedded server keeps nothing when it restarts); log in again"
            f" with `{config.command('login', '--server', server, user)}`; if the server has no such account any"
            f" more, create it with `{config.command('signup', '--server', server, user)}`, then attach each"
            f" synced folder afresh with `{config.command('relink', 'FOLDER')}`"
        )


class NamespaceGone(Guidance):
    def __init__(self, config: Config, server: str, ns: str, root: Path) -> None:
        super().__init__(
            f"the server at {server} no longer knows this folder's namespace {ns} (it was deleted, you were removed"
            " from it, or an embedded server restarted and forgot it); run"
            f" `{config.command('relink', str(root))}` to attach the folder afresh to your home namespace"
            " (or add `--namespace NS` for another) and upload what is here; no local file is lost"
        )


@contextlib.asynccontextmanager
async def _session(config: Config) -> AsyncIterator[tuple[FileSyncClient, dict[str, Any]]]:
    """The one way a command opens (and closes) the service client with the saved session: its access
    token while it lasts, renewed with the refresh token before it expires or when the server refuses it.
    A refresh the server refuses ends in ``SessionEnded``; ``main`` maps every failure to its exit code."""
    from tools.sdk.client import FileSyncClient

    data = config.load()

    async def renew(api: FileSyncClient) -> None:
        try:
            tokens = await api.refresh(data["refresh_token"])
        except Unauthenticated:
            raise SessionEnded(config, data) from None
        data.update(
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            access_expires_at=time.time() + tokens.expires_in,
        )
        config.save(data)

    async with FileSyncClient(data["server"], renew_session=renew) as api:
        if time.time() < data.get("access_expires_at", 0) - 30:
            api.token = data["access_token"]
        else:
            await renew(api)
        yield api, data


async def cmd_signup(args: argparse.Namespace, config: Config) -> int:
    from tools.sdk.client import FileSyncClient

    server = server_url(args.server)
    async with FileSyncClient(server) as api:
        password = _password()
        await api.sign_up(args.user, password, args.email)
        return await _log_in(api, args, config, server, password)


async def cmd_login(args: argparse.Namespace, config: Config) -> int:
    from tools.sdk.client import FileSyncClient

    server = server_url(args.server)
    async with FileSyncClient(server) as api:
        return await _log_in(api, args, config, server, _password())


async def _log_in(api: FileSyncClient, args: argparse.Namespace, config: Config, server: str, password: str) -> int:
    try:
        tokens = await api.log_in(args.user, password)
    except Unauthenticated:
        raise Guidance(
            f"the server at {server} refused the password for {args.user}: a wrong password, or no such account"
            " (an embedded server forgets its accounts when it restarts); to create the account there, run"
            f" `{config.command('signup', '--server', server, args.user)}`"
        ) from None
    previous = config.load() if config.file.exists() else {}
    config.save(
        {
            "server": server,
            "username": tokens.username,
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "access_expires_at": time.time() + tokens.expires_in,
            "device": args.device or previous.get("device") or platform.node() or "device",
        }
    )
    print(f"logged in to {server} as {tokens.username}")
    await _folders_to_relink(api, config)
    return 0


async def _folders_to_relink(api: FileSyncClient, config: Config) -> None:
    """After a log-in: name the folders synced on this device whose namespace this account does not have
    (the server forgot it, or this is another account), each with the command that attaches it afresh."""
    known = {n.id for n in await api.namespaces()}
    stale = []
    for root, state in config.folders():
        ns = state.get("namespace")
        state.close()
        if ns and ns not in known:
            stale.append(root)
    if stale:
        print(
            f"note: {len(stale)} folder(s) synced on this device belong to a namespace this account does not have"
            " on this server (an embedded server forgets everything when it restarts); attach each afresh,"
            " keeping its files, with:"
        )
        for root in stale:
            print(f"  {config.command('relink', str(root))}")


def quick_no_change(config: Config, root: Path, namespace: str | None = None) -> bool:
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
        if not ns or not cursor or namespace not in (None, ns):
            return False
        issues: list[Issue] = []
        if not state.matches(scan_stats(root, issues, IgnoreRules.load(Folder(root)), state.spelling), issues):
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


def _folder(text: str) -> Path:
    root = Path(text).resolve()
    if not root.is_dir():
        raise UserError(f"{text} is not a folder")
    return root


async def cmd_sync(args: argparse.Namespace, config: Config) -> int:
    from tools.sync.headstart import HeadStart

    root = _folder(args.folder)
    # Large changed files are hashed while the rest of the client starts (its HTTP stack, its session).
    head_start = HeadStart.begin(root, config.state_path(root))
    try:
        return await _sync_folder(args, config, root, head_start)
    finally:
        head_start.stop()


async def _sync_folder(args: argparse.Namespace, config: Config, root: Path, head_start: HeadStart) -> int:
    async with _session(config) as (api, data):
        state = config.state_for(root)
        try:
            ns = state.get("namespace")
            wanted = (await _namespace(api, config, args.namespace)).id if args.namespace else None
            if wanted and ns and wanted != ns:
                raise UserError(
                    f"{root} already syncs namespace {ns}; sync {wanted} into another folder, or attach this one"
                    f" to it instead with `{config.command('relink', str(root), '--namespace', wanted)}` (its"
                    " files stay and are uploaded there)"
                )
            ns = ns or wanted or (await api.account()).home_namespace
            state.set("namespace", ns)
            state.set("root", str(root))
            return await _synced(api, config, data, root, ns, state, args.quiet, args.watch, head_start)
        finally:
            state.close()


async def cmd_relink(args: argparse.Namespace, config: Config) -> int:
    """Attach a folder afresh: forget what was synced (revs, cursor, namespace, uploads in progress),
    keep every local file, and sync both ways as a first sync does (a file that differs on both sides
    keeps both versions, the local one as a conflicted copy)."""
    root = _folder(args.folder)
    async with _session(config) as (api, data):
        target = await _namespace(api, config, args.namespace) if args.namespace else None
        ns = target.id if target else (await api.account()).home_namespace
        before = config.state_for(root)
        old, synced = before.get("namespace"), before.count()
        before.close()
        config.forget_state(root)
        state = config.state_for(root)
        try:
            state.set("namespace", ns)
            state.set("root", str(root))
            was = f" (it synced {old} before)" if old and old != ns else ""
            print(
                f"{root} is now attached to namespace {ns}{was}; forgot the {synced} files synced before, kept"
                " every local file; syncing both ways"
            )
            return await _synced(api, config, data, root, ns, state, args.quiet, watch=False)
        finally:
            state.close()


async def _synced(
    api: FileSyncClient,
    config: Config,
    data: dict[str, Any],
    root: Path,
    ns: str,
    state: StateDB,
    quiet: bool,
    watch: bool,
    head_start: HeadStart | None = None,
) -> int:
    """Sync ``root`` with ``ns`` once (or, with ``watch``, until interrupted); a namespace the server no
    longer knows ends in ``NamespaceGone``."""
    from tools.sync.engine import SyncEngine

    progress = Progress(quiet)
    engine = SyncEngine(
        api, ns, root, state, device=data.get("device", "device"), progress=progress, head_start=head_start
    )
    try:
        if watch:
            await _watch(engine, api, ns, root, state, progress, quiet, Context("watch", data["server"], root))
            return EXIT_OK
        report = await _round(engine, state)
    except NotFound as exc:
        if exc.problem is None:  # the storage's 404 (an object), not the service's
            raise
        raise NamespaceGone(config, data["server"], ns, root) from None
    finally:
        progress.close()
    if not quiet:
        print(_summary(report))
    return EXIT_SKIPPED if report.skipped else EXIT_OK


async def _round(engine: SyncEngine, state: StateDB) -> SyncReport:
    """One sync, counted in the state database (``rounds``), so a watcher's progress can be followed."""
    report = await engine.sync()
    state.set("rounds", str(int(state.get("rounds") or 0) + 1))
    return report


async def _watch(
    engine: SyncEngine,
    api: FileSyncClient,
    ns: str,
    root: Path,
    state: StateDB,
    progress: Progress,
    quiet: bool,
    context: Context,
) -> None:
    """Sync, wait for a change on either side, sync again: until interrupted. Each line carries the time;
    a round that did nothing prints nothing. The server stopping or failing does not end the watch: the
    line says so and the round is tried again after a backoff (at most a minute)."""
    import asyncio

    from tools.sdk.retry import backoff

    def say(text: str, stream: Any = sys.stdout) -> None:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        print("\n".join(f"{stamp} {line}" for line in text.splitlines()), file=stream, flush=True)

    if not quiet:
        say(f"watching {root} (namespace {ns}); Ctrl-C stops")
    failures = 0
    reported_skips: list[IssueRow] = []
    async with _LocalWatch(root) as local:
        while True:
            local.changed.clear()  # whatever changes from here on is seen by the next round
            try:
                report = await _round(engine, state)
                progress.close()
                if failures and not quiet:
                    say("the server answers again")
                failures = 0
                news = report.changed or report.pending_conflicts or report.skipped != reported_skips
                if news and not quiet:
                    say(_summary(report))
                reported_skips = report.skipped
                await _wait_for_change(api, ns, state, local)
            except ApiError as exc:
                if not is_transient(exc):
                    raise
                # The SDK already retried for a few seconds: start at 1.6 s, double up to a minute.
                delay = backoff(failures + 3, cap=60.0)
                failures += 1
                explained = explain(exc, context)
                say(f"error: {explained[1] if explained else exc} in {delay:.1f} s", sys.stderr)
                await asyncio.sleep(delay)


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
        *([f"{report.moved} moved"] if report.moved else []),
        f"{report.conflicts} conflicts kept as copies",
    ]
    line = "synced: " + ", ".join(parts)
    if report.pending_conflicts:
        line += f"; {report.pending_conflicts} changed again meanwhile (run sync again)"
    for copy in report.conflicted_copies:
        line += f"\nconflict: both sides changed a file; this device's version is kept as {copy}"
    return "\n".join([line, *_issue_lines(report.skipped, report.notes)])


def _issue_lines(skipped: list[IssueRow], notes: list[IssueRow]) -> list[str]:
    """What did not sync, one line an item with its reason (left alone here until it resolves)."""
    lines = []
    if skipped:
        lines.append(f"{len(skipped)} items not synced (left as they are; `status` lists them too):")
    lines.extend(f"skipped {issue.local}: {issue.reason}" for issue in skipped)
    lines.extend(f"not synced {issue.local}: {issue.reason}" for issue in notes)
    return lines


def _quick_summary(config: Config, root: Path, quiet: bool) -> int:
    """A sync that found nothing changed: the items the last round could not sync are still not synced."""
    state = config.state_for(root)
    try:
        skipped, notes = state.issues(NOT_SYNCED), state.issues(["note"])
    finally:
        state.close()
    if not quiet:
        print("\n".join(["synced: nothing changed", *_issue_lines(skipped, notes)]))
    return EXIT_SKIPPED if skipped else EXIT_OK


async def cmd_status(args: argparse.Namespace, config: Config) -> int:
    """What a sync would upload, and what does not sync and why: the items the scan finds now, and those
    the last sync could not read, upload or place (kept in the state database until they resolve)."""
    root = _folder(args.folder)
    state = config.state_for(root)
    try:
        known = {e.key: e for e in state.entries()}
        last_round = state.issues(ROUND_KINDS)
        refused = {row.key for row in last_round if row.kind != "unplaced"}
        changed, added = [], []
        issues: list[Issue] = []
        seen = set()
        for key, _, local, size, mtime_ns, _ in scan(root, issues, IgnoreRules.load(Folder(root)), state.spelling):
            seen.add(key)
            before = known.get(key)
            if key in refused:
                continue  # listed below with the reason the last sync gave
            if before is None:
                added.append(local)
            elif (before.size, before.mtime_ns) != (size, mtime_ns):
                changed.append(local)
        holders = {i.key for i in issues if i.kind in ("skipped", "ignored")}
        removed = [e.local for k, e in known.items() if k not in seen and not _held(k, holders)]
        print(f"{root}: namespace {state.get('namespace') or '(not synced yet)'}, {len(known)} files synced")
        for label, paths in (("new", added), ("modified", changed), ("deleted", removed)):
            for path in sorted(paths):
                print(f"  {label:9} {display(path)}")
        for issue in sorted([i for i in issues if i.kind == "skipped"], key=lambda i: i.local):
            print(f"  skipped   {issue.local}: {issue.reason}")
        for row in last_round:
            print(f"  skipped   {row.local}: {row.reason} (at the last sync)")
        for issue in sorted([i for i in issues if i.kind == "note"], key=lambda i: i.local):
            print(f"  not synced {issue.local}: {issue.reason}")
        ignored = sorted([i for i in issues if i.kind == "ignored"], key=lambda i: i.local)
        if args.ignored:
            for issue in ignored:
                print(f"  ignored   {issue.local}: {issue.reason}")
        elif ignored:
            print(f"  {len(ignored)} ignored (status --ignored lists them)")
        if not (added or changed or removed):
            print("  nothing to upload")
        return EXIT_OK
    finally:
        state.close()


def _held(key: str, holders: set[str]) -> bool:
    """Whether ``key`` is, or is under, an item the scan skipped or ignored (so not a deletion)."""
    parts = key.split("/")
    return any("/".join(parts[:depth]) in holders for depth in range(1, len(parts) + 1))


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
    async with _session(config) as (api, _):
        versions = await api.history(ns, path)
        width = max((len(v.committed_by) for v in versions), default=0)
        for version in versions:
            when = datetime.fromtimestamp(version.committed_at).strftime("%Y-%m-%d %H:%M:%S")
            kind = "deleted" if version.deleted else f"{version.size} bytes  {version.content_hash[:12]}"
            moved = f"  (moved from {version.moved_from})" if version.moved_from else ""
            print(f"rev {version.rev:4}  {when}  {version.committed_by:{width}}  {kind}{moved}")
        return 0


def _bytes(count: int) -> str:
    """A byte count as people read it (binary units, as the OS shows sizes)."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


async def cmd_usage(args: argparse.Namespace, config: Config) -> int:
    async with _session(config) as (api, _):
        account = await api.account()
    storage = account.storage
    if storage is None:
        raise UserError("this server does not report storage usage")
    if storage.quota == 0:
        print(f"{_bytes(storage.used)} used ({storage.used:,} bytes); no quota")
    else:
        share = storage.used / storage.quota * 100
        print(
            f"{_bytes(storage.used)} of {_bytes(storage.quota)} used ({share:.1f}%; {storage.used:,} of "
            f"{storage.quota:,} bytes)"
        )
    print("every version your namespaces keep counts, including old versions and those of shared namespaces you own")
    return 0


async def cmd_trash(args: argparse.Namespace, config: Config) -> int:
    async with _session(config) as (api, _):
        if args.action == "list":
            ns, path = _locate(config, args.path, allow_root=True)
            under = path_key(path) if path else None
            shown = 0
            async for entry in api.trash(ns):
                key = path_key(entry.path)
                if under is not None and key != under and not key.startswith(under + "/"):
                    continue
                when = datetime.fromtimestamp(entry.committed_at).strftime("%Y-%m-%d %H:%M:%S")
                print(f"{when}  {entry.committed_by}  {entry.path}")
                shown += 1
            print(f"{shown} deleted files" + (f" under {path}" if path else "") + "; restore with: trash restore PATH")
            return 0
        if len(args.paths) > 1000:
            raise UserError("restore at most 1,000 paths at a time (or their folder, with --folder)")
        located = [_locate(config, target, allow_root=args.folders) for target in args.paths]
        namespaces = {ns for ns, _ in located}
        if len(namespaces) != 1:
            raise UserError("restore files of one synced folder at a time")
        ns = namespaces.pop()
        answers = (
            [await api.restore_deleted(ns, folder=folder) for _, folder in located]
            if args.folders
            else [await api.restore_deleted(ns, paths=[p for _, p in located])]
        )
        results = [r for answer in answers for r in answer.results]
        restored = sum(r.status == "committed" for r in results)
        problems = [f"{r.path}: {r.reason}" for r in results if r.status != "committed"]
        print(f"restored {restored} files; run sync to fetch them")
        for line in problems:
            print(f"not restored: {line}", file=sys.stderr)
        return 3 if problems else 0


async def cmd_restore(args: argparse.Namespace, config: Config) -> int:
    ns, path = _locate(config, args.path)
    async with _session(config) as (api, _):
        result = await api.restore(ns, path, args.rev)
        if result.status != "committed" or result.file is None:
            raise UserError(f"not restored: {result.reason}")
        print(f"restored rev {args.rev} of {path} as rev {result.file.rev}; run sync to fetch it")
        return 0


async def _namespace(api: FileSyncClient, config: Config, target: str) -> NamespaceSummary:
    """One of the caller's namespaces, named by its id, by a synced folder, or by its name (when no other
    of the caller's namespaces has it)."""
    folder = Path(target)
    ns = target
    if folder.is_dir():
        state = config.state_for(folder.resolve())
        ns = state.get("namespace") or ""
        state.close()
        if not ns:
            raise UserError(f"{target} is not synced yet; run `{config.command('sync', target)}` first")
    mine = await api.namespaces()
    by_id = [n for n in mine if n.id == ns]
    by_name = [n for n in mine if n.name == ns]
    if by_id or len(by_name) == 1:
        return (by_id or by_name)[0]
    if by_name:
        ids = ", ".join(n.id for n in by_name)
        raise UserError(f"{len(by_name)} of your namespaces are named {ns!r} ({ids}); give its id")
    raise UserError(f"you have no namespace {ns!r} on this server; `{config.command('namespaces')}` lists yours")


async def cmd_namespaces(args: argparse.Namespace, config: Config) -> int:
    async with _session(config) as (api, _):
        if args.action == "create":
            made = await api.create_namespace(args.name)
            print(f"created namespace {made.id} ({made.name!r}); you are its owner. Next:")
            print(f"  {config.command('sync', 'FOLDER', '--namespace', made.id)}      # sync a folder with it")
            print(f"  {config.command('members', 'add', made.id, 'USER', '--role', 'editor')}   # share it")
            return 0
        local: dict[str, list[str]] = {}
        for synced, state in config.folders():
            local.setdefault(state.get("namespace") or "", []).append(str(synced))
            state.close()
        if args.action == "show":
            ns = await _namespace(api, config, args.namespace)
            detail = await api.namespace(ns.id)
            created = datetime.fromtimestamp(detail.created_at).strftime("%Y-%m-%d %H:%M:%S")
            print(f"namespace {detail.id}  {detail.name!r}  ({detail.kind})")
            print(f"  created by {detail.created_by} on {created}; your role: {detail.role}")
            print("  members:")
            width = max(len(m.username) for m in detail.members)
            for member in sorted(detail.members, key=lambda m: m.username):
                print(f"    {member.username:{width}}  {member.role}")
            for where in local.get(detail.id, []):
                print(f"  synced here in {where}")
            return 0
        namespaces = await api.namespaces()
        rows = [("ID", "KIND", "ROLE", "NAME", "SYNCED HERE IN")] + [
            (n.id, n.kind, n.role, n.name, ", ".join(local.get(n.id, [])) or "-") for n in namespaces
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])
        return 0


async def cmd_members(args: argparse.Namespace, config: Config) -> int:
    """``members add|remove`` (and ``share``, the same as ``members add``)."""
    async with _session(config) as (api, _):
        ns = await _namespace(api, config, args.target)
        if ns.kind == "home":
            role = getattr(args, "role", None) or "editor"  # members remove has none
            what = f"{args.target} syncs your home namespace" if Path(args.target).is_dir() else f"{ns.id} is a home"
            raise UserError(
                f"{what}, which is yours alone and cannot be shared; share a namespace of its own instead:"
                f" `{config.command('namespaces', 'create', 'NAME')}`, sync a folder with it"
                f" (`{config.command('sync', 'FOLDER', '--namespace', 'ID')}`), then"
                f" `{config.command('members', 'add', 'ID', args.user, '--role', role)}`"
            )
        if args.command == "members" and args.action == "remove":
            await api.remove_member(ns.id, args.user)
            print(f"{args.user} is no longer a member of namespace {ns.id} ({ns.name!r})")
            return 0
        member = await api.set_member(ns.id, args.user, args.role)
        print(f"{member.username} is now {member.role} of namespace {ns.id} ({ns.name!r})")
        return 0


async def cmd_follow(args: argparse.Namespace, config: Config) -> int:
    ns, path = _locate(config, args.path, allow_root=True)
    async with _session(config) as (api, _):
        if args.command == "follow":
            await api.follow(ns, path or None)
            account = await api.account()
            print(f"following {path or 'the whole folder'}")
            if not account.email:
                print("note: your account has no email address yet; set one with: email ADDRESS")
            elif not account.email_confirmed:
                print(f"note: {account.email} is not confirmed yet; open the link mailed to it (or set it again)")
        else:
            await api.unfollow(ns, path or None)
            print(f"no longer following {path or 'the whole folder'}")
        return 0


async def cmd_email(args: argparse.Namespace, config: Config) -> int:
    if not args.remove and not args.address:
        raise UserError("give an ADDRESS, or --remove")
    async with _session(config) as (api, _):
        account = await api.set_email(None if args.remove else args.address, _password())
        if not account.email:
            print("no notification emails")
        elif account.email_confirmed:
            print(f"notifications go to {account.email}")
        else:
            print(
                f"notifications go to {account.email} once it is confirmed: open the link just mailed there"
                " (nothing else is sent to it until then)"
            )
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Sync a folder with the service; share namespaces; see and restore versions.",
        epilog=f"{EXIT_CODES_HELP}\n\n"
        "environment:\n"
        "  FILESYNC_PASSWORD  the password for signup, login and email (else a prompt)\n"
        "  FILESYNC_CONFIG    the default --config directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    default = os.environ.get("FILESYNC_CONFIG") or str(DEFAULT_CONFIG)
    parser.add_argument("--config", default=default, help=f"this device's state directory (default {default})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, does in (("signup", "create an account"), ("login", "log in")):
        sub = commands.add_parser(name, help=f"{does} and remember the session on this device")
        sub.add_argument(
            "--server",
            required=True,
            help="the service's URL; without a scheme, http:// for localhost and 127.x.x.x, else https://",
        )
        sub.add_argument("--device", help="this device's name, used in conflicted copies (default: host name)")
        sub.add_argument("user", help="the username")
        if name == "signup":
            sub.add_argument("--email", help="where change notifications go (optional)")
    sync = commands.add_parser(
        "sync",
        help="sync a folder both ways",
        description=(
            "Sync a folder both ways. Symlinks are never followed. An item that cannot sync (a symlink, a\n"
            "special file, a name another platform cannot hold, a case or Unicode twin, an unreadable file, a\n"
            "path too long, a server file that cannot be placed here) is left alone and named with its reason;\n"
            "the rest syncs. Names the built-in rules (.DS_Store, Thumbs.db, ~$*, *.swp, *.tmp, ...) or the\n"
            "folder's .filesyncignore (gitignore syntax) match are not synced either way. A file or folder\n"
            "renamed here is moved on the server (it keeps its history). Empty folders are not synced."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sync.add_argument("folder", help="the local folder to sync")
    sync.add_argument(
        "--namespace", help="a namespace id or name, for a folder's first sync (default: your home namespace)"
    )
    sync.add_argument(
        "--watch", action="store_true", help="keep syncing as things change, until Ctrl-C (timestamped lines)"
    )
    sync.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    relink = commands.add_parser(
        "relink",
        help="attach a folder afresh (after the server forgot its namespace): forget what was synced, keep every"
        " local file, sync both ways",
    )
    relink.add_argument("folder", help="a synced folder")
    relink.add_argument("--namespace", help="a namespace id or name (default: your home namespace)")
    relink.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    status = commands.add_parser("status", help="what sync would upload, and what it cannot sync and why (no network)")
    status.add_argument("folder", help="a synced folder")
    status.add_argument("--ignored", action="store_true", help="also list what the ignore rules leave out")
    namespaces = commands.add_parser("namespaces", help="list your namespaces; create one; show one and its members")
    actions = namespaces.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="your namespaces, your role in each, and the folders that sync them here")
    actions.add_parser("create", help="a new shared namespace; you become its owner").add_argument(
        "name", help="its name (your other namespaces' names must differ)"
    )
    actions.add_parser("show", help="a namespace and its members").add_argument(
        "namespace", help="an id, a name, or a synced folder"
    )
    members = commands.add_parser("members", help="add or remove a member of a shared namespace (owners)")
    member_actions = members.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = member_actions.add_parser("add", help="add a member, or change a member's role")
    add.add_argument("target", metavar="NAMESPACE", help="an id, a name, or a synced folder")
    add.add_argument("user", help="the member's username")
    add.add_argument("--role", choices=("owner", "editor", "viewer"), default="editor", help="(default: editor)")
    remove = member_actions.add_parser("remove", help="remove a member (or yourself: leave)")
    remove.add_argument("target", metavar="NAMESPACE", help="an id, a name, or a synced folder")
    remove.add_argument("user", help="the member's username (yours: leave the namespace)")
    share = commands.add_parser("share", help='the same as "members add"')
    share.add_argument("target", help="a synced folder, or a namespace id or name")
    share.add_argument("--with", dest="user", required=True, help="the username to share with")
    share.add_argument("--role", choices=("owner", "editor", "viewer"), required=True, help="their role")
    history = commands.add_parser("history", help="the versions of a file: when, by whom, what")
    history.add_argument("path", help="a file in a synced folder")
    restore = commands.add_parser("restore", help="make an old version current again")
    restore.add_argument("path", help="a file in a synced folder")
    restore.add_argument("--rev", type=int, required=True, help="the version to make current (history lists them)")
    for name, text in (("follow", "email me when it changes"), ("unfollow", "stop those emails")):
        commands.add_parser(name, help=f"{text} (a file, or a folder and everything in it)").add_argument(
            "path", help="a file or folder in a synced folder"
        )
    email = commands.add_parser("email", help="set where notifications go (password: FILESYNC_PASSWORD or a prompt)")
    email.add_argument("address", nargs="?", help="where notifications go (or --remove)")
    email.add_argument("--remove", action="store_true", help="no notification emails")
    commands.add_parser("usage", help="the storage your account uses, and its quota")
    trash = commands.add_parser("trash", help="deleted files: list them, bring them back")
    trash_actions = trash.add_subparsers(dest="action", required=True)
    trash_actions.add_parser(
        "list", help="deleted files of a synced folder (or under a path in it), latest first"
    ).add_argument("path", help="a synced folder, or a path in one")
    untrash = trash_actions.add_parser("restore", help="bring deleted files back (then run sync)")
    untrash.add_argument("paths", nargs="+", metavar="PATH", help="deleted files (or, with --folder, folders)")
    untrash.add_argument(
        "--folder",
        dest="folders",
        action="store_true",
        help="the paths are folders: restore everything deleted under them",
    )
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, Config], Coroutine[Any, Any, int]]] = {
    "signup": cmd_signup,
    "login": cmd_login,
    "sync": cmd_sync,
    "relink": cmd_relink,
    "status": cmd_status,
    "namespaces": cmd_namespaces,
    "members": cmd_members,
    "share": cmd_members,
    "history": cmd_history,
    "restore": cmd_restore,
    "follow": cmd_follow,
    "unfollow": cmd_follow,
    "email": cmd_email,
    "usage": cmd_usage,
    "trash": cmd_trash,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; every way it can end is here: an exit code and, on failure, one line on stderr."""
    args = _parser().parse_args(argv)
    config = Config(Path(args.config))
    folder = getattr(args, "folder", None)
    server = _configured_server(config)
    if args.command in ("signup", "login"):
        with contextlib.suppress(UserError):  # the command itself says what is wrong with it
            server = server_url(args.server)
    context = Context(args.command, server, Path(folder).resolve() if folder else None)
    try:
        namespace = getattr(args, "namespace", None)
        if (
            args.command == "sync"
            and not args.watch
            and quick_no_change(config, Path(args.folder).resolve(), namespace)
        ):
            return _quick_summary(config, Path(args.folder).resolve(), args.quiet)
        import uvloop

        return uvloop.run(_run(args, config))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        explained = explain(exc, context)
        if explained is None:
            log = config.directory / "last-error.log"
            _log_error(log, exc)
            print(f"error: {unexpected(exc, log)}", file=sys.stderr)
            return EXIT_FAILED
        code, line = explained
        print(f"error: {line}", file=sys.stderr)
        return code


async def _run(args: argparse.Namespace, config: Config) -> int:
    import asyncio

    log = config.directory / "last-error.log"

    def quietly(loop: asyncio.AbstractEventLoop, event: dict[str, Any]) -> None:
        # A task that failed after the command's outcome was decided (its siblings' failure): the details go
        # to the log, the screen keeps its one line.
        _log_error(log, event.get("exception"), str(event.get("message", "")))

    asyncio.get_running_loop().set_exception_handler(quietly)
    return await COMMANDS[args.command](args, config)


def _configured_server(config: Config) -> str:
    with contextlib.suppress(OSError, ValueError, UserError):
        return str(config.load().get("server", "")) if config.file.exists() else ""
    return ""


def _log_error(log: Path, exc: BaseException | None, message: str = "") -> None:
    with contextlib.suppress(OSError):
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as out:
            out.write(f"--- {datetime.now().isoformat(timespec='seconds')} {message}\n")
            if exc is not None:
                out.write("".join(traceback.format_exception(exc)))


if __name__ == "__main__":
    sys.exit(main())
