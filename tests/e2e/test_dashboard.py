"""The dashboard: sign in with a key, see campaigns and their progress, pause with a button."""

from __future__ import annotations

import aiohttp
import pytest

from tests.conftest import make_account
from tests.support import call, new_phone

pytestmark = pytest.mark.e2e


async def _signed_in(system, key: str) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session.post(system.api_url + "/dashboard/login", data={"api_key": key}) as response:
        assert response.status == 200  # followed the 303 to the campaigns page
        assert "Campaigns" in await response.text()
    return session


async def test_a_person_sees_progress_and_pauses_with_a_button(http, system, account, db):
    async with http.get(system.api_url + "/dashboard", allow_redirects=False) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/dashboard/login"
    async with http.post(system.api_url + "/dashboard/login", data={"api_key": "sk_wrong"}) as response:
        assert response.status == 401
        assert "not valid" in await response.text()
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "A"})
    _status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                               {"name": "Spring <sale>", "agent_id": agent["id"], "type": "sms",
                                "contacts": [new_phone()], "message_template": "hi",
                                "schedule": "2031-01-01T09:00:00Z"})
    session = await _signed_in(system, account.key)
    try:
        async with session.get(system.api_url + "/dashboard") as response:
            page = await response.text()
        assert "Spring &lt;sale&gt;" in page  # escaped
        url = f"{system.api_url}/dashboard/campaigns/{body['id']}"
        async with session.post(url + "/launch") as response:
            page = await response.text()
        assert "scheduled" in page
        async with session.post(url + "/pause") as response:
            page = await response.text()
        assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", body["id"]) == "paused"
        assert ">Resume<" in page
        async with session.post(url + "/pause") as response:  # not allowed now: the reason is shown
            page = await response.text()
        assert "only a scheduled or running campaign can be paused" in page
        other = await make_account(db)
        other_session = await _signed_in(system, other.key)
        async with other_session.get(url) as response:
            assert response.status == 404
        async with other_session.post(url + "/cancel", allow_redirects=False) as response:
            assert "not+found" in response.headers["Location"]
        await other_session.close()
        assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", body["id"]) == "paused"
    finally:
        await session.close()


async def test_the_browser_holds_a_session_token_never_the_key(http, system, account, db):
    session = await _signed_in(system, account.key)
    try:
        cookies = {c.key: c for c in session.cookie_jar}
        assert set(cookies) == {"campaigns_session"}
        token = cookies["campaigns_session"].value
        assert account.key not in token
        assert cookies["campaigns_session"]["httponly"]
        assert cookies["campaigns_session"]["samesite"] == "Strict"
        stored = await db.fetch("SELECT token_hash FROM dashboard_sessions")
        assert token.encode() not in [bytes(r["token_hash"]) for r in stored]  # only a hash is kept
        async with session.get(system.api_url + "/dashboard", allow_redirects=False) as response:
            assert response.status == 200
        # Signing out ends the session: the same cookie no longer opens anything.
        async with session.post(system.api_url + "/dashboard/logout", allow_redirects=False) as response:
            assert response.status == 303
        replay = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        replay.cookie_jar.update_cookies({"campaigns_session": token})
        async with replay.get(system.api_url + "/dashboard", allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/dashboard/login"
        await replay.close()
    finally:
        await session.close()
    # Revoking the key ends its sessions too.
    other = await make_account(db)
    signed = await _signed_in(system, other.key)
    try:
        await db.execute("UPDATE api_keys SET revoked_at = now() WHERE account_id = $1", other.id)
        async with signed.get(system.api_url + "/dashboard", allow_redirects=False) as response:
            assert response.status == 303
    finally:
        await signed.close()
