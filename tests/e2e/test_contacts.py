"""`/contacts` through the API process: create (an upsert), read, list, update, delete, errors,
tenant isolation."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import make_account
from tests.support import call, new_phone

pytestmark = pytest.mark.e2e


def email() -> str:
    return f"{uuid.uuid4().hex[:10]}@example.com"


async def create(http, system, account, body) -> dict:
    status, created = await call(http, "POST", system.api_url + "/contacts", account.headers, body)
    assert status == 201, created
    return created


async def test_create_get_and_upsert_on_phone(http, system, account):
    # Given a contact with every field, a country for its national number and extra keys
    phone = new_phone()
    national = f"({phone[2:5]}) {phone[5:8]}-{phone[8:]}"
    created = await create(
        http,
        system,
        account,
        {
            "first_name": "Ann",
            "last_name": "Lee",
            "email": "Ann.Lee@Example.com",
            "phone": national,
            "country": "US",
            "company": "Acme",
            "timezone": "America/Chicago",
            "metadata": {"plan": "pro"},
            "order_number": "A-17",
        },
    )
    # Then it is stored in E.164 with the other keys as metadata, opted in everywhere
    assert created["id"].startswith("ct_")
    assert created["phone"] == phone
    assert created["email"] == "ann.lee@example.com"
    assert created["metadata"] == {"plan": "pro", "order_number": "A-17"}
    assert created["opted_out"] == {"sms": False, "email": False, "voice": False}
    status, fetched = await call(http, "GET", f"{system.api_url}/contacts/{created['id']}", account.headers)
    assert (status, fetched) == (200, created)

    # When the same phone is created again, it is updated (200), metadata merged
    status, again = await call(
        http,
        "POST",
        system.api_url + "/contacts",
        account.headers,
        {"phone": phone, "first_name": "Annie", "tier": "gold"},
    )
    assert status == 200, again
    assert again["id"] == created["id"]
    assert again["first_name"] == "Annie"
    assert again["last_name"] == "Lee"
    assert again["metadata"] == {"plan": "pro", "order_number": "A-17", "tier": "gold"}


async def test_an_email_only_contact_upserts_on_email_and_gains_a_phone(http, system, account):
    address = email()
    first = await create(http, system, account, {"email": address, "first_name": "Bo"})
    status, same = await call(http, "POST", system.api_url + "/contacts", account.headers, {"email": address.upper()})
    assert (status, same["id"]) == (200, first["id"])
    phone = new_phone()
    status, with_phone = await call(
        http, "POST", system.api_url + "/contacts", account.headers, {"email": address, "phone": phone}
    )
    assert (status, with_phone["id"], with_phone["phone"]) == (200, first["id"], phone)


async def test_every_bad_field_is_listed(http, system, account):
    status, body = await call(
        http,
        "POST",
        system.api_url + "/contacts",
        account.headers,
        {
            "phone": "12",
            "email": "not-an-email",
            "timezone": "Mars/Olympus",
            "country": "Narnia",
        },
    )
    assert status == 422
    assert body["error"]["code"] == "validation_error"
    assert {d["field"] for d in body["error"]["details"]} == {"phone", "email", "timezone", "country"}
    status, body = await call(http, "POST", system.api_url + "/contacts", account.headers, {"first_name": "Nobody"})
    assert status == 422
    assert body["error"]["details"] == [{"field": "phone", "reason": "a contact needs a phone or an email"}]
    status, body = await call(
        http,
        "POST",
        system.api_url + "/contacts",
        account.headers,
        {"phone": new_phone(), "opted_out": {"fax": True}, "first_name": 7},
    )
    assert status == 422
    assert {d["field"] for d in body["error"]["details"]} == {"opted_out.fax", "first_name"}
    async with http.post(system.api_url + "/contacts", headers=account.headers, data=b"{nope") as response:
        assert response.status == 400


async def test_an_email_that_belongs_to_another_contact_is_a_409(http, system, account):
    address = email()
    await create(http, system, account, {"phone": new_phone(), "email": address})
    status, body = await call(
        http, "POST", system.api_url + "/contacts", account.headers, {"phone": new_phone(), "email": address}
    )
    assert status == 409
    assert body["error"]["details"][0]["field"] == "email"


async def test_patch_changes_only_what_is_sent(http, system, account):
    contact = await create(
        http,
        system,
        account,
        {
            "phone": new_phone(),
            "first_name": "Cy",
            "company": "Old",
            "metadata": {"a": 1, "b": 2},
        },
    )
    url = f"{system.api_url}/contacts/{contact['id']}"
    status, patched = await call(
        http,
        "PATCH",
        url,
        account.headers,
        {
            "company": None,
            "timezone": "Europe/Paris",
            "metadata": {"b": None, "c": 3},
            "tier": "gold",
            "opted_out": {"sms": True},
        },
    )
    assert status == 200, patched
    assert patched["first_name"] == "Cy"
    assert patched["company"] is None
    assert patched["timezone"] == "Europe/Paris"
    assert patched["metadata"] == {"a": 1, "c": 3, "tier": "gold"}
    assert patched["opted_out"] == {"sms": True, "email": False, "voice": False}
    status, patched = await call(http, "PATCH", url, account.headers, {"opted_out": {"sms": False, "voice": True}})
    assert patched["opted_out"] == {"sms": False, "email": False, "voice": True}


async def test_patch_errors(http, system, account):
    other = await create(http, system, account, {"phone": new_phone(), "email": email()})
    contact = await create(http, system, account, {"phone": new_phone()})
    url = f"{system.api_url}/contacts/{contact['id']}"
    status, body = await call(http, "PATCH", url, account.headers, {"phone": "nope", "timezone": "Nowhere"})
    assert status == 422
    assert {d["field"] for d in body["error"]["details"]} == {"phone", "timezone"}
    status, body = await call(http, "PATCH", url, account.headers, {"phone": None})
    assert status == 422
    assert body["error"]["details"][0]["reason"] == "a contact needs a phone or an email"
    status, body = await call(http, "PATCH", url, account.headers, {"phone": other["phone"]})
    assert (status, body["error"]["details"][0]["field"]) == (409, "phone")
    status, body = await call(http, "PATCH", url, account.headers, {"email": other["email"]})
    assert (status, body["error"]["details"][0]["field"]) == (409, "email")
    status, _ = await call(http, "PATCH", f"{system.api_url}/contacts/ct_missing", account.headers, {"company": "x"})
    assert status == 404


async def test_delete_is_204_then_404(http, system, account):
    contact = await create(http, system, account, {"phone": new_phone()})
    url = f"{system.api_url}/contacts/{contact['id']}"
    status, _ = await call(http, "DELETE", url, account.headers)
    assert status == 204
    for method in ("GET", "DELETE"):
        status, body = await call(http, method, url, account.headers)
        assert status == 404
        assert body["error"]["code"] == "not_found"


async def test_list_pages_with_a_cursor_and_filters(http, system, account):
    made = [await create(http, system, account, {"phone": new_phone(), "first_name": f"c{i}"}) for i in range(5)]
    await call(
        http, "PATCH", f"{system.api_url}/contacts/{made[1]['id']}", account.headers, {"opted_out": {"email": True}}
    )
    seen, cursor = [], None
    while True:
        url = system.api_url + "/contacts?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, page = await call(http, "GET", url, account.headers)
        assert status == 200, page
        seen += [c["first_name"] for c in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["c4", "c3", "c2", "c1", "c0"]
    status, page = await call(http, "GET", system.api_url + "/contacts?opted_out=email", account.headers)
    assert [c["id"] for c in page["data"]] == [made[1]["id"]]
    status, page = await call(
        http, "GET", f"{system.api_url}/contacts?phone={made[3]['phone'].replace('+', '%2B')}", account.headers
    )
    assert [c["id"] for c in page["data"]] == [made[3]["id"]]
    for bad in ("opted_out=fax", "limit=0", "cursor=zzz", "phone=12"):
        status, _ = await call(http, "GET", f"{system.api_url}/contacts?{bad}", account.headers)
        assert status == 422, bad
    status, _ = await call(http, "GET", system.api_url + "/contacts?group_id=grp_missing", account.headers)
    assert status == 404


async def test_another_accounts_contacts_are_404_and_never_listed(http, system, account, db):
    contact = await create(http, system, account, {"phone": new_phone(), "email": email()})
    other = await make_account(db)
    url = f"{system.api_url}/contacts/{contact['id']}"
    for method, body in (("GET", None), ("PATCH", {"company": "x"}), ("DELETE", None)):
        status, _ = await call(http, method, url, other.headers, body)
        assert status == 404, method
    status, page = await call(http, "GET", system.api_url + "/contacts", other.headers)
    assert page["data"] == []
    # the same phone and email are free in another account: a new contact there
    status, theirs = await call(
        http,
        "POST",
        system.api_url + "/contacts",
        other.headers,
        {"phone": contact["phone"], "email": contact["email"]},
    )
    assert status == 201
    assert theirs["id"] != contact["id"]
    status, mine = await call(http, "GET", url, account.headers)
    assert (status, mine) == (200, contact)


OPT_OUTS_BY_PATCH = "a contact's opt-outs are changed with PATCH /contacts/{id}"


async def test_an_opt_out_is_never_metadata_of_a_campaigns_or_the_apis_contacts(http, system, account, db):
    api, headers = system.api_url, account.headers
    _status, agent = await call(http, "POST", api + "/agents", headers, {"name": "A"})
    phones = [new_phone() for _ in range(3)]

    # Given inline contacts that carry an opt-out as one of their keys (or in their metadata)
    status, body = await call(http, "POST", api + "/campaigns", headers, {
        "name": "c", "type": "sms", "agent_id": agent["id"], "message_template": "Hi",
        "contacts": [{"phone": phones[0], "opted_out": False}, {"phone": phones[1], "plan": "gold"},
                     {"phone": phones[2], "metadata": {"opted_out_sms": True}}],
    })

    # Then the campaign is a 422 naming each, saying where opt-outs are changed; nothing is written
    assert status == 422, body
    details = body["error"]["details"]
    assert [d["field"] for d in details] == ["contacts[0].opted_out", "contacts[2].metadata.opted_out_sms"]
    assert all(OPT_OUTS_BY_PATCH in d["reason"] for d in details), details
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1 AND phone = ANY($2)",
                             account.id, phones) == 0

    # and so is POST /contacts with such a key beside its fields or in its metadata (its own
    # `opted_out` object is the field that sets them)
    for sent, field in (({"opted_out_sms": True}, "opted_out_sms"), ({"metadata": {"opted_out": False}},
                                                                      "metadata.opted_out")):
        status, body = await call(http, "POST", api + "/contacts", headers, {"phone": phones[0], **sent})
        assert status == 422, body
        assert [(d["field"], OPT_OUTS_BY_PATCH in d["reason"]) for d in body["error"]["details"]] == [(field, True)]
    created = await create(http, system, account, {"phone": phones[0], "opted_out": {"sms": True}, "plan": "gold"})
    assert (created["opted_out"]["sms"], created["metadata"]) == (True, {"plan": "gold"})

    # A key of that name kept from before is removed by a null, as any metadata key is
    await db.execute("UPDATE contacts SET metadata = metadata || '{\"opted_out\": false}' WHERE id = $1",
                     created["id"])
    status, body = await call(http, "PATCH", f"{api}/contacts/{created['id']}", headers,
                              {"metadata": {"opted_out": False}})
    assert (status, body["error"]["details"][0]["field"]) == (422, "metadata.opted_out"), body
    status, body = await call(http, "PATCH", f"{api}/contacts/{created['id']}", headers,
                              {"metadata": {"opted_out": None}})
    assert (status, body["metadata"], body["opted_out"]["sms"]) == (200, {"plan": "gold"}, True), body
