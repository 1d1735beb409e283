"""`/contact-groups` and their members through the API process, and an SMS campaign sent to a
group made here."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import make_account
from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e


async def new_group(http, system, account, name: str = "VIPs") -> dict:
    status, group = await call(http, "POST", system.api_url + "/contact-groups", account.headers, {"name": name})
    assert status == 201, group
    return group


async def new_contacts(http, system, account, count: int) -> list[dict]:
    made = []
    for _ in range(count):
        status, contact = await call(
            http,
            "POST",
            system.api_url + "/contacts",
            account.headers,
            {"phone": new_phone(), "email": f"{uuid.uuid4().hex[:10]}@example.com"},
        )
        assert status == 201, contact
        made.append(contact)
    return made


async def test_create_get_rename_list_delete(http, system, account):
    group = await new_group(http, system, account, "Trial users")
    assert group["id"].startswith("grp_")
    assert (group["name"], group["member_count"]) == ("Trial users", 0)
    assert group["created_at"].endswith("Z")
    url = f"{system.api_url}/contact-groups/{group['id']}"
    status, fetched = await call(http, "GET", url, account.headers)
    assert (status, fetched) == (200, group)
    status, renamed = await call(http, "PATCH", url, account.headers, {"name": "Paying users"})
    assert (status, renamed["name"]) == (200, "Paying users")
    second = await new_group(http, system, account, "Second")
    status, page = await call(http, "GET", system.api_url + "/contact-groups?limit=1", account.headers)
    assert [g["id"] for g in page["data"]] == [second["id"]]
    status, rest = await call(
        http, "GET", f"{system.api_url}/contact-groups?limit=1&cursor={page['next_cursor']}", account.headers
    )
    assert [g["id"] for g in rest["data"]] == [group["id"]]
    assert rest["next_cursor"] is None
    status, _ = await call(http, "DELETE", url, account.headers)
    assert status == 204
    status, _ = await call(http, "GET", url, account.headers)
    assert status == 404


async def test_group_errors(http, system, account):
    for body in ({}, {"name": ""}, {"name": "x" * 201}):
        status, error = await call(http, "POST", system.api_url + "/contact-groups", account.headers, body)
        assert status == 422, body
        assert error["error"]["details"][0]["field"] == "name"
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        status, _ = await call(http, method, f"{system.api_url}/contact-groups/grp_missing", account.headers, body)
        assert status == 404, method


async def test_members_by_id_phone_and_email_with_unknown_ones_reported(http, system, account):
    # Given a group and three contacts
    group = await new_group(http, system, account)
    a, b, c = await new_contacts(http, system, account, 3)
    url = f"{system.api_url}/contact-groups/{group['id']}/members"
    # When they are added by id, by phone (national format) and by email, beside unknown ones
    national = f"{b['phone'][2:5]}-{b['phone'][5:8]}-{b['phone'][8:]}"
    status, added = await call(
        http,
        "POST",
        url,
        account.headers,
        {
            "contact_ids": [a["id"], "ct_unknown"],
            "phones": [national, "+14155550000", "12"],
            "emails": [c["email"].upper(), "nobody@example.com"],
            "country": "US",
        },
    )
    # Then the known ones are added and the others reported
    assert status == 200, added
    assert (added["matched"], added["added"], added["member_count"]) == (3, 3, 3)
    assert added["not_found"] == {
        "contact_ids": ["ct_unknown"],
        "phones": ["+14155550000"],
        "emails": ["nobody@example.com"],
    }
    assert [i["field"] for i in added["invalid"]] == ["phones[2]"]
    status, again = await call(http, "POST", url, account.headers, {"contact_ids": [a["id"]]})
    assert (again["added"], again["member_count"]) == (0, 3)
    status, page = await call(http, "GET", url + "?limit=2", account.headers)
    assert [m["id"] for m in page["data"]] == [c["id"], b["id"]]
    status, rest = await call(http, "GET", f"{url}?cursor={page['next_cursor']}", account.headers)
    assert [m["id"] for m in rest["data"]] == [a["id"]]
    status, listed = await call(http, "GET", f"{system.api_url}/contacts?group_id={group['id']}", account.headers)
    assert len(listed["data"]) == 3
    # When one is removed by phone
    status, removed = await call(
        http, "DELETE", url, account.headers, {"phones": [a["phone"]], "contact_ids": ["ct_x"]}
    )
    assert (status, removed["removed"], removed["member_count"]) == (200, 1, 2)
    assert removed["not_found"]["contact_ids"] == ["ct_x"]
    status, _ = await call(http, "POST", url, account.headers, {})
    assert status == 422
    status, _ = await call(http, "POST", url, account.headers, {"contact_ids": "ct_1"})
    assert status == 422
    # deleting a contact drops its membership; deleting the group keeps the contacts
    await call(http, "DELETE", f"{system.api_url}/contacts/{b['id']}", account.headers)
    status, fetched = await call(http, "GET", f"{system.api_url}/contact-groups/{group['id']}", account.headers)
    assert fetched["member_count"] == 1
    status, _ = await call(http, "DELETE", f"{system.api_url}/contact-groups/{group['id']}", account.headers)
    assert status == 204
    status, _ = await call(http, "GET", f"{system.api_url}/contacts/{c['id']}", account.headers)
    assert status == 200


async def test_another_accounts_groups_are_404_and_its_contacts_unknown(http, system, account, db):
    group = await new_group(http, system, account)
    (mine,) = await new_contacts(http, system, account, 1)
    other = await make_account(db)
    url = f"{system.api_url}/contact-groups/{group['id']}"
    for method, path, body in (
        ("GET", "", None),
        ("PATCH", "", {"name": "x"}),
        ("DELETE", "", None),
        ("GET", "/members", None),
        ("POST", "/members", {"contact_ids": [mine["id"]]}),
        ("DELETE", "/members", {"contact_ids": [mine["id"]]}),
    ):
        status, _ = await call(http, method, url + path, other.headers, body)
        assert status == 404, (method, path)
    status, page = await call(http, "GET", system.api_url + "/contact-groups", other.headers)
    assert page["data"] == []
    # B's own group cannot take A's contact, by id, phone or email
    theirs = await new_group(http, system, other)
    status, added = await call(
        http,
        "POST",
        f"{system.api_url}/contact-groups/{theirs['id']}/members",
        other.headers,
        {"contact_ids": [mine["id"]], "phones": [mine["phone"]], "emails": [mine["email"]]},
    )
    assert (status, added["added"], added["member_count"]) == (200, 0, 0)
    assert added["not_found"] == {"contact_ids": [mine["id"]], "phones": [mine["phone"]], "emails": [mine["email"]]}
    status, _ = await call(http, "GET", f"{system.api_url}/contacts?group_id={group['id']}", other.headers)
    assert status == 404


async def test_a_group_used_by_an_unfinished_campaign_cannot_be_deleted(http, system, account):
    group = await new_group(http, system, account)
    await new_contacts(http, system, account, 1)
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Ava"})
    status, campaign = await call(
        http,
        "POST",
        system.api_url + "/campaigns",
        account.headers,
        {
            "name": "c",
            "agent_id": agent["id"],
            "type": "sms",
            "contact_group_id": group["id"],
            "message_template": "hi",
        },
    )
    assert status == 201, campaign
    status, error = await call(http, "DELETE", f"{system.api_url}/contact-groups/{group['id']}", account.headers)
    assert status == 409
    assert campaign["id"] in error["error"]["message"]
    await call(http, "POST", f"{system.api_url}/campaigns/{campaign['id']}/cancel", account.headers)
    status, _ = await call(http, "DELETE", f"{system.api_url}/contact-groups/{group['id']}", account.headers)
    assert status == 204


async def test_a_campaign_on_a_group_sends_to_each_member(http, system, account, fake_twilio):
    # Given a group of 12 contacts made through the API
    group = await new_group(http, system, account, "Reminders")
    members = await new_contacts(http, system, account, 12)
    status, added = await call(
        http,
        "POST",
        f"{system.api_url}/contact-groups/{group['id']}/members",
        account.headers,
        {"contact_ids": [m["id"] for m in members]},
    )
    assert added["member_count"] == 12
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Riley"})
    # When an SMS campaign on the group is created and launched
    status, campaign = await call(
        http,
        "POST",
        system.api_url + "/campaigns",
        account.headers,
        {
            "name": "Appointment Reminders",
            "agent_id": agent["id"],
            "type": "sms",
            "contact_group_id": group["id"],
            "message_template": "Hi, this is {{agent_name}}.",
            "max_concurrent": 4,
        },
    )
    assert status == 201, campaign
    assert campaign["total_contacts"] == 12
    status, launched = await call(http, "POST", f"{system.api_url}/campaigns/{campaign['id']}/launch", account.headers)
    assert status == 200, launched

    # Then it completes with every member sent once
    async def completed() -> dict | None:
        _, results = await call(http, "GET", f"{system.api_url}/campaigns/{campaign['id']}/results", account.headers)
        return results if results["status"] == "completed" else None

    results = await wait_until(completed, timeout=60, message="group campaign completed")
    assert results["sent"] == results["total_contacts"] == 12
    assert results["failed"] == 0
    for member in members:
        assert len(fake_twilio.sent_to(member["phone"])) == 1


async def test_a_drafts_contacts_follow_its_groups_until_it_is_launched(http, system, account, db):
    # Given a draft on an empty group
    group = await new_group(http, system, account, "Later")
    status, agent = await call(http, "POST", system.api_url + "/agents", account.headers, {"name": "Riley"})
    status, draft = await call(http, "POST", system.api_url + "/campaigns", account.headers, {
        "name": "Follows", "agent_id": agent["id"], "type": "sms", "contact_group_id": group["id"],
        "message_template": "Hi"})
    assert (status, draft["total_contacts"]) == (201, 0)
    campaign = f"{system.api_url}/campaigns/{draft['id']}"
    members_url = f"{system.api_url}/contact-groups/{group['id']}/members"

    async def total() -> int:
        _status, found = await call(http, "GET", campaign, account.headers)
        _status, results = await call(http, "GET", campaign + "/results", account.headers)
        assert found["total_contacts"] == results["total_contacts"]
        return found["total_contacts"]

    # When members are added, one removed, and one deleted: it counts them each time
    members = await new_contacts(http, system, account, 4)
    status, _ = await call(http, "POST", members_url, account.headers, {"contact_ids": [m["id"] for m in members]})
    assert await total() == 4
    status, _ = await call(http, "DELETE", members_url, account.headers, {"contact_ids": [members[0]["id"]]})
    assert await total() == 3
    status, _ = await call(http, "DELETE", f"{system.api_url}/contacts/{members[1]['id']}", account.headers)
    assert (status, await total()) == (204, 2)
    # and a member added behind the API's back (as an import's) is counted at launch
    [late] = await new_contacts(http, system, account, 1)
    await db.execute("INSERT INTO group_members (group_id, contact_id) VALUES ($1, $2)", group["id"], late["id"])
    status, launched = await call(http, "POST", campaign + "/launch", account.headers)
    assert status == 200, launched
    assert launched["total_contacts"] == 3
    await call(http, "POST", campaign + "/cancel", account.headers)
