"""Access tokens: issue, verify, expiry (also for cached tokens), and the revocation list."""

from __future__ import annotations

import pytest

from service.core.errors import Unauthenticated
from service.core.models import Principal, position_at
from service.core.revocations import RevocationList
from service.core.tokens import LEEWAY_SECONDS, TokenService, new_session_id

SECRET = "k" * 40


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_round_trip_and_cache_respects_expiry():
    clock = Clock()
    tokens = TokenService(SECRET, access_seconds=300, clock=clock)
    principal = Principal("alice", new_session_id())
    token = tokens.issue_access(principal)
    assert tokens.verify_access(token) == principal
    assert tokens.verify_access(token) == principal  # from the cache
    clock.now += 300 + LEEWAY_SECONDS + 1
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify_access(token)


def test_cache_is_bounded_and_keyed_by_exact_token():
    tokens = TokenService(SECRET, access_seconds=300, cache_size=2)
    issued = [tokens.issue_access(Principal(f"u{i}", new_session_id())) for i in range(5)]
    for token in issued:
        tokens.verify_access(token)
    assert len(tokens._verified) == 2
    with pytest.raises(Unauthenticated):
        tokens.verify_access(issued[-1] + "x")


def test_short_secrets_are_refused():
    with pytest.raises(ValueError, match="32"):
        TokenService("short", access_seconds=300)


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c", "rt." + "x" * 43])
def test_garbage_is_unauthenticated(token: str):
    with pytest.raises(Unauthenticated):
        TokenService(SECRET, access_seconds=300).verify_access(token)


def test_refresh_tokens_parse_only_when_well_formed():
    sid = new_session_id()
    token, secret_hash = TokenService.new_refresh(sid)
    assert TokenService.parse_refresh(token)[0] == sid
    assert len(secret_hash) == 64
    for bad in ("", token + "x", token.replace(".", ":"), "A" * 26 + "." + "b" * 43):
        with pytest.raises(Unauthenticated):
            TokenService.parse_refresh(bad)


def test_revocation_list_forgets_entries_once_tokens_expired_anyway():
    clock = Clock()
    revoked = RevocationList(clock)
    revoked.add("s1", clock.now + 10)
    revoked.add("s2", clock.now + 100)
    assert revoked.is_revoked("s1")
    assert not revoked.is_revoked("s3")
    clock.now += 50
    revoked.prune()
    assert len(revoked) == 1
    assert revoked.is_revoked("s2")


def test_feed_positions_sort_in_time_order():
    assert position_at(999.999) < position_at(1000.0) < position_at(10_000_000_000.0)
