"""An account's own API keys through the API: listed (never shown again), issued, revoked at once
(the dashboard sessions signed in with a key end with it), never the last one, never another
account's."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.conftest import make_account
from tests.support import call

pytestmark = pytest.mark.e2e


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_an_account_issues_lists_and_revokes_its_own_keys(http, system, account, db):
    url = system.api_url + "/api-keys"
    status, listed = await call(http, "GET", url, account.headers)
    assert status == 200, listed
    assert [(k["prefix"], k["current"], k["revoked_at"]) for k in listed["data"]] == [(account.key[:8], True, None)]
    assert account.key not in str(listed)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed["data"][0]["created_at"])  # as the API's times

    status, issued = await call(http, "POST", url, account.headers)
    assert status == 201, issued
    second = issued["api_key"]
    assert issued["prefix"] == second[:8]
    status, listed = await call(http, "GET", url, _headers(second))
    assert [(k["prefix"], k["current"]) for k in listed["data"]] == [(account.key[:8], False), (second[:8], True)]

    # a dashboard session signed in with the first key
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        async with session.get(system.api_url + "/dashboard/login") as page:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())[1]
        await session.post(system.api_url + "/dashboard/login", data={"api_key": account.key, "csrf_token": token})
        async with session.get(system.api_url + "/dashboard", allow_redirects=False) as page:
            assert page.status == 200

        # another account cannot touch it
        stranger = await make_account(db)
        status, _ = await call(http, "DELETE", f"{url}/{account.key[:8]}", stranger.headers)
        assert status == 404
        assert (await call(http, "GET", system.api_url + "/account", account.headers))[0] == 200

        status, revoked = await call(http, "DELETE", f"{url}/{account.key[:8]}", _headers(second))
        assert status == 200, revoked
        assert revoked["prefix"] == account.key[:8]
        assert revoked["revoked_at"].endswith("Z")
        assert (await call(http, "GET", system.api_url + "/account", account.headers))[0] == 401
        async with session.get(system.api_url + "/dashboard", allow_redirects=False) as page:
            assert page.status == 303  # signed out with its key
    finally:
        await session.close()

    status, error = await call(http, "DELETE", f"{url}/{account.key[:8]}", _headers(second))
    assert status == 404, error
    status, error = await call(http, "DELETE", f"{url}/{second[:8]}", _headers(second))
    assert status == 409
    assert "last live key" in error["error"]["message"]
    assert (await call(http, "GET", system.api_url + "/account", _headers(second)))[0] == 200
    status, listed = await call(http, "GET", url, _headers(second))
    assert [(k["prefix"], k["revoked_at"] is None) for k in listed["data"]] == [
        (account.key[:8], False), (second[:8], True)]


async def test_issuing_a_key_refuses_unknown_fields_as_the_rest_of_the_api(http, system, account, db):
    url = system.api_url + "/api-keys"
    for payload in ({"name": "ci"}, {"expires_at": "2030-01-01", "prefix": "x"}):
        status, error = await call(http, "POST", url, account.headers, payload)
        assert status == 422, error
        assert error["error"]["code"] == "validation_error"
        assert {(d["field"], d["reason"]) for d in error["error"]["details"]} == {
            (name, "unknown field") for name in payload
        }, error
    status, error = await call(http, "POST", url, account.headers, ["x"])
    assert (status, error["error"]["details"]) == (422, [{"field": "body", "reason": "not an object"}]), error
    async with http.post(url, data=b"not json", headers={**account.headers, "Content-Type": "application/json"}) as r:
        assert r.status == 400
    # none of them issued a key; an empty body and {} do
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE account_id = $1", account.id) == 1
    for payload in (None, {}):
        status, issued = await call(http, "POST", url, account.headers, payload)
        assert status == 201, issued
    async with http.post(url, headers=account.headers) as response:  # no body, no Content-Type
        assert response.status == 201
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE account_id = $1", account.id) == 4


async def test_keys_are_paged_with_a_cursor_oldest_first(http, system, account):
    url = system.api_url + "/api-keys"
    prefixes = [account.key[:8]]
    for _ in range(2):
        status, issued = await call(http, "POST", url, account.headers)
        assert status == 201, issued
        prefixes.append(issued["prefix"])
    seen, cursor = [], None
    while True:
        status, page = await call(http, "GET", f"{url}?limit=2" + (f"&cursor={cursor}" if cursor else ""),
                                  account.headers)
        assert status == 200, page
        seen.append([(k["prefix"], k["current"], k["revoked_at"]) for k in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [[(prefixes[0], True, None), (prefixes[1], False, None)], [(prefixes[2], False, None)]]
    # a key revoked between two pages stays in the list (revoked_at set), in its place
    status, first = await call(http, "GET", url + "?limit=1", account.headers)
    status, _ = await call(http, "DELETE", f"{url}/{prefixes[1]}", account.headers)
    assert status == 200
    status, rest = await call(http, "GET", f"{url}?cursor={first['next_cursor']}", account.headers)
    assert [(k["prefix"], k["revoked_at"] is None) for k in rest["data"]] == [(prefixes[1], False), (prefixes[2], True)]
    assert rest["next_cursor"] is None
    for query, field in (("limit=0", "limit"), ("limit=201", "limit"), ("limit=-1", "limit"), ("cursor=zzz", "cursor"),
                         (f"cursor={prefixes[0]}", "cursor")):
        status, error = await call(http, "GET", f"{url}?{query}", account.headers)
        assert (status, error["error"]["details"][0]["field"]) == (422, field), (query, error)
