"""Namespaces and membership over HTTP: home namespaces, sharing, roles, and 404 for outsiders."""

from __future__ import annotations

from tests.api.helpers import problem, sign_up, user


async def namespaces_of(client, headers) -> dict[str, dict]:
    response = await client.get("/v1/namespaces", headers=headers)
    assert response.status == 200
    return {ns["id"]: ns for ns in (await response.json())["namespaces"]}


async def test_every_account_has_a_home_namespace(client):
    account = await sign_up(client, "alice")
    from tests.api.helpers import bearer, log_in

    headers = bearer(await log_in(client, "alice"))
    listed = await namespaces_of(client, headers)
    assert listed == {
        account["home_namespace"]: {
            "id": account["home_namespace"],
            "name": "alice (home)",
            "kind": "home",
            "role": "owner",
        }
    }


async def test_share_a_folder_with_roles(client):
    alice = await user(client, "alice")
    bob = await user(client, "bob")
    carol = await user(client, "carol")

    created = await client.post("/v1/namespaces", json={"name": "Team docs"}, headers=alice)
    assert created.status == 201
    ns = (await created.json())["id"]

    added = await client.put(f"/v1/namespaces/{ns}/members/bob", json={"role": "editor"}, headers=alice)
    assert added.status == 200
    assert await added.json() == {"username": "bob", "role": "editor"}
    await client.put(f"/v1/namespaces/{ns}/members/carol", json={"role": "viewer"}, headers=alice)

    assert (await namespaces_of(client, bob))[ns]["role"] == "editor"
    detail = await (await client.get(f"/v1/namespaces/{ns}", headers=carol)).json()
    assert detail["role"] == "viewer"
    assert {m["username"]: m["role"] for m in detail["members"]} == {
        "alice": "owner",
        "bob": "editor",
        "carol": "viewer",
    }

    # Members who are not owners cannot manage members.
    await problem(await client.put(f"/v1/namespaces/{ns}/members/carol", json={"role": "owner"}, headers=bob), 403)
    await problem(await client.delete(f"/v1/namespaces/{ns}/members/bob", headers=carol), 403)

    # Anyone can leave; the owner can remove.
    assert (await client.delete(f"/v1/namespaces/{ns}/members/carol", headers=carol)).status == 204
    assert (await client.delete(f"/v1/namespaces/{ns}/members/bob", headers=alice)).status == 204
    assert ns not in await namespaces_of(client, bob)
    await problem(await client.get(f"/v1/namespaces/{ns}", headers=bob), 404)


async def test_someone_elses_namespace_answers_exactly_like_a_missing_one(client):
    alice = await user(client, "alice")
    mallory = await user(client, "mallory")
    ns = (await (await client.post("/v1/namespaces", json={"name": "private"}, headers=alice)).json())["id"]
    missing = "z" * 16

    theirs = await problem(await client.get(f"/v1/namespaces/{ns}", headers=mallory), 404)
    absent = await problem(await client.get(f"/v1/namespaces/{missing}", headers=mallory), 404)
    assert theirs["detail"].replace(ns, "X") == absent["detail"].replace(missing, "X")
    assert theirs["type"] == absent["type"]
    await problem(
        await client.put(f"/v1/namespaces/{ns}/members/mallory", json={"role": "owner"}, headers=mallory), 404
    )
    for malformed in ("short", "UPPERCASEUPPERCA", "../../etc/passwd", "a" * 300):
        await problem(await client.get(f"/v1/namespaces/{malformed}", headers=mallory), 404)


async def test_a_namespace_keeps_an_owner_and_home_namespaces_are_private(client):
    alice = await user(client, "alice")
    await user(client, "bob")
    ns = (await (await client.post("/v1/namespaces", json={"name": "solo"}, headers=alice)).json())["id"]
    await problem(await client.delete(f"/v1/namespaces/{ns}/members/alice", headers=alice), 409)
    await problem(await client.put(f"/v1/namespaces/{ns}/members/alice", json={"role": "viewer"}, headers=alice), 409)

    home = (await (await client.get("/v1/account", headers=alice)).json())["home_namespace"]
    await problem(await client.put(f"/v1/namespaces/{home}/members/bob", json={"role": "viewer"}, headers=alice), 409)


async def test_bad_member_and_namespace_input(client):
    alice = await user(client, "alice")
    ns = (await (await client.post("/v1/namespaces", json={"name": "x"}, headers=alice)).json())["id"]
    bad_role = await client.put(f"/v1/namespaces/{ns}/members/bob", json={"role": "admin"}, headers=alice)
    assert (await problem(bad_role, 422))["errors"][0]["path"] == "$.role"
    await problem(await client.put(f"/v1/namespaces/{ns}/members/nobody", json={"role": "viewer"}, headers=alice), 404)
    for name in ("", "   ", "tab\there", "x" * 256):
        response = await client.post("/v1/namespaces", json={"name": name}, headers=alice)
        assert (await problem(response, 422))["errors"][0]["path"] == "$.name"
