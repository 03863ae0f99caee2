"""Whether a URL is on this machine: the load tool refuses any other target unless told ``--allow-remote``.

Layer: tools (leaf, pure but for name resolution). A name counts as loopback only if every address it
resolves to is loopback, so a name that points elsewhere cannot slip through.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class RemoteTarget(Exception):
    """The URL points off this machine and remote targets were not allowed."""


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def check_target(url: str | None, allow_remote: bool, what: str) -> None:
    """Refuse ``url`` unless it is loopback or ``allow_remote``; ``None`` means AWS itself (remote)."""
    if allow_remote:
        return
    if url is None or not is_loopback(url):
        where = url or "AWS (no endpoint URL)"
        raise RemoteTarget(
            f"{what} {where} is not on this machine; the load tool only targets loopback addresses unless "
            "given --allow-remote (use it only against a stack you own)"
        )
