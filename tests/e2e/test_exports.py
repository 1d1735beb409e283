"""A campaign's deliveries as a CSV download: from the API and from the dashboard, scoped to the
account, filtered by state and run, safe to open in a spreadsheet, and read page after page."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import aiohttp
import pytest

from services.api.usecases import exports
from shared.db.pool import create_pool
from tests.conftest import make_account
from tests.support import call, new_phone, results_when, signed_in

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
    assert plain["sent_at"] == first["sent_at"].strftime("%Y-%m-%dT%H:%M:%SZ")  # to the second, as the JSON API
    assert plain["message"] == "Order -42 for Bo"
    times = ("send_at", "queued_at", "sent_at", "delivered_at", "replied_at", "failed_at")
    for row in rows:  # every time to the second, with Z (no microseconds)
        for column in times:
            assert row[column] == "" or re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[column]), row
    assert plain["delivered_at"], plain
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
    session = await signed_in(system, account.key)
    try:
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


def test_times_are_written_to_the_second_in_utc():
    at = datetime(2026, 12, 6, 2, 58, 15, 358442, tzinfo=UTC)
    assert exports.cell(at) == "2026-12-06T02:58:15Z"
    assert exports.cell(at.astimezone(timezone(timedelta(hours=-5)))) == "2026-12-06T02:58:15Z"


CONTACT_HEADER = ["phone", "email", "first_name", "last_name", "company", "timezone"]
CONTACT_EXTRAS = ["contact_id", "opted_out_sms", "opted_out_email", "opted_out_voice", "created_at"]


async def test_an_accounts_contacts_export_as_csv_and_import_back(http, system, account, db):
    url = system.api_url + "/contacts"
    made = []
    for body in (
        {"phone": new_phone(), "first_name": "Ann", "last_name": "Lee", "email": "ann@example.com",
         "company": "Acme", "timezone": "America/New_York", "metadata": {"order": "A-1", "vip": True, "score": 3}},
        {"phone": new_phone(), "first_name": "=cmd()", "metadata": {"order": "B-2"}},
        {"email": "cy@example.com", "first_name": "Cy"},
    ):
        status, created = await call(http, "POST", url, account.headers, body)
        assert status == 201, created
        made.append(created)
    status, _ = await call(http, "PATCH", f"{url}/{made[1]['id']}", account.headers, {"opted_out": {"sms": True}})
    assert status == 200
    _status, group = await call(http, "POST", system.api_url + "/contact-groups", account.headers, {"name": "g"})
    await call(http, "POST", f"{system.api_url}/contact-groups/{group['id']}/members", account.headers,
               {"contact_ids": [made[0]["id"], made[2]["id"]]})

    response, text = await _csv(http, url + ".csv", account.headers)
    assert response.status == 200, text
    assert response.headers["Content-Disposition"] == 'attachment; filename="contacts.csv"'
    header, *lines = list(csv.reader(io.StringIO(text)))
    assert header == [*CONTACT_HEADER, "order", "score", "vip", *CONTACT_EXTRAS]
    rows = [dict(zip(header, line, strict=True)) for line in lines]
    assert [r["contact_id"] for r in rows] == [c["id"] for c in reversed(made)]  # newest first
    cy, cmd, ann = rows
    assert {k: ann[k] for k in (*CONTACT_HEADER, "order", "score", "vip")} == {
        "phone": made[0]["phone"], "email": "ann@example.com", "first_name": "Ann", "last_name": "Lee",
        "company": "Acme", "timezone": "America/New_York", "order": "A-1", "score": "3", "vip": "true"}
    assert (cmd["first_name"], cmd["opted_out_sms"], cmd["opted_out_email"]) == ("'=cmd()", "true", "false")
    assert (cy["phone"], cy["order"]) == ("", "")
    assert cy["created_at"] == made[2]["created_at"]  # ISO 8601, UTC, to the second, as the JSON API writes it
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cy["created_at"]), cy["created_at"]

    session = await signed_in(system, account.key)  # the dashboard's link: the same file, with a byte order mark
    try:
        async with session.get(f"{system.api_url}/dashboard/contacts?group={group['id']}") as page:
            assert f'href="/dashboard/contacts.csv?group={group["id"]}"' in await page.text()
        async with session.get(system.api_url + "/dashboard/contacts.csv") as r:
            assert r.status == 200
            assert (await r.read()).decode("utf-8") == "\ufeff" + text
    finally:
        await session.close()

    _response, text = await _csv(http, url + ".csv?opted_out=sms", account.headers)
    assert [line[0] for line in list(csv.reader(io.StringIO(text)))[1:]] == [made[1]["phone"]]
    _response, text = await _csv(http, f"{url}.csv?group_id={group['id']}", account.headers)
    assert len(list(csv.reader(io.StringIO(text)))) == 3  # the header and the group's two
    status, error = await call(http, "GET", url + ".csv?group_id=grp_nope", account.headers)
    assert (status, error["error"]["details"][0]["field"]) == (404, "group_id")
    status, error = await call(http, "GET", url + ".csv?opted_out=fax", account.headers)
    assert (status, error["error"]["details"][0]["field"]) == (422, "opted_out")
    stranger = await make_account(db)
    _response, text = await _csv(http, url + ".csv", stranger.headers)
    assert text.splitlines() == [",".join(CONTACT_HEADER + CONTACT_EXTRAS)]  # nothing of another account

    # imported into another account, the file gives the same contacts (the ids, times and opt-outs
    # are that account's own: an import never opts anyone out or in)
    _response, text = await _csv(http, url + ".csv", account.headers)
    async with http.post(system.api_url + "/contacts/import", data=text.encode(),
                         headers={**stranger.headers, "Content-Type": "text/csv"}) as response:
        summary = await response.json()
    assert (summary["created"], summary["rejected"]) == (3, 0), summary
    copied = await db.fetch("SELECT * FROM contacts WHERE account_id = $1", stranger.id)
    by_name = {c["first_name"]: c for c in copied}
    # metadata values come back as text (README): True is "true", 3 is "3"
    assert by_name["Ann"]["metadata"] == {"order": "A-1", "score": "3", "vip": "true"}
    assert by_name["Ann"]["timezone"] == "America/New_York"
    assert by_name["'=cmd()"]["opted_out_sms"] is False
    _response, again = await _csv(http, url + ".csv", stranger.headers)
    ours, theirs = (
        [{k: v for k, v in zip(header, line, strict=True) if k not in CONTACT_EXTRAS}
         for line in list(csv.reader(io.StringIO(t)))[1:]]
        for t in (text, again)
    )
    assert sorted(ours, key=str) == sorted(theirs, key=str)


async def test_a_campaigns_deliveries_and_contacts_are_found_by_address(http, system, account):
    campaign_id, phones = await _completed_campaign(http, system, account)
    url = f"{system.api_url}/campaigns/{campaign_id}/deliveries"
    wanted = phones["plain"]
    # encoded, and as curl sends `?to=+1…` (an unencoded `+` in a query is a space)
    for query in (f"?to={quote(wanted)}", f"?to={wanted}", f"?to={quote(wanted)}&state=delivered"):
        status, page = await call(http, "GET", url + query, account.headers)
        assert status == 200, page
        assert [d["to"] for d in page["data"]] == [wanted], query
    status, page = await call(http, "GET", f"{url}?to={quote(wanted)}&state=failed", account.headers)
    assert page["data"] == []
    status, error = await call(http, "GET", url + "?to=12", account.headers)
    assert (status, error["error"]["details"][0]["field"]) == (422, "to")
    status, found = await call(http, "GET", f"{system.api_url}/contacts?phone={wanted}", account.headers)
    assert [c["phone"] for c in found["data"]] == [wanted]


async def test_a_column_or_key_naming_an_opt_out_neither_leaves_in_an_export_nor_comes_in_by_an_import(
    http, system, account, db
):
    # Given a contact whose metadata kept an `opted_out` key from before it was refused
    url = system.api_url + "/contacts"
    phone = new_phone()
    status, made = await call(http, "POST", url, account.headers, {"phone": phone, "plan": "gold"})
    assert status == 201, made
    await db.execute("UPDATE contacts SET metadata = metadata || '{\"opted_out\": false}' WHERE id = $1", made["id"])

    # Then the export writes no such column (an import would skip it: what leaves is what comes back)
    _response, text = await _csv(http, url + ".csv", account.headers)
    header = next(csv.reader(io.StringIO(text)))
    assert header == [*CONTACT_HEADER, "plan", *CONTACT_EXTRAS]

    # and an import skips a column naming an opt-out, as it skips the export's own: no metadata,
    # nobody opted out or in
    other = await make_account(db)
    file = f"phone,Opted Out,opted_out_sms,plan\n{phone},true,true,silver\n"
    async with http.post(system.api_url + "/contacts/import", data=file.encode(),
                         headers={**other.headers, "Content-Type": "text/csv"}) as response:
        summary = await response.json()
    assert (response.status, summary["created"], summary["rejected"]) == (200, 1, 0), summary
    row = await db.fetchrow("SELECT metadata, opted_out_sms FROM contacts WHERE account_id = $1", other.id)
    assert (row["metadata"], row["opted_out_sms"]) == ({"plan": "silver"}, False)
