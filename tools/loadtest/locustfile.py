"""The load tool's scenarios for Locust, for those who prefer its web UI and distributed runners:
``locust -f tools/loadtest/locustfile.py --host http://127.0.0.1:8080``
(install with ``pip install -r requirements-locust.txt``).

Layer: tools. Same scenarios, default weights and seeded data as ``python -m tools.loadtest``
(``tools.loadtest.mix``, ``tools.loadtest.data``), over Locust's HTTP client instead of the SDK: uploads use
the service's presigned URLs (the path of clients without an AWS SDK), since the SDK's S3 client is
asyncio and Locust runs on gevent. Locust users are closed-loop; each waits to hold
``--user-rate`` requests a second (``constant_throughput``), which bounds but does not correct coordinated
omission: use ``python -m tools.loadtest`` for latency claims. Always bound a run with ``--run-time``.

At test start one account creates and seeds a shared namespace; each Locust user signs up its own account
(open sign-up, as in the embedded default) and is added to it as a viewer. Locust is imported only by
Locust itself (it monkey-patches the process with gevent), never by the tool or the tests.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import secrets
import time
from collections.abc import Callable
from typing import Any, ClassVar

from locust import HttpUser, constant_throughput, events
from locust.env import Environment
from locust.runners import WorkerRunner

from service.content import digest_bytes
from tools.loadtest.data import FOLDERS, compare_pages, folder_sizes, seed_paths
from tools.loadtest.mix import DEFAULT_MIX
from tools.loadtest.target import check_target

PASSWORD = os.environ.get("FILESYNC_LOAD_PASSWORD", "load test password")
SEED_FILES = int(os.environ.get("FILESYNC_LOAD_SEED_FILES", "200"))
SMALL_SIZE = 4096
RUN = secrets.token_hex(3)
_names = itertools.count()


class Seed:
    """The shared namespace every user reads, set up once per test run."""

    def __init__(self, host: str, allow_remote: bool) -> None:
        import requests

        check_target(host, allow_remote, "the host")
        self.host = host.rstrip("/")
        self.http = requests.Session()
        self.owner = f"locust-{RUN}-owner"
        self._post("/v1/auth/signup", {"username": self.owner, "password": PASSWORD}, expect=(201, 409))
        self._log_in()
        config = self.http.get(self.host + "/v1/config", timeout=30).json()
        self.block_size = int(config["block_size"])
        self.ns = self._post("/v1/namespaces", {"name": f"locust {RUN} seed"}, expect=(201,))["id"]
        body = os.urandom(4096)
        self.sha256 = hashlib.sha256(body).hexdigest()
        put = self.http.put(f"{self.host}/v1/ns/{self.ns}/files/seed.bin", data=body, timeout=60)
        put.raise_for_status()
        content_hash = put.json()["content_hash"]
        self.paths = seed_paths(SEED_FILES)
        self.folder_sizes = folder_sizes(self.paths)
        entry = {"content_hash": content_hash, "size": len(body)}
        for start in range(0, len(self.paths), 1000):
            chunk = [{"path": p, **entry} for p in self.paths[start : start + 1000]]
            self._post(f"/v1/ns/{self.ns}/commit", {"entries": chunk}, expect=(200,))
        self.compare_pages = compare_pages(self.paths, content_hash)
        # Downloads and presigned uploads go to the S3 endpoint: it must be on this machine too.
        redirect = self.http.get(f"{self.host}/v1/ns/{self.ns}/files/seed.bin", allow_redirects=False, timeout=60)
        check_target(redirect.headers.get("Location"), allow_remote, "the S3 endpoint")

    def _log_in(self) -> None:
        tokens = self._post("/v1/auth/token", {"username": self.owner, "password": PASSWORD}, expect=(200,))
        self.http.headers["Authorization"] = f"Bearer {tokens['access_token']}"

    def _post(self, path: str, body: Any, expect: tuple[int, ...]) -> Any:
        response = self.http.post(self.host + path, json=body, timeout=60)
        if response.status_code not in expect:
            raise RuntimeError(f"seeding: POST {path}: {response.status_code} {response.text[:200]}")
        return response.json() if response.content else None

    def add_member(self, username: str) -> None:
        response = self.http.put(
            f"{self.host}/v1/namespaces/{self.ns}/members/{username}", json={"role": "viewer"}, timeout=60
        )
        if response.status_code == 401:  # the owner's token expired during a long ramp-up
            self._log_in()
            self.add_member(username)
            return
        response.raise_for_status()


#: The seed of this Locust process (Locust's own pattern: listeners share module state).
_seed: dict[str, Seed] = {}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--user-rate", type=float, default=1.0, help="requests a second per user (default 1)")
    parser.add_argument("--allow-remote", action="store_true", help="allow a host off this machine")


@events.test_start.add_listener
def _seed_once(environment: Environment, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):  # a distributed run's workers seed their own
        seed(environment)


def seed(environment: Environment) -> Seed:
    if "seed" not in _seed:
        _seed["seed"] = Seed(environment.host or "", environment.parsed_options.allow_remote)
    return _seed["seed"]


class FileSyncUser(HttpUser):
    """One account: its home namespace for uploads and the feed, the shared seed for reads."""

    def wait_time(self) -> float:
        return float(constant_throughput(self.environment.parsed_options.user_rate)(self))

    def on_start(self) -> None:
        self.seed = seed(self.environment)
        self.username = f"locust-{RUN}-{next(_names)}"
        self.client.post(
            "/v1/auth/signup", json={"username": self.username, "password": PASSWORD}, name="(setup) signup"
        )
        self._log_in("(setup) login")
        self.seed.add_member(self.username)
        account = self.client.get("/v1/account", name="(setup) account").json()
        self.home = account["home_namespace"]
        self.cursor = self.client.post(
            f"/v1/ns/{self.home}/compare", json={"entries": []}, name="(setup) cursor"
        ).json()["cursor"]
        self.uploads = itertools.count()

    def _log_in(self, name: str = "login") -> None:
        started = time.monotonic()
        response = self.client.post("/v1/auth/token", json={"username": self.username, "password": PASSWORD}, name=name)
        tokens = response.json()
        self.refresh_token = tokens["refresh_token"]
        self.deadline = started + tokens["expires_in"] - 60
        self.client.headers["Authorization"] = f"Bearer {tokens['access_token']}"

    def _fresh(self) -> None:
        if time.monotonic() < self.deadline:
            return
        started = time.monotonic()
        tokens = self.client.post(
            "/v1/auth/refresh", json={"refresh_token": self.refresh_token}, name="(token refresh)"
        ).json()
        self.refresh_token = tokens["refresh_token"]
        self.deadline = started + tokens["expires_in"] - 60
        self.client.headers["Authorization"] = f"Bearer {tokens['access_token']}"

    # --- the scenarios (names and weights as in tools.loadtest.mix) ---------------------------------------

    def feed(self) -> None:
        self._fresh()
        response = self.client.get(
            f"/v1/ns/{self.home}/changes", params={"cursor": self.cursor, "limit": "100"}, name="feed"
        )
        if response.ok:
            self.cursor = response.json()["cursor"]

    def list_folder(self) -> None:
        self._fresh()
        folder = f"dir{random.randrange(FOLDERS):02d}"  # noqa: S311
        with self.client.get(
            f"/v1/ns/{self.seed.ns}/files", params={"folder": folder, "limit": "1000"}, name="list", catch_response=True
        ) as response:
            if response.ok and len(response.json()["files"]) != self.seed.folder_sizes.get(folder, 0):
                response.failure("WrongAnswer: listing")

    def compare(self) -> None:
        self._fresh()
        for page in self.seed.compare_pages:
            with self.client.post(
                f"/v1/ns/{self.seed.ns}/compare", json=page, name="compare", catch_response=True
            ) as response:
                if response.ok and response.json()["items"]:
                    response.failure("WrongAnswer: compare found changes")

    def download(self) -> None:
        self._fresh()
        path = random.choice(self.seed.paths)  # noqa: S311
        redirect = self.client.get(f"/v1/ns/{self.seed.ns}/files/{path}", allow_redirects=False, name="download")
        if redirect.status_code != 302:
            return
        with self.client.get(redirect.headers["Location"], name="download (S3)", catch_response=True) as body:
            if body.ok and hashlib.sha256(body.content).hexdigest() != self.seed.sha256:
                body.failure("WrongAnswer: downloaded content")

    def upload_small(self) -> None:
        self._upload(os.urandom(SMALL_SIZE), "upload_small")

    def upload_multipart(self) -> None:
        self._upload(os.urandom(self.seed.block_size + SMALL_SIZE), "upload_multipart")

    def _upload(self, body: bytes, name: str) -> None:
        self._fresh()
        digest = digest_bytes(body, self.seed.block_size)
        ticket = self.client.post(
            f"/v1/ns/{self.home}/uploads",
            json={"content_hash": digest.content_hash, "size": len(body)},
            name=f"{name}: ticket",
        )
        if not ticket.ok:
            return
        plan = ticket.json()
        if plan["kind"] == "put":
            if not self.client.put(plan["url"], data=body, headers=plan["headers"], name=f"{name}: S3 PUT").ok:
                return
        elif plan["kind"] == "multipart":
            parts = []
            for part in plan["parts"]:
                start = (part["number"] - 1) * plan["part_size"]
                sent = self.client.put(
                    part["url"], data=body[start : start + plan["part_size"]], name=f"{name}: S3 part"
                )
                if not sent.ok:
                    return
                parts.append({"number": part["number"], "etag": sent.headers["ETag"]})
            done = self.client.post(
                f"/v1/ns/{self.home}/uploads/{plan['upload_id']}/complete",
                json={"parts": parts},
                name=f"{name}: complete",
            )
            if not done.ok:
                return
        entry = {"path": f"load/{next(self.uploads):07d}.bin", "content_hash": digest.content_hash, "size": len(body)}
        with self.client.post(
            f"/v1/ns/{self.home}/commit",
            json={"entries": [entry]},
            headers={"Idempotency-Key": secrets.token_hex(16)},
            name=f"{name}: commit",
            catch_response=True,
        ) as response:
            if response.ok and response.json()["results"][0]["status"] != "committed":
                response.failure("WrongAnswer: a new path conflicted")

    def credentials(self) -> None:
        self._fresh()
        self.client.post("/v1/credentials", json={"namespaces": [self.home]}, name="credentials")

    def login(self) -> None:
        self._log_in()

    tasks: ClassVar[dict[Callable[[FileSyncUser], None], int]] = {
        feed: round(DEFAULT_MIX["feed"]),
        list_folder: round(DEFAULT_MIX["list"]),
        compare: round(DEFAULT_MIX["compare"]),
        download: round(DEFAULT_MIX["download"]),
        upload_small: round(DEFAULT_MIX["upload_small"]),
        upload_multipart: round(DEFAULT_MIX["upload_multipart"]),
        credentials: round(DEFAULT_MIX["credentials"]),
        login: round(DEFAULT_MIX["login"]),
    }
