"""A campaign's deliveries as a CSV download: from the API and from the dashboard, scoped to the
account, filtered by state and run, safe to open in a spreadsheet, and read page after page."""

from __future__ import annotations

import csv
import io
import re

import aiohttp
import pytest

from services.api.usecases import exports
from shared.db.pool import create_pool
from tests.conftest import make_account
from tests.support import call, new_phone, results_when

pytestmark = pytest.mark.e2e

HEADER = [
    "delivery_id", "run", "contact_id", "first_name", "last_name", "email", "phone", "company", "channel", "to",
    "state", "attempts", "send_at", "queued_at", "sent_at", "delivered_at", "replied_at", "failed_at",
    "provider_id", "provider_status", "answered_by", "cost", "error", "message",
]


async def _completed_campaign(http, system, account) -> tuple[str, dict[str, str]]:
    """A finished SMS campaign of three contacts: two sent, one failed (a missing variable)."""
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Riley"})
    phones = {"formula": new_phone(), "plain": new_phone(), "missing": new_phone()}
    contacts = [
        {"phone": phones["formula"], "first_name": '=HYPERLINK("http://evil.example","x")', "last_name": "Zoë",
         "order": "A-1"},
        {"phone": phones["plain"], "first_name": "Bo", "company": "-10+20", "order": "-42"},
        {"phone": phones["missing"], "first_name": "Cy"},
    ]
    status, body = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                              {"name": "export", "type": "sms", "agent_id": agent["id"], "contacts": contacts,
                               "message_template": "Order {{order}} for {{first_name}}", "status": "scheduled"})
    assert status == 201, body
    await results_when(http, system.api_url, account.headers, body["id"],
                       lambda r: r["status"] == "completed" and r["delivered"] + r["failed"] == 3)
    return body["id"], phones


async def _csv(http, url: str, headers: dict[str, str]) -> tuple[aiohttp.ClientResponse, str]:
    async with http.get(url, headers=headers) as response:
        return response, (await response.read()).decode("utf-8")


def _rows(text: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text))
    assert next(reader) == HEADER
    return [dict(zip(HEADER, row, strict=True)) for row in reader]


async def test_a_campaigns_deliveries_download_as_csv(http, system, account, db):
    campaign_id, phones = await _completed_campaign(http, system, account)
    url = f"{system.api_url}/campaigns/{campaign_id}/deliveries.csv"

    response, text = await _csv(http, url, account.headers)
    assert response.status == 200, text
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{campaign_id}-deliveries.csv"'
    rows = _rows(text)
    stored = await db.fetch("SELECT * FROM deliveries WHERE campaign_id = $1 ORDER BY id", campaign_id)
    assert [r["delivery_id"] for r in rows] == [d["id"] for d in stored]
    by_phone = {r["to"]: r for r in rows}
    formula, plain, missing = (by_phone[phones[k]] for k in ("formula", "plain", "missing"))
    # what the database says, cell by cell
    first = next(d for d in stored if d["to_address"] == phones["plain"])
    assert plain["provider_id"] == first["provider_id"]
    assert plain["provider_id"].startswith("SM")
    assert (plain["state"], plain["run"], plain["attempts"], plain["channel"]) == ("delivered", "1", "1", "sms")
    assert plain["cost"] == str(first["cost"])
    assert plain["sent_at"] == first["sent_at"].isoformat().replace("+00:00", "Z")
    assert plain["message"] == "Order -42 for Bo"
    assert (missing["state"], missing["error"], missing["sent_at"]) == ("failed", "missing variable: order", "")
    # numbers stay numbers; what a spreadsheet would run as a formula does not
    assert plain["phone"] == phones["plain"]
    assert plain["to"] == phones["plain"]
    assert plain["company"] == "'-10+20"
    assert formula["first_name"] == '\'=HYPERLINK("http://evil.example","x")'
    assert formula["last_name"] == "Zoë"
    assert formula["message"] == 'Order A-1 for =HYPERLINK("http://evil.example","x")'  # not at a cell's start

    response, text = await _csv(http, url + "?state=failed", account.headers)
    assert [r["to"] for r in _rows(text)] == [phones["missing"]]
    response, text = await _csv(http, url + "?run=1", account.headers)
    assert len(_rows(text)) == 3
    status, error = await call(http, "GET", url + "?state=lost", account.headers)
    assert status == 422
    assert error["error"]["details"][0]["field"] == "state"
    status, error = await call(http, "GET", url + "?run=2", account.headers)
    assert status == 404
    assert "run '2'" in error["error"]["message"]
    stranger = await make_account(db)
    status, error = await call(http, "GET", url, stranger.headers)
    assert status == 404  # another account's campaign is not there at all
    status, _ = await call(http, "GET", url)
    assert status == 401

    # the dashboard's link: the same rows, behind a session, with a byte order mark for spreadsheets
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        async with session.get(system.api_url + "/dashboard/login") as page:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())[1]
        await session.post(system.api_url + "/dashboard/login", data={"api_key": account.key, "csrf_token": token})
        async with session.get(f"{system.api_url}/dashboard/campaigns/{campaign_id}") as page:
            assert f'href="/dashboard/campaigns/{campaign_id}/deliveries.csv"' in await page.text()
        async with session.get(f"{system.api_url}/dashboard/campaigns/{campaign_id}/deliveries.csv?state=failed") as r:
            assert r.status == 200
            assert r.headers["Content-Disposition"].endswith(f'filename="{campaign_id}-deliveries-failed.csv"')
            body = (await r.read()).decode("utf-8")
        assert body.startswith("\ufeff")
        assert [row["to"] for row in _rows(body[1:])] == [phones["missing"]]
    finally:
        await session.close()
    async with http.get(f"{system.api_url}/dashboard/campaigns/{campaign_id}/deliveries.csv",
                        allow_redirects=False) as r:
        assert r.status == 303  # no session: to the sign-in page


async def test_an_export_reads_page_after_page(http, system, account, infra, monkeypatch):
    campaign_id, _phones = await _completed_campaign(http, system, account)
    async with create_pool(infra.database_url, max_size=2) as pool:
        whole = "".join([chunk async for chunk in exports.deliveries_csv(pool, campaign_id, state=None, run_id=None)])
        monkeypatch.setattr(exports, "PAGE", 2)
        chunks = [chunk async for chunk in exports.deliveries_csv(pool, campaign_id, state=None, run_id=None)]
    assert len(chunks) == 2  # the header and two rows, then the last row
    assert "".join(chunks) == whole
    assert len(_rows(whole)) == 3


def test_cells_that_a_spreadsheet_would_run_are_quoted():
    assert [exports.cell(v) for v in ("+14155550123", "-12.5", "+1 (415) 555-0123", "Ann", "")] == [
        "+14155550123", "-12.5", "+1 (415) 555-0123", "Ann", ""]
    assert [exports.cell(v) for v in ("=1+1", "@SUM(A1)", "+cmd|' /C calc'!A0", "-2+3", "\tx", "\rx")] == [
        "'=1+1", "'@SUM(A1)", "'+cmd|' /C calc'!A0", "'-2+3", "'\tx", "'\rx"]
    assert exports.cell(None) == ""
