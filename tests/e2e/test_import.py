"""CSV import through `POST /contacts/import` and `campaigns contacts import`: counts, row errors
with their lines, upserts on re-import, groups, streaming bodies."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
import uuid

import aiohttp
import pytest

from tests.support import ROOT, call, wait_until

pytestmark = pytest.mark.e2e

ROWS = 100_000
#: Every BAD_EVERY-th row is bad (phone, email, time zone in turn); every DUP_EVERY-th repeats
#: the phone of the row DUP_BACK before it.
BAD_EVERY, DUP_EVERY, DUP_BACK = 250, 1000, 500
BAD = {0: ("phone", "12"), 1: ("email", "not-an-email"), 2: ("timezone", "Mars/Base")}


def phone_of(i: int) -> str:
    return f"+1212{i:07d}"


def contacts_csv(rows: int) -> tuple[bytes, list[tuple[int, str]], int]:
    """The file, the expected (line, field) errors, and how many rows repeat an earlier phone."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(
        ["First Name", "Last Name", "E-mail", "Phone Number", "Company", "Time Zone", "plan", "Signup Date"]
    )
    errors, duplicates = [], 0
    for i in range(rows):
        line = i + 2
        phone = phone_of(i) if i % 3 else f"(212) {i // 10_000:03d}-{i % 10_000:04d}"  # national, read as US
        values = {"phone": phone, "email": f"user{i}@example.com", "timezone": "America/New_York" if i % 2 else ""}
        if i % BAD_EVERY == BAD_EVERY - 1:
            field, bad = BAD[(i // BAD_EVERY) % 3]
            values[field] = bad
            errors.append((line, field))
        elif i % DUP_EVERY == DUP_EVERY - 2:
            values["phone"] = phone_of(i - DUP_BACK)
            values["email"] = f"user{i - DUP_BACK}@example.com"
            duplicates += 1
        writer.writerow(
            [
                f"First{i}",
                f"Last{i}",
                values["email"],
                values["phone"],
                "Acme, Inc.",
                values["timezone"],
                ("free", "pro")[i % 2],
                "" if i % 5 == 0 else "2025-01-01",
            ]
        )
    return out.getvalue().encode(), errors, duplicates


async def post_csv(http, system, account, data: bytes, query: str = "", content_type: str = "text/csv"):
    async def chunks():
        for start in range(0, len(data), 1 << 16):
            yield data[start : start + (1 << 16)]

    async with http.post(
        f"{system.api_url}/contacts/import{query}",
        data=chunks(),
        headers={**account.headers, "Content-Type": content_type},
    ) as response:
        return response.status, await response.json()


async def test_100k_rows_with_bad_rows_and_duplicates_then_a_reimport(http, system, account, db):
    # Given a 100,000-row file with bad rows at known lines and repeated phones
    data, expected_errors, duplicates = contacts_csv(ROWS)
    good = ROWS - len(expected_errors) - duplicates

    # When it is imported (streamed, chunk by chunk) with US as the region of national numbers
    status, summary = await post_csv(http, system, account, data, "?country=US")

    # Then every good row is kept, each bad row is reported with its line and field
    assert status == 200, summary
    assert (summary["rows"], summary["created"], summary["updated"]) == (ROWS, good, 0)
    assert (summary["rejected"], summary["duplicates"]) == (len(expected_errors), duplicates)
    assert [(e["line"], e["field"]) for e in summary["errors"]] == expected_errors
    assert summary["errors_not_listed"] == 0
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account.id) == good
    row = await db.fetchrow("SELECT * FROM contacts WHERE account_id = $1 AND phone = $2", account.id, phone_of(3))
    assert (row["first_name"], row["email"], row["company"], row["timezone"]) == (
        "First3",
        "user3@example.com",
        "Acme, Inc.",
        "America/New_York",
    )
    assert row["metadata"] == {"plan": "pro", "Signup Date": "2025-01-01"}
    national = await db.fetchrow(
        "SELECT * FROM contacts WHERE account_id = $1 AND phone = $2", account.id, "+12120000000"
    )
    assert national["first_name"] == "First0"
    assert national["metadata"] == {"plan": "free"}  # an empty cell is no metadata
    # the last row of a repeated phone wins
    repeated = await db.fetchrow(
        "SELECT * FROM contacts WHERE account_id = $1 AND phone = $2", account.id, phone_of(DUP_EVERY - 2 - DUP_BACK)
    )
    assert repeated["first_name"] == f"First{DUP_EVERY - 2}"

    # When the same file is imported again, it updates instead of duplicating
    status, again = await post_csv(http, system, account, data, "?country=US")
    assert status == 200, again
    assert (again["created"], again["updated"], again["duplicates"], again["rejected"]) == (
        0,
        good,
        duplicates,
        len(expected_errors),
    )
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account.id) == good


async def test_multipart_upload_into_a_group(http, system, account):
    _, group = await call(http, "POST", system.api_url + "/contact-groups", account.headers, {"name": "Imported"})
    data, _, _ = contacts_csv(300)
    form = aiohttp.FormData()
    form.add_field("group_id", group["id"])
    form.add_field("country", "US")
    form.add_field("file", data, filename="contacts.csv", content_type="text/csv")
    async with http.post(system.api_url + "/contacts/import", data=form, headers=account.headers) as response:
        assert response.status == 200
        summary = await response.json()
    assert summary["created"] == 299
    _, fetched = await call(http, "GET", f"{system.api_url}/contact-groups/{group['id']}", account.headers)
    assert fetched["member_count"] == 299


async def test_email_rows_quotes_and_emails_of_other_contacts(http, system, account, db):
    # Given a file with an email-only row, a quoted multi-line cell, and an email on two phones
    data = (
        b"email,phone,first_name,notes\n"
        b'solo@example.com,,Solo,"line one\nline two"\n'  # email only: created
        b"taken@example.com,+12125550001,Tess,\n"  # created
        b"taken@example.com,+12125550002,Other,\n"  # same email, another phone: refused
        b",,,just a note\n"  # neither phone nor email
    )
    status, summary = await post_csv(http, system, account, data)
    assert status == 200, summary
    assert (summary["created"], summary["updated"], summary["rejected"]) == (2, 0, 2)
    # (rows of different phones may be written side by side: whichever comes second is refused)
    clash, empty = summary["errors"]
    assert (clash["line"], clash["field"]) in ((4, "email"), (5, "email"))
    assert ("+12125550001" if clash["line"] == 5 else "+12125550002") in clash["reason"]
    assert (empty["line"], empty["field"]) == (6, "phone")
    # When a later file gives the email-only contact a phone, it gains it (an update)
    _, summary = await post_csv(http, system, account, b"email,phone\nSOLO@example.com,+12125550003\n")
    assert (summary["created"], summary["updated"], summary["rejected"]) == (0, 1, 0)
    solo = await db.fetchrow("SELECT * FROM contacts WHERE account_id = $1 AND email = 'solo@example.com'", account.id)
    assert solo["phone"] == "+12125550003"
    assert solo["metadata"] == {"notes": "line one\nline two"}
    # and an email-only row and a phone row of one person in one file make one contact
    status, summary = await post_csv(
        http, system, account, b"email,phone\nduo@example.com,\nduo@example.com,+12125550004\n"
    )
    assert (summary["created"], summary["duplicates"]) == (1, 1)


async def test_semicolon_tab_and_utf16_exports_import_like_a_comma_one(http, system, account, db):
    # A spreadsheet's export in a locale whose decimal separator is a comma: `;` between cells
    phone = phone_of(777_001)
    data = f'First Name;Phone Number;E-mail;score\r\nJosé;{phone};jose@example.com;"4,5"\r\n'.encode()
    status, summary = await post_csv(http, system, account, data)
    assert status == 200, summary
    assert (summary["created"], summary["rejected"]) == (1, 0)
    row = await db.fetchrow("SELECT * FROM contacts WHERE account_id = $1 AND phone = $2", account.id, phone)
    assert (row["first_name"], row["email"], row["metadata"]) == ("José", "jose@example.com", {"score": "4,5"})

    # and a tab-separated one, sent as such
    tabbed = f"phone\tplan\n{phone_of(777_002)}\tpro\n".encode()
    status, summary = await post_csv(http, system, account, tabbed, content_type="text/tab-separated-values")
    assert (status, summary["created"]) == (200, 1), summary

    # and Excel's "Unicode text": tab-separated UTF-16 with a byte order mark, no charset said
    unicode_text = f"Phone\tFirst Name\r\n{phone_of(777_003)}\tZoë\r\n".encode("utf-16")
    status, summary = await post_csv(http, system, account, unicode_text, content_type="text/plain")
    assert (status, summary["created"]) == (200, 1), summary
    stored = await db.fetchval(
        "SELECT first_name FROM contacts WHERE account_id = $1 AND phone = $2", account.id, phone_of(777_003)
    )
    assert stored == "Zoë"


async def test_import_errors(http, system, account, db):
    status, body = await post_csv(http, system, account, b"name,plan\nAnn,pro\n")
    assert status == 422
    assert body["error"]["details"][0]["field"] == "header"
    status, body = await post_csv(http, system, account, b"")
    assert status == 422
    status, body = await post_csv(http, system, account, b"phone\n+12125550100\n", "?group_id=grp_missing")
    assert status == 404
    status, body = await post_csv(http, system, account, b"phone\n+12125550100\n", "?country=Narnia")
    assert status == 422
    status, body = await post_csv(http, system, account, b"phone\n+12125550100\n", content_type="application/json")
    assert status == 415
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account.id) == 0
    # errors beyond the first 1,000 are counted, not listed
    many = b"phone\n" + b"12\n" * 1500
    status, body = await post_csv(http, system, account, many)
    assert (status, body["rejected"], len(body["errors"]), body["errors_not_listed"]) == (200, 1500, 1000, 500)


async def test_a_header_naming_a_column_twice_is_refused_naming_it(http, system, account, db, infra, tmp_path):
    """Given a file whose header names a column twice, the import refuses it whole (422, the
    column and its places named), writes nothing, and the command line says the same."""
    status, body = await post_csv(http, system, account, b"phone,phone\n+12125550100,+12125550101\n")
    assert status == 422, body
    assert body["error"]["details"] == [
        {"field": "header", "reason": "the column 'phone' is named twice (columns 1, 2)"}]
    status, body = await post_csv(http, system, account,
                                  b"email,first_name,email,plan,plan\nann@example.com,Ann,a2@example.com,x,y\n")
    assert status == 422, body
    assert "'email'" in body["error"]["message"]
    assert [d["reason"] for d in body["error"]["details"]] == [
        "the column 'email' is named twice (columns 1, 3)", "the column 'plan' is named twice (columns 4, 5)"]
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account.id) == 0
    path = tmp_path / "twice.csv"
    path.write_bytes(b"email,first_name,email\nann@example.com,Ann,a2@example.com\n")
    env = {**os.environ, "CAMPAIGNS_DATABASE_URL": infra.database_url}
    code, _out, err = await campaigns_cli("contacts", "import", str(path), "--account", account.id, env=env)
    assert code == 1
    assert "the column 'email' is named twice (columns 1, 3)" in err
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account.id) == 0


async def campaigns_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run `campaigns ARGS…` as a process: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.cli", *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, out.decode(), err.decode()


async def test_cli_import_prints_the_summary_and_shows_progress(infra, account, db, tmp_path):
    # Given a group and a 2,000-row file on disk
    group_id = f"grp_cli{uuid.uuid4().hex[:8]}"
    await db.execute("INSERT INTO contact_groups (id, account_id, name) VALUES ($1, $2, 'CLI')", group_id, account.id)
    data, errors, duplicates = contacts_csv(2000)
    path = tmp_path / "contacts.csv"
    path.write_bytes(data)
    env = {**os.environ, "CAMPAIGNS_DATABASE_URL": infra.database_url}
    # When the CLI imports it straight into the database
    code, out, err = await campaigns_cli(
        "contacts", "import", str(path), "--account", account.id, "--group", group_id, "--country", "US", env=env
    )
    # Then it prints the summary as JSON, and its progress on stderr
    assert code == 0, err
    summary = json.loads(out)
    expected = (2000 - len(errors) - duplicates, len(errors), duplicates)
    assert (summary["created"], summary["rejected"], summary["duplicates"]) == expected
    assert "importing" in err
    members = await db.fetchval("SELECT count(*) FROM group_members WHERE group_id = $1", group_id)
    assert members == summary["created"]
    code, out, err = await campaigns_cli("contacts", "import", str(path), "--account", "acct_missing", env=env)
    assert code == 1
    assert "acct_missing" in err
    code, out, err = await campaigns_cli(
        "contacts", "import", str(path), "--account", account.id, "--country", "XX", env=env
    )
    assert code == 2
    assert "--country" in err


async def test_an_upload_cut_off_midway_keeps_its_committed_batches_and_a_resend_completes_it(
    http, system, account, db
):
    # Given a 60,000-row file of which the client sends 80% and then goes away
    rows = 60_000
    data = ("phone,first_name\n" + "".join(f"{phone_of(i)},First{i}\n" for i in range(rows))).encode()
    host, port = system.api_url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"POST /contacts/import HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {account.key}\r\n"
        f"Content-Type: text/csv\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    writer.write(head.encode() + data[: len(data) * 4 // 5])
    await writer.drain()

    async def stored() -> int:
        return await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account.id)

    await wait_until(stored, timeout=30, message="a first batch committed")
    writer.close()
    await writer.wait_closed()

    # Then the API notes the client's departure (a warning, not a 500 with a traceback) and
    # leaves no transaction open
    api = system.services["api"]

    async def cut_off_logged() -> list[dict]:
        lines = api.output().splitlines()
        return [json.loads(line) for line in lines if '"http.client_gone"' in line and "/contacts/import" in line]

    gone = await wait_until(cut_off_logged, timeout=30, message="the API logs the cut-off upload")
    assert gone[-1]["level"] == "warning"

    async def none_open() -> bool:
        open_transactions = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND state LIKE 'idle in transaction%'"
        )
        return open_transactions == 0

    await wait_until(none_open, timeout=10, message="no transaction left open")
    kept = await stored()
    assert 0 < kept < rows  # whole batches: what was committed before the cut stays

    # When the whole file is sent again, it completes the import: the kept rows are updated
    status, summary = await post_csv(http, system, account, data)
    assert status == 200, summary
    assert (summary["created"], summary["updated"], summary["rejected"]) == (rows - kept, kept, 0)
    assert await stored() == rows


async def test_a_reimport_writes_only_what_changed_and_counts_each_contact_once(http, system, account, db):
    # Given four contacts imported once
    a, b, c, d = (phone_of(888_000 + i) for i in range(4))
    first = f"phone,first_name,plan\n{a},Ann,pro\n{b},Bob,pro\n{c},Cy,pro\n{d},Di,pro\n".encode()
    status, summary = await post_csv(http, system, account, first)
    assert (status, summary["created"]) == (200, 4), summary

    async def stamps() -> dict[str, tuple]:
        rows = await db.fetch(
            "SELECT phone, first_name, metadata, updated_at FROM contacts WHERE account_id = $1", account.id
        )
        return {r["phone"]: (r["first_name"], r["metadata"], r["updated_at"]) for r in rows}

    before = await stamps()
    _, group = await call(http, "POST", f"{system.api_url}/contact-groups", account.headers, {"name": "sync"})

    # When a file comes again, into a group: A as it was (twice), B changed, C as it was and then
    # changed, D absent
    again = f"phone,first_name,plan\n{a},Ann,pro\n{b},Bobby,pro\n{c},Cy,pro\n{a},Ann,pro\n{c},Cyrus,team\n".encode()
    status, summary = await post_csv(http, system, account, again, f"?group_id={group['id']}")

    # Then A, B and C count as updated once each (the repeats of A and C are duplicates), only
    # B and C were written, and all three joined the group
    assert status == 200, summary
    assert (summary["created"], summary["updated"], summary["duplicates"]) == (0, 3, 2)
    after = await stamps()
    assert after[a] == before[a]  # not written: same updated_at
    assert after[b][0] == "Bobby"
    assert after[b][2] > before[b][2]
    assert after[c][:2] == ("Cyrus", {"plan": "team"})
    assert after[c][2] > before[c][2]
    assert after[d] == before[d]
    members = await db.fetch(
        "SELECT c.phone FROM group_members m JOIN contacts c ON c.id = m.contact_id WHERE m.group_id = $1", group["id"]
    )
    assert sorted(r["phone"] for r in members) == sorted([a, b, c])


async def test_bytes_not_valid_in_the_encoding_guessed_refuse_their_row_not_damage_it(http, system, account, db):
    # Given a Windows-1252 file whose first 4 KB are plain ASCII (so read as UTF-8) and whose only
    # accented name, "José", is on row 201
    rows = [f"{phone_of(880_000 + i)},Name{i}" for i in range(200)] + [f"{phone_of(880_200)},José"]
    rows.append(f"{phone_of(880_201)},Zoe")
    data = ("phone,First Name\r\n" + "\r\n".join(rows) + "\r\n").encode("cp1252")
    assert data.index("é".encode("cp1252")) > 4096
    status, summary = await post_csv(http, system, account, data)
    # Then that row is reported (its line, its field, why, what to do) and the good rows kept
    assert status == 200, summary
    assert (summary["rows"], summary["created"], summary["rejected"]) == (202, 201, 1)
    [error] = summary["errors"]
    assert (error["line"], error["field"]) == (202, "first_name")
    assert "not valid UTF-8" in error["reason"]
    assert "save the file as UTF-8" in error["reason"]
    # and nothing damaged was created
    names = await db.fetch("SELECT phone, first_name FROM contacts WHERE account_id = $1", account.id)
    assert not any("\ufffd" in (r["first_name"] or "") for r in names)
    assert phone_of(880_200) not in {r["phone"] for r in names}
    assert phone_of(880_201) in {r["phone"] for r in names}


async def test_a_quote_never_closed_refuses_its_row_instead_of_swallowing_the_file(http, system, account, db):
    data = b'phone,first_name\n+14155550413,before\n+14155550414,"unterminated\n+14155550415,ok\n'
    status, summary = await post_csv(http, system, account, data)
    assert status == 200, summary
    assert summary["errors"] == [{"line": 3, "field": "row", "reason": "a quote opened at line 3 is never closed"}]
    stored = await db.fetch("SELECT phone, first_name FROM contacts WHERE account_id = $1", account.id)
    assert {r["phone"]: r["first_name"] for r in stored} == {"+14155550413": "before", "+14155550415": "ok"}
    assert (summary["rows"], summary["created"], summary["rejected"]) == (3, 2, 1)
