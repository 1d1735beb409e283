"""`Idempotency-Key` on creating POSTs, through the real API process and its database."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from tests.conftest import make_account
from tests.support import call, new_phone

pytestmark = pytest.mark.e2e

Answer = tuple[int, dict[str, str], Any]


async def post(http, system, path: str, account, key: str | None, body: Any) -> Answer:
    """One JSON POST, with `key` as its Idempotency-Key: (status, headers, parsed body)."""
    headers = account.headers if key is None else {**account.headers, "Idempotency-Key": key}
    async with http.post(system.api_url + path, headers=headers, json=body) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


async def count(db, table: str, account) -> int:
    return await db.fetchval(f"SELECT count(*) FROM {table} WHERE account_id = $1", account.id)  # noqa: S608


async def new_agent(http, system, account) -> str:
    status, _, body = await post(http, system, "/agents", account, None, {"name": "A"})
    assert status == 201, body
    return str(body["id"])


async def test_a_retry_returns_the_first_answer_and_creates_nothing(http, system, account, db):
    # Given an agent created with a key
    key = uuid.uuid4().hex
    first = await post(http, system, "/agents", account, key, {"name": "Ava"})
    assert first[0] == 201
    assert "Idempotent-Replayed" not in first[1]
    # When the same request is sent again with the same key
    again = await post(http, system, "/agents", account, key, {"name": "Ava"})
    # Then the first answer comes back, marked as replayed, and there is still one agent
    assert again[0] == 201
    assert again[2] == first[2]
    assert again[1]["Idempotent-Replayed"] == "true"
    assert again[1]["Content-Type"].startswith("application/json")
    assert await count(db, "agents", account) == 1


async def test_a_retried_campaign_is_created_once(http, system, account, db):
    body = {"name": "Once", "agent_id": await new_agent(http, system, account), "type": "sms",
            "contacts": [new_phone(), new_phone()], "message_template": "Hi"}
    key = uuid.uuid4().hex
    first = await post(http, system, "/campaigns", account, key, body)
    again = await post(http, system, "/campaigns", account, key, body)
    assert first[0] == again[0] == 201
    assert again[2]["id"] == first[2]["id"]
    assert await count(db, "campaigns", account) == 1
    assert await count(db, "contacts", account) == 2


async def test_the_same_key_for_another_body_or_path_is_409(http, system, account, db):
    key = uuid.uuid4().hex
    status, _, _ = await post(http, system, "/agents", account, key, {"name": "Ava"})
    assert status == 201
    for path, body in (("/agents", {"name": "Bob"}), ("/campaigns", {"name": "Ava"})):
        status, headers, answer = await post(http, system, path, account, key, body)
        assert status == 409, answer
        assert answer["error"]["code"] == "conflict"
        assert "different request" in answer["error"]["message"]
        assert "Idempotent-Replayed" not in headers
    assert await count(db, "agents", account) == 1


async def test_keys_belong_to_their_account(http, system, account, db):
    other = await make_account(db)
    key = uuid.uuid4().hex
    mine = await post(http, system, "/agents", account, key, {"name": "Ava"})
    theirs = await post(http, system, "/agents", other, key, {"name": "Ava"})
    assert mine[0] == theirs[0] == 201
    assert mine[2]["id"] != theirs[2]["id"]
    assert "Idempotent-Replayed" not in theirs[1]
    assert await count(db, "agents", account) == await count(db, "agents", other) == 1


async def test_concurrent_duplicates_create_exactly_one(http, system, account, db):
    key = uuid.uuid4().hex
    answers = await asyncio.gather(
        *(post(http, system, "/agents", account, key, {"name": "Racer"}) for _ in range(10))
    )
    assert {status for status, _, _ in answers} <= {201, 409}
    assert len({body["id"] for status, _, body in answers if status == 201}) == 1
    for status, _, body in answers:
        if status == 409:
            assert "in progress" in body["error"]["message"]
    assert await count(db, "agents", account) == 1


async def test_a_422_is_stored_and_replayed(http, system, account, db):
    key = uuid.uuid4().hex
    first = await post(http, system, "/agents", account, key, {"name": ""})
    again = await post(http, system, "/agents", account, key, {"name": ""})
    assert first[0] == again[0] == 422
    assert first[2]["error"]["code"] == "validation_error"
    assert again[2] == first[2]
    assert again[1]["Idempotent-Replayed"] == "true"
    assert await count(db, "agents", account) == 0


async def test_a_key_over_255_characters_is_422(http, system, account, db):
    status, _, body = await post(http, system, "/agents", account, "k" * 256, {"name": "Ava"})
    assert status == 422
    assert body["error"]["details"][0]["field"] == "Idempotency-Key"
    assert await count(db, "agents", account) == 0
    status, _, _ = await post(http, system, "/agents", account, "k" * 255, {"name": "Ava"})
    assert status == 201


async def test_without_the_header_every_request_runs(http, system, account, db):
    first = await post(http, system, "/agents", account, None, {"name": "Ava"})
    again = await post(http, system, "/agents", account, None, {"name": "Ava"})
    assert first[0] == again[0] == 201
    assert first[2]["id"] != again[2]["id"]
    assert "Idempotent-Replayed" not in again[1]
    assert await count(db, "agents", account) == 2


async def test_an_expired_or_abandoned_key_runs_again(http, system, account, db):
    # Given a key answered 25 hours ago, and one whose request died 10 minutes ago unanswered
    expired, abandoned = uuid.uuid4().hex, uuid.uuid4().hex
    status, _, _ = await post(http, system, "/agents", account, expired, {"name": "Ava"})
    assert status == 201
    await db.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"
        " WHERE account_id = $1 AND key = $2",
        account.id, expired,
    )
    await db.execute(
        "INSERT INTO idempotency_keys (account_id, key, method, path, body_hash, created_at)"
        " VALUES ($1, $2, 'POST', '/agents', '\\x00', now() - interval '10 minutes')",
        account.id, abandoned,
    )
    # When each key is used again, Then the request runs and its answer is fresh
    for key in (expired, abandoned):
        status, headers, _ = await post(http, system, "/agents", account, key, {"name": "Bo"})
        assert status == 201
        assert "Idempotent-Replayed" not in headers
    assert await count(db, "agents", account) == 3


async def test_campaign_actions_ignore_the_key(http, system, account):
    _, campaign = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "Act", "agent_id": await new_agent(http, system, account), "type": "sms",
         "contacts": [new_phone()], "message_template": "Hi"},
    )
    key = uuid.uuid4().hex
    first = await post(http, system, f"/campaigns/{campaign['id']}/cancel", account, key, None)
    again = await post(http, system, f"/campaigns/{campaign['id']}/cancel", account, key, None)
    assert first[0] == 200, first
    assert again[0] == 409  # judged by the campaign's state, not replayed
    assert "Idempotent-Replayed" not in again[1]


async def test_a_retry_is_the_same_request_whatever_its_key_order_and_spacing(http, system, account, db):
    key = uuid.uuid4().hex
    headers = {**account.headers, "Idempotency-Key": key, "Content-Type": "application/json"}
    answers = []
    for raw in (b'{"name": "Ava", "instructions": "Be brief"}', b'{"instructions":"Be brief","name":"Ava"}\n'):
        async with http.post(system.api_url + "/agents", headers=headers, data=raw) as response:
            answers.append((response.status, await response.json()))
    assert answers[1] == answers[0]
    assert answers[0][0] == 201
    assert await count(db, "agents", account) == 1


async def test_a_key_that_is_not_utf8_text_is_422(http, system, account, db):
    # bytes a client library would not send: written on the socket as they are
    host, port = system.api_url.removeprefix("http://").split(":")
    body = b'{"name": "Ava"}'
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /agents HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer " + account.key.encode()
                 + b"\r\nIdempotency-Key: k\xed\xa0\x80\xff\r\nContent-Type: application/json\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    answer = await reader.read()
    writer.close()
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 422"), answer
    assert json.loads(content)["error"]["details"] == [
        {"field": "Idempotency-Key", "reason": "holds bytes that are not UTF-8 text, or a NUL"}
    ]
    assert await count(db, "agents", account) == 0


async def test_a_new_api_key_is_never_stored_to_be_replayed(http, system, account, db):
    key = uuid.uuid4().hex
    first = await post(http, system, "/api-keys", account, key, {})
    again = await post(http, system, "/api-keys", account, key, {})
    assert (first[0], again[0]) == (201, 201)
    assert "Idempotent-Replayed" not in again[1]
    assert first[2]["api_key"] != again[2]["api_key"]  # each shown once: a retry is another key
    stored = await db.fetch("SELECT body FROM idempotency_keys WHERE account_id = $1", account.id)
    assert stored == []  # nothing kept: the key never sits in the database in plain text
