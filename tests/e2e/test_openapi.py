"""GET /openapi.json is valid OpenAPI 3.1, and fuzzing the live API over it finds no 500 and no
answer the document does not allow (schemathesis)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from services.api.routes import OPERATIONS
from tests.support import call

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
