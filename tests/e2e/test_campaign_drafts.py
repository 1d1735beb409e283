"""A draft campaign changed (`PATCH /campaigns/{id}`) and deleted (`DELETE /campaigns/{id}`):
checked as a create is, all or nothing, and only while it is a draft."""

from __future__ import annotations

import pytest

from tests.conftest import make_account
from tests.support import call, new_phone

pytestmark = pytest.mark.e2e


@pytest.fixture
async def draft(http, system, account):
    """(url of a new SMS draft with two inline contacts, its body, its agent id)."""
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Ava"})
    status, body = await call(
        http, "POST", system.api_url + "/campaigns", account.headers,
        {"name": "Draft", "agent_id": agent["id"], "type": "sms", "contacts": [new_phone(), new_phone()],
         "message_template": "Hi {{first_name}}", "schedule": "2030-01-01T09:00:00Z", "max_concurrent": 3},
    )
    assert status == 201, body
    return f"{system.api_url}/campaigns/{body['id']}", body, agent["id"]


async def _recipients(db, campaign_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT c.phone FROM campaign_recipients r JOIN contacts c ON c.id = r.contact_id "
        "WHERE r.campaign_id = $1 ORDER BY r.position", campaign_id,
    )
    return [r["phone"] for r in rows]


async def test_a_draft_changes_only_the_fields_given(http, system, account, draft, db):
    url, created, _agent = draft
    before = await _recipients(db, created["id"])
    status, body = await call(
        http, "PATCH", url, account.headers,
        {"name": "Renamed", "config": {"max_retries": 5}, "sending_window": {"start_hour": 9, "end_hour": 17}},
    )
    assert status == 200, body
    assert (body["name"], body["max_retries"], body["sending_window"]["start_hour"]) == ("Renamed", 5, 9)
    # the rest is as it was
    assert (body["message_template"], body["max_concurrent"], body["scheduled_at"], body["total_contacts"]) == (
        "Hi {{first_name}}", 3, created["scheduled_at"], 2,
    )
    assert await _recipients(db, created["id"]) == before
    _status, fetched = await call(http, "GET", url, account.headers)
    assert fetched["name"] == "Renamed"
    stamps = await db.fetchrow("SELECT created_at, updated_at FROM campaigns WHERE id = $1", created["id"])
    assert stamps["updated_at"] > stamps["created_at"]


async def test_contacts_and_groups_given_replace_the_drafts(http, system, account, draft, db):
    url, created, _agent = draft
    grouped = new_phone()
    _status, group = await call(http, "POST", system.api_url + "/contact-groups", account.headers, {"name": "G"})
    _status, contact = await call(http, "POST", system.api_url + "/contacts", account.headers, {"phone": grouped})
    await call(http, "POST", f"{system.api_url}/contact-groups/{group['id']}/members", account.headers,
               {"contact_ids": [contact["id"]]})
    phones = [new_phone() for _ in range(3)]
    status, body = await call(
        http, "PATCH", url, account.headers, {"contacts": phones, "contact_group_id": group["id"]}
    )
    assert status == 200, body
    assert await _recipients(db, created["id"]) == phones
    assert (body["contact_group_ids"], body["total_contacts"]) == ([group["id"]], 4)
    status, body = await call(http, "PATCH", url, account.headers, {"contact_group_ids": []})
    assert (status, body["contact_group_ids"], body["total_contacts"]) == (200, [], 3)


async def test_a_bad_change_is_422_or_404_and_changes_nothing(http, system, account, draft, db):
    url, created, _agent = draft
    before = await _recipients(db, created["id"])
    status, error = await call(
        http, "PATCH", url, account.headers,
        {"name": "Never", "contacts": [new_phone(), "12"], "timezone": "Mars/Olympus"},
    )
    assert status == 422, error
    assert {d["field"] for d in error["error"]["details"]} == {"contacts[1]", "timezone"}
    for change, field in (({"template_id": "tpl_missing"}, "template_id"),
                          ({"agent_id": "ag_missing"}, "agent_id"),
                          ({"contact_group_ids": ["grp_missing"]}, "contact_group_ids")):
        status, error = await call(http, "PATCH", url, account.headers, {"name": "Never", **change})
        assert status == 404, (change, error)
        assert error["error"]["details"][0]["field"] == field
    status, error = await call(http, "PATCH", url, account.headers, {"type": "email", "subject": "S"})
    assert status == 422, error  # its contacts are phones: an email draft needs them again
    assert error["error"]["details"][0]["field"] == "contacts"
    status, error = await call(http, "PATCH", url, account.headers, {"name": ""})
    assert status == 422, error
    _status, still = await call(http, "GET", url, account.headers)
    assert (still["name"], still["channel"], still["timezone"]) == ("Draft", "sms", created["timezone"])
    assert await _recipients(db, created["id"]) == before


async def test_a_new_template_replaces_the_texts_it_filled(http, system, account, draft):
    url, _created, _agent = draft
    status, template = await call(http, "POST", system.api_url + "/templates", account.headers,
                                  {"name": "T", "channel": "sms", "body": "From the template, {{first_name}}"})
    assert status == 201, template
    status, body = await call(http, "PATCH", url, account.headers, {"template_id": template["id"]})
    assert (status, body["template_id"], body["message_template"]) == (
        200, template["id"], "From the template, {{first_name}}"
    )


async def test_a_draft_keeps_the_texts_of_a_deleted_template_and_stays_changeable(http, system, account):
    # Given a draft whose texts came from a template, and the template deleted since
    _status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Ava"})
    status, template = await call(http, "POST", system.api_url + "/templates", account.headers,
                                  {"name": "tmp", "channel": "sms", "body": "hello {{first_name}}"})
    assert status == 201, template
    status, created = await call(http, "POST", system.api_url + "/campaigns", account.headers,
                                 {"name": "From a template", "agent_id": agent["id"], "type": "sms",
                                  "contacts": [new_phone()], "template_id": template["id"],
                                  "scheduled_at": "2030-01-01T09:00:00Z"})
    assert (status, created["message_template"]) == (201, "hello {{first_name}}"), created
    status, _ = await call(http, "DELETE", f"{system.api_url}/templates/{template['id']}", account.headers)
    assert status == 204
    url = f"{system.api_url}/campaigns/{created['id']}"

    # When a change does not name the template, it is made, and the texts it copied stay
    status, changed = await call(http, "PATCH", url, account.headers, {"max_concurrent": 3})
    assert (status, changed["max_concurrent"], changed["message_template"]) == (
        200, 3, "hello {{first_name}}"
    ), changed
    status, launched = await call(http, "POST", url + "/launch", account.headers)
    assert (status, launched["status"]) == (200, "scheduled"), launched
    await call(http, "POST", url + "/cancel", account.headers)


async def test_a_change_naming_a_deleted_template_is_refused(http, system, account, draft):
    url, _created, _agent = draft
    status, template = await call(http, "POST", system.api_url + "/templates", account.headers,
                                  {"name": "gone", "channel": "sms", "body": "hello"})
    status, _ = await call(http, "DELETE", f"{system.api_url}/templates/{template['id']}", account.headers)
    assert status == 204
    status, error = await call(http, "PATCH", url, account.headers, {"template_id": template["id"]})
    assert status == 404, error
    assert error["error"]["details"] == [{"field": "template_id", "reason": "no such template in this account"}]
    status, error = await call(http, "PATCH", url, account.headers, {"config": {"template_id": template["id"]}})
    assert status == 404, error


async def test_only_a_draft_is_changed_or_deleted(http, system, account, draft):
    url, _created, _agent = draft
    status, launched = await call(http, "POST", url + "/launch", account.headers)
    assert (status, launched["status"]) == (200, "scheduled")
    status, error = await call(http, "PATCH", url, account.headers, {"name": "Late"})
    assert status == 409, error
    assert error["error"]["message"] == "only a draft campaign can be changed; this one is scheduled"
    status, error = await call(http, "DELETE", url, account.headers)
    assert status == 409, error
    assert "cancel it instead" in error["error"]["message"]
    _status, still = await call(http, "GET", url, account.headers)
    assert (still["name"], still["status"]) == ("Draft", "scheduled")


async def test_a_deleted_draft_is_gone_and_its_contacts_stay(http, system, account, draft, db):
    url, created, _agent = draft
    phones = await _recipients(db, created["id"])
    status, _body = await call(http, "DELETE", url, account.headers)
    assert status == 204
    for method in ("GET", "DELETE", "PATCH"):
        status, error = await call(http, method, url, account.headers, {"name": "x"} if method == "PATCH" else None)
        assert status == 404, (method, error)
    kept = await db.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1 AND phone = ANY($2)",
                             account.id, phones)
    assert kept == 2


async def test_another_account_cannot_change_or_delete_a_draft(http, system, draft, db):
    url, _created, _agent = draft
    other = await make_account(db)
    status, _error = await call(http, "PATCH", url, other.headers, {"name": "Theirs"})
    assert status == 404
    status, _error = await call(http, "DELETE", url, other.headers)
    assert status == 404
