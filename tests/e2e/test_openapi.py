"""GET /openapi.json is valid OpenAPI 3.1, and fuzzing the live API over it finds no 500 and no
answer the document does not allow (schemathesis)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from services.api.routes import OPERATIONS
from tests.conftest import make_account
from tests.support import call, new_phone, wait_until

pytestmark = pytest.mark.e2e


async def test_the_document_is_valid_openapi_31_and_covers_every_route(http, system):
    status, document = await call(http, "GET", system.api_url + "/openapi.json")
    assert status == 200
    assert document["openapi"] == "3.1.0"
    validate(document)
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    assert documented == {(op.method, op.path) for op in OPERATIONS}
    create = document["paths"]["/campaigns"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CampaignCreate"
    }
    properties = document["components"]["schemas"]["CampaignCreate"]["properties"]
    assert "message_template" in properties
    # the seeds' names for fields (`type`, `schedule`) are documented as the synonyms they are
    for synonym, name in (("type", "channel"), ("schedule", "scheduled_at"), ("caller_id", "from_number")):
        assert properties[synonym]["description"] == f"Synonym of `{name}`.", synonym


async def _document(http, system) -> dict:
    status, document = await call(http, "GET", system.api_url + "/openapi.json")
    assert status == 200
    return document


def _operations(document: dict):
    """(method, path, operation) of every operation of the document."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


async def test_the_posts_that_honour_an_idempotency_key_declare_it_and_its_409(http, system, account):
    document = await _document(http, system)
    declared = {(method, path) for method, path, op in _operations(document)
                if any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in op["parameters"])}
    # every creating POST; not the ones that ignore the header (README, Idempotency)
    ignoring = {"/api-keys", "/contacts/import", *(f"/campaigns/{{id}}/{a}" for a in ("launch", "pause", "resume",
                                                                                      "cancel"))}
    posts = {(method, path) for method, path, _ in _operations(document) if method == "POST"}
    assert declared == {(method, path) for method, path in posts if path not in ignoring}
    assert ("POST", "/campaigns") in declared
    assert ("POST", "/api-keys") not in declared
    for method, path in declared:
        operation = document["paths"][path][method.lower()]
        [header] = [p for p in operation["parameters"] if p["in"] == "header"]
        assert (header["required"], header["schema"]) == (False, {"type": "string", "minLength": 1, "maxLength": 255})
        assert {"409", "422"} <= set(operation["responses"]), (method, path)  # another request's key; a bad key
    # as the API behaves: a key replays a group's creation, and does nothing to a new API key's
    headers = {**account.headers, "Idempotency-Key": "doc-1"}
    first = await call(http, "POST", system.api_url + "/contact-groups", headers, {"name": "G"})
    assert await call(http, "POST", system.api_url + "/contact-groups", headers, {"name": "G"}) == first
    keys = [await call(http, "POST", system.api_url + "/api-keys", headers) for _ in range(2)]
    assert [status for status, _ in keys] == [201, 201]
    assert keys[0][1]["api_key"] != keys[1][1]["api_key"]


async def test_each_operation_declares_the_statuses_it_answers(http, system, account, db, fake_twilio):
    document = await _document(http, system)

    async def answered(method: str, path: str, url: str, headers: dict[str, str], payload=None) -> tuple[int, dict]:
        status, body = await call(http, method, system.api_url + url, headers, payload)
        assert str(status) in document["paths"][path][method.lower()]["responses"], (method, path, status, body)
        return status, body

    # a sender added (201), added again (200), and another account's (409)
    phone = new_phone()
    fake_twilio.owned_numbers.add(phone)
    other = await make_account(db, balance="0")
    added = [await answered("POST", "/senders", "/senders", who.headers, {"phone": phone})
             for who in (account, account, other)]
    assert [status for status, _ in added] == [201, 200, 409]
    # an Idempotency-Key replayed (201 again), then used for another request (409)
    keyed = {**account.headers, "Idempotency-Key": "statuses-1"}
    agents = [await answered("POST", "/agents", "/agents", keyed, {"name": name}) for name in ("A", "A", "B")]
    assert [status for status, _ in agents] == [201, 201, 409]
    agent = agents[0][1]
    # past the balance (402), a state that forbids an action (409), deletes while in use (409)
    _status, others_agent = await call(http, "POST", system.api_url + "/agents", other.headers, {"name": "O"})
    campaign = {"name": "c", "type": "sms", "contacts": [new_phone()], "message_template": "hi",
                "scheduled_at": "2030-01-07T09:00:00Z"}
    status, _ = await answered("POST", "/campaigns", "/campaigns", other.headers,
                               {**campaign, "agent_id": others_agent["id"], "status": "scheduled"})
    assert status == 402
    status, draft = await answered("POST", "/campaigns", "/campaigns", account.headers,
                                   {**campaign, "agent_id": agent["id"], "from_number": phone})
    assert status == 201, draft
    one = f"/campaigns/{draft['id']}"
    for action, expected in (("pause", 409), ("launch", 200), ("launch", 409), ("resume", 409)):
        status, _ = await answered("POST", f"/campaigns/{{id}}/{action}", f"{one}/{action}", account.headers)
        assert status == expected, action
    deletes = [("/campaigns/{id}", one), ("/agents/{id}", f"/agents/{agent['id']}"),
               ("/senders/{address}", f"/senders/{quote(phone)}"),
               ("/api-keys/{prefix}", f"/api-keys/{account.key[:8]}")]
    for path, url in deletes:
        assert (await answered("DELETE", path, url, account.headers))[0] == 409, path
    cancels = [await answered("POST", "/campaigns/{id}/cancel", f"{one}/cancel", account.headers) for _ in range(2)]
    assert [status for status, _ in cancels] == [200, 409]


async def test_list_parameters_are_typed(http, system):
    document = await _document(http, system)
    seen = set()
    for _method, path, operation in _operations(document):
        for parameter in operation["parameters"]:
            seen.add(parameter["name"])
            if parameter["name"] == "limit":
                assert parameter["schema"] == {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, path
            elif parameter["name"] == "cursor":
                assert parameter["schema"] == {"type": "string"}, path
            elif parameter["name"] == "run":
                assert parameter["schema"] == {"type": "integer", "minimum": 1}, path
    assert {"limit", "cursor", "run"} <= seen
    lists = {path for method, path, op in _operations(document)
             if method == "GET" and "data" in _answer_schema(op).get("properties", {})}
    assert {"/senders", "/api-keys", "/templates", "/agents", "/contacts", "/campaigns/{id}/runs"} <= lists
    for path in lists:
        names = {p["name"] for p in document["paths"][path]["get"]["parameters"]}
        assert {"limit", "cursor"} <= names, path


def _answer_schema(operation: dict) -> dict:
    """The schema of an operation's first 2xx JSON answer ({} when it has none)."""
    for status, response in sorted(operation["responses"].items()):
        if status.startswith("2") and "application/json" in response.get("content", {}):
            return response["content"]["application/json"]["schema"]
    return {}


async def test_every_json_answer_has_its_schema_and_real_answers_match_it(
    http, system, account, fake_twilio, sandbox_smtp
):
    document = await _document(http, system)
    json_answers = set()
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if status.startswith("2") and "application/json" in response.get("content", {}):
                schema = response["content"]["application/json"]["schema"]
                assert schema.get("properties"), (method, path, status, schema)  # never a bare {} or object
                json_answers.add((method, path))
    checked = set()

    async def conforms(method: str, path: str, url: str, payload=None, body: bytes | None = None) -> dict:
        """The answer to a request, checked against the schema its operation documents for its status."""
        headers = {**account.headers, **({"Content-Type": "text/csv"} if body is not None else {})}
        async with http.request(method, system.api_url + url, headers=headers, json=payload, data=body) as response:
            status, answer = response.status, await response.json(content_type=None)
        assert 200 <= status < 300, (method, url, status, answer)
        schema = document["paths"][path][method.lower()]["responses"][str(status)]["content"]["application/json"]
        validator = Draft202012Validator(schema["schema"], format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = [error.message for error in validator.iter_errors(answer)]
        assert not errors, (method, url, errors, answer)
        checked.add((method, path))
        return answer

    agent = await conforms("POST", "/agents", "/agents", {"name": "A"})
    await conforms("PATCH", "/agents/{id}", f"/agents/{agent['id']}", {"instructions": "Be brief"})
    await conforms("GET", "/agents/{id}", f"/agents/{agent['id']}")
    await conforms("GET", "/agents", "/agents")
    template = await conforms("POST", "/templates", "/templates", {"name": "T", "channel": "sms", "body": "Hi {{x}}"})
    await conforms("PATCH", "/templates/{id}", f"/templates/{template['id']}", {"name": "U"})
    await conforms("GET", "/templates/{id}", f"/templates/{template['id']}")
    await conforms("GET", "/templates", "/templates")
    await conforms("POST", "/templates/{id}/preview", f"/templates/{template['id']}/preview",
                   {"contact": {"first_name": "Ann"}})
    phone = new_phone()
    contact = await conforms("POST", "/contacts", "/contacts", {"phone": phone, "first_name": "Ann", "plan": "gold"})
    await conforms("POST", "/contacts", "/contacts", {"phone": phone, "last_name": "Lee"})  # 200: updated
    await conforms("PATCH", "/contacts/{id}", f"/contacts/{contact['id']}", {"opted_out": {"email": True}})
    await conforms("GET", "/contacts/{id}", f"/contacts/{contact['id']}")
    await conforms("GET", "/contacts", "/contacts")
    imported = await conforms("POST", "/contacts/import", "/contacts/import",
                              body=f"phone,first_name\n{new_phone()},Bo\n+1415555,Cy\n".encode())
    assert (imported["created"], imported["rejected"], imported["errors"][0]["line"]) == (1, 1, 3), imported
    group = await conforms("POST", "/contact-groups", "/contact-groups", {"name": "G"})
    members = f"/contact-groups/{group['id']}/members"
    await conforms("POST", "/contact-groups/{id}/members", members,
                   {"contact_ids": [contact["id"], "ct_nobody"], "phones": ["12"]})
    await conforms("GET", "/contact-groups/{id}/members", members)
    await conforms("PATCH", "/contact-groups/{id}", f"/contact-groups/{group['id']}", {"name": "H"})
    await conforms("GET", "/contact-groups/{id}", f"/contact-groups/{group['id']}")
    await conforms("GET", "/contact-groups", "/contact-groups")
    sender = new_phone()
    fake_twilio.owned_numbers.add(sender)
    await conforms("POST", "/senders", "/senders", {"phone": sender})
    await conforms("POST", "/senders", "/senders", {"email": f"sender.{sender[1:]}@example.com"})  # pending
    await conforms("PATCH", "/senders/{address}", f"/senders/{quote(sender)}", {"max_per_second": 0.5})
    await conforms("GET", "/senders", "/senders")
    endpoint = await conforms("POST", "/webhook-endpoints", "/webhook-endpoints",
                              {"url": "http://127.0.0.1:9/hook", "events": ["campaign.paused"]})
    await conforms("GET", "/webhook-endpoints/{id}", f"/webhook-endpoints/{endpoint['id']}")
    await conforms("GET", "/webhook-endpoints", "/webhook-endpoints")
    request = {"name": "C", "type": "sms", "agent_id": agent["id"], "contact_group_id": group["id"],
               "contacts": [{"phone": new_phone(), "timezone": "Asia/Tokyo"}], "template_id": template["id"],
               "scheduled_at": "2030-01-07T09:00:00", "timezone": "contact_local", "from_number": sender,
               "sending_window": {"start_hour": 9, "end_hour": 17}, "recurrence": {"frequency": "daily", "count": 2}}
    draft = await conforms("POST", "/campaigns", "/campaigns", request)
    one = f"/campaigns/{draft['id']}"
    await conforms("PATCH", "/campaigns/{id}", one, {"description": "two days"})
    await conforms("POST", "/campaigns/{id}/dry-run", f"{one}/dry-run")
    for action in ("launch", "pause", "resume"):
        await conforms("POST", f"/campaigns/{{id}}/{action}", f"{one}/{action}")

    async def planned_and_tried():  # run 1's deliveries written; the pause's event tried at the endpoint
        _status, runs = await call(http, "GET", f"{system.api_url}{one}/runs", account.headers)
        _status, tried = await call(http, "GET", f"{system.api_url}/webhook-endpoints/{endpoint['id']}/attempts",
                                    account.headers)
        return len(runs["data"]) == 2 and runs["data"][0]["status"] == "planned" and tried["data"]

    await wait_until(planned_and_tried, timeout=30, message="run 1 planned and the endpoint tried")
    await conforms("GET", "/webhook-endpoints/{id}/attempts", f"/webhook-endpoints/{endpoint['id']}/attempts")
    await conforms("PATCH", "/webhook-endpoints/{id}", f"/webhook-endpoints/{endpoint['id']}", {"enabled": False})
    for url in ("/runs", "/deliveries", "/results", "/results?run=1"):
        await conforms("GET", "/campaigns/{id}" + url.split("?")[0], one + url)
    await conforms("GET", "/campaigns", "/campaigns")
    await conforms("POST", "/campaigns/{id}/cancel", f"{one}/cancel")
    await conforms("GET", "/campaigns/{id}", one)
    await conforms("DELETE", "/contact-groups/{id}/members", members, {"contact_ids": [contact["id"]]})
    issued = await conforms("POST", "/api-keys", "/api-keys")
    await conforms("GET", "/api-keys", "/api-keys")
    await conforms("DELETE", "/api-keys/{prefix}", f"/api-keys/{issued['prefix']}")
    await conforms("PATCH", "/account", "/account", {"default_timezone": "Europe/Paris"})
    await conforms("GET", "/account", "/account")
    assert checked == json_answers


def test_fuzzing_finds_no_server_error_and_no_undocumented_answer(system, account):
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(schemathesis), "run", system.api_url + "/openapi.json", "--url", system.api_url,
         "-H", f"Authorization: Bearer {account.key}",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
         "--max-examples", "15", "--seed", "1", "--request-timeout", "20"],
        capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
