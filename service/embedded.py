"""The embedded default: moto's server in this process, provisioned like production.

Layer: composition. Used by ``python -m service`` when no AWS settings are present. The emulator listens
on loopback only; its data lives as long as the process. moto is imported only here, and only when the
embedded default actually starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import aioboto3

from service.aws.clients import make_session, open_clients
from service.aws.provision import provision
from service.metrics import Metrics
from service.settings import Settings


@contextmanager
def run_emulator(host: str = "127.0.0.1") -> Iterator[str]:
    """Start moto's server on a free loopback port; yield its endpoint URL; stop it on exit."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    try:
        bound_host, port = server.get_host_and_port()
        yield f"http://{bound_host}:{port}"
    finally:
        server.stop()


async def provision_emulator(settings: Settings, session: aioboto3.Session | None = None) -> Settings:
    """Create the bucket, table, upload role and SES sender in the emulator; return final settings."""
    session = session or make_session(settings.aws)
    async with open_clients(settings.aws, Metrics(), session) as clients:
        provisioned = await provision(settings, clients, session)
    return dataclasses.replace(settings, upload_role_arn=provisioned.upload_role_arn)
