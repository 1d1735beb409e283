"""The one table of API paths; the OpenAPI document is generated from it."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from services.api import answers as a
from services.api import openapi
from services.api.contact_schemas import ContactBody, GroupIn, MembersIn
from services.api.handlers import (
    account,
    agents,
    campaigns,
    contacts,
    contacts_import,
    dryrun,
    groups,
    templates,
    webhook_endpoints,
)
from services.api.handlers.account import AccountPatch, KeyIn, SenderIn, SenderPatch
from services.api.handlers.templates import PreviewIn, TemplateIn, TemplatePatch
from services.api.openapi import Operation as Op
from services.api.schemas import AgentCreate, AgentPatch, CampaignCreate, CampaignPatch
from services.api.usecases.webhook_endpoints import EndpointIn, EndpointPatch
from shared.errors import Invalid

_PAGE = (("limit", "page size, 1-200 (default 50)"), ("cursor", "`next_cursor` of the previous page"))

OPERATIONS: list[Op] = [
    Op("POST", "/agents", agents.create_agent, "Create an agent", AgentCreate, ok=201, answer=a.AGENT),
    Op("GET", "/agents", agents.list_agents, "List agents, newest first", query=_PAGE, answer=a.page(a.AGENT)),
    Op("GET", "/agents/{id}", agents.get_agent, "Get an agent", answer=a.AGENT),
    Op("PATCH", "/agents/{id}", agents.update_agent, "Change an agent", AgentPatch, answer=a.AGENT),
    Op(
        "DELETE",
        "/agents/{id}",
        agents.delete_agent,
        "Delete an agent (409 while campaigns use it)",
        ok=204,
        errors=(409,),
    ),
    Op(
        "POST",
        "/campaigns",
        campaigns.create_campaign,
        "Create a campaign (draft, or launched with status=scheduled)",
        CampaignCreate,
        ok=201,
        errors=(402, 404, 409),
        answer=a.CAMPAIGN_WRITTEN,
    ),
    Op(
        "GET",
        "/campaigns",
        campaigns.list_campaigns,
        "List campaigns, newest first",
        query=(
            ("status", "only this status"),
            ("channel", "only this channel"),
            ("type", "synonym of `channel`"),
            *_PAGE,
        ),
        answer=a.page(a.CAMPAIGN),
    ),
    Op("GET", "/campaigns/{id}", campaigns.get_campaign, "Get a campaign", answer=a.CAMPAIGN),
    Op(
        "PATCH",
        "/campaigns/{id}",
        campaigns.update_campaign,
        "Change a draft campaign (any field of the create; those given replace the campaign's)",
        CampaignPatch,
        errors=(404, 409),
        answer=a.CAMPAIGN_WRITTEN,
    ),
    Op(
        "DELETE",
        "/campaigns/{id}",
        campaigns.delete_campaign,
        "Delete a draft campaign (409 once launched: cancel it instead)",
        ok=204,
        errors=(409,),
    ),
    Op(
        "GET",
        "/campaigns/{id}/results",
        campaigns.campaign_results,
        "A campaign's results (all runs, or ?run=N)",
        query=(("run", "one run's results"),),
        answer=a.RESULTS,
    ),
    Op(
        "GET",
        "/campaigns/{id}/runs",
        campaigns.campaign_runs,
        "A campaign's runs, in order, each with its results",
        query=_PAGE,
        answer=a.RUNS,
    ),
    Op(
        "GET",
        "/campaigns/{id}/deliveries",
        campaigns.campaign_deliveries,
        "A campaign's deliveries, with how each send time was chosen and who answered each call (answered_by)",
        query=(("state", "only this state"), ("to", "only those to this phone (E.164) or email"), *_PAGE),
        answer=a.page(a.DELIVERY),
    ),
    Op(
        "GET",
        "/campaigns/{id}/deliveries.csv",
        campaigns.campaign_deliveries_csv,
        "A campaign's deliveries as CSV (a download, streamed): each with its contact's fields, "
        "times, provider ids, cost, error and message",
        query=(("state", "only this state"), ("run", "only run N of a recurring campaign")),
        answer_content="text/csv",
    ),
    *(
        Op(
            "POST",
            f"/campaigns/{{id}}/{action}",
            campaigns.campaign_action,
            f"{action.capitalize()} a campaign",
            errors=(402, 409) if action == "launch" else (409,),
            answer=a.CAMPAIGN_ACTED,
        )
        for action in ("launch", "pause", "resume", "cancel")
    ),
    Op(
        "POST",
        "/campaigns/{id}/dry-run",
        dryrun.dry_run,
        "What launching would do, without sending",
        answer=a.DRY_RUN,
    ),
    Op("POST", "/templates", templates.create_template, "Create a template", TemplateIn, ok=201, answer=a.TEMPLATE),
    Op(
        "GET",
        "/templates",
        templates.list_templates,
        "List templates",
        query=(("channel", "only this channel"), *_PAGE),
        answer=a.page(a.TEMPLATE),
    ),
    Op("GET", "/templates/{id}", templates.get_template, "Get a template", answer=a.TEMPLATE),
    Op("PATCH", "/templates/{id}", templates.update_template, "Change a template", TemplatePatch, answer=a.TEMPLATE),
    Op("DELETE", "/templates/{id}", templates.delete_template, "Delete a template", ok=204),
    Op(
        "POST",
        "/templates/{id}/preview",
        templates.preview_template,
        "Render a template for a contact",
        PreviewIn,
        answer=a.PREVIEW,
    ),
    Op(
        "POST",
        "/contacts",
        contacts.create_contact,
        "Create a contact (201), or update the one with its phone, else email (200)",
        ContactBody,
        ok=201,
        also=((200, "Updated: a contact with this phone (else email) already existed"),),
        errors=(409,),
        answer=a.CONTACT,
    ),
    Op(
        "GET",
        "/contacts",
        contacts.list_contacts,
        "List contacts, newest first",
        query=(
            ("group_id", "only this group's members"),
            ("opted_out", "only contacts opted out of sms, email or voice"),
            ("phone", "only this phone"),
            ("email", "only this email"),
            ("country", "region of `phone` without '+'"),
            *_PAGE,
        ),
        errors=(404,),
        answer=a.page(a.CONTACT),
    ),
    Op(
        "GET",
        "/contacts.csv",
        contacts.export_contacts,
        "The account's contacts as CSV (a download, streamed), newest first: phone, email, names, company, "
        "time zone and each metadata key (the columns an import reads back), then contact_id, the opt-outs "
        "and created_at (which an import skips)",
        query=(
            ("group_id", "only this group's contacts"),
            ("opted_out", "only those opted out of sms, email or voice"),
        ),
        errors=(404,),
        answer_content="text/csv",
    ),
    Op(
        "POST",
        "/contacts/import",
        contacts_import.import_contacts,
        "Import contacts from CSV (text/csv body, or multipart with a `file` part; `,` `;` tab or `|` "
        "between cells, read off the header), streamed",
        query=(("group_id", "add every imported contact to this group"), ("country", "region of phones without '+'")),
        errors=(404, 429),
        answer=a.IMPORTED,
    ),
    Op("GET", "/contacts/{id}", contacts.get_contact, "Get a contact", answer=a.CONTACT),
    Op(
        "PATCH",
        "/contacts/{id}",
        contacts.update_contact,
        "Change a contact (only the keys sent)",
        ContactBody,
        errors=(409,),
        answer=a.CONTACT,
    ),
    Op("DELETE", "/contacts/{id}", contacts.delete_contact, "Delete a contact", ok=204),
    Op("POST", "/contact-groups", groups.create_group, "Create a contact group", GroupIn, ok=201, answer=a.GROUP),
    Op(
        "GET",
        "/contact-groups",
        groups.list_groups,
        "List contact groups, newest first",
        query=_PAGE,
        answer=a.page(a.GROUP),
    ),
    Op("GET", "/contact-groups/{id}", groups.get_group, "Get a contact group", answer=a.GROUP),
    Op("PATCH", "/contact-groups/{id}", groups.rename_group, "Rename a contact group", GroupIn, answer=a.GROUP),
    Op(
        "DELETE",
        "/contact-groups/{id}",
        groups.delete_group,
        "Delete a contact group (its contacts stay)",
        ok=204,
        errors=(409,),
    ),
    Op(
        "POST",
        "/contact-groups/{id}/members",
        groups.add_members,
        "Add contacts by id, phone or email (unknown ones are reported)",
        MembersIn,
        answer=a.MEMBERS_CHANGED,
    ),
    Op(
        "GET",
        "/contact-groups/{id}/members",
        groups.list_members,
        "A group's contacts, newest first",
        query=(("opted_out", "only contacts opted out of sms, email or voice"), *_PAGE),
        answer=a.page(a.CONTACT),
    ),
    Op(
        "DELETE",
        "/contact-groups/{id}/members",
        groups.remove_members,
        "Remove contacts by id, phone or email (unknown ones are reported)",
        MembersIn,
        answer=a.MEMBERS_CHANGED,
    ),
    Op(
        "GET",
        "/api-keys",
        account.list_keys,
        "The account's API keys, oldest first: prefix, times, which one is calling",
        query=_PAGE,
        answer=a.page(a.API_KEY),
    ),
    Op(
        "POST",
        "/api-keys",
        account.create_key,
        "Issue a new API key (shown once)",
        KeyIn,
        body_required=False,
        ok=201,
        answer=a.NEW_API_KEY,
    ),
    Op(
        "DELETE",
        "/api-keys/{prefix}",
        account.revoke_key,
        "Revoke an API key by its prefix (409 for the last live key, or a prefix two live keys share)",
        errors=(409,),
        answer=a.REVOKED_API_KEY,
    ),
    Op(
        "GET",
        "/account",
        account.get_account,
        "The account: balance, reservations, prices, defaults",
        answer=a.ACCOUNT,
    ),
    Op("PATCH", "/account", account.update_account, "Change the account's defaults", AccountPatch, answer=a.ACCOUNT),
    Op(
        "POST",
        "/senders",
        account.add_sender,
        "Add a sender identity (phone or email; 409 when it is another account's)",
        SenderIn,
        ok=201,
        also=((200, "It was the account's sender already (a pending email: its link is mailed again)"),),
        errors=(409,),
        answer=a.SENDER,
    ),
    Op(
        "GET",
        "/senders",
        account.list_senders,
        "List sender identities, oldest first",
        query=_PAGE,
        answer=a.page(a.SENDER),
    ),
    Op(
        "PATCH",
        "/senders/{address}",
        account.update_sender,
        "Change a sender's rate (`max_per_second`; null: the default for its kind of number)",
        SenderPatch,
        answer=a.SENDER,
    ),
    Op(
        "DELETE",
        "/senders/{address}",
        account.delete_sender,
        "Remove a sender identity (409 while a campaign not yet ended sends from it)",
        ok=204,
        errors=(409,),
    ),
    Op(
        "POST",
        "/webhook-endpoints",
        webhook_endpoints.create_endpoint,
        "Add a webhook endpoint: its events are POSTed to it, signed (`Campaigns-Signature`); the answer "
        "carries its `secret` (whsec_…), shown this once",
        EndpointIn,
        ok=201,
        answer=a.NEW_WEBHOOK_ENDPOINT,
    ),
    Op(
        "GET",
        "/webhook-endpoints",
        webhook_endpoints.list_endpoints,
        "List webhook endpoints",
        query=_PAGE,
        answer=a.page(a.WEBHOOK_ENDPOINT),
    ),
    Op(
        "GET",
        "/webhook-endpoints/{id}",
        webhook_endpoints.get_endpoint,
        "Get a webhook endpoint",
        answer=a.WEBHOOK_ENDPOINT,
    ),
    Op(
        "PATCH",
        "/webhook-endpoints/{id}",
        webhook_endpoints.update_endpoint,
        "Change a webhook endpoint's url, events or enabled",
        EndpointPatch,
        answer=a.WEBHOOK_ENDPOINT,
    ),
    Op("DELETE", "/webhook-endpoints/{id}", webhook_endpoints.delete_endpoint, "Delete a webhook endpoint", ok=204),
    Op(
        "GET",
        "/webhook-endpoints/{id}/attempts",
        webhook_endpoints.list_attempts,
        "An endpoint's recent delivery attempts (event, status code, time, error), newest first",
        query=_PAGE,
        answer=a.page(a.WEBHOOK_ATTEMPT),
    ),
]


def add_routes(app: web.Application) -> None:
    """Register every operation of the table, and `GET /openapi.json` describing them."""
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, _strict_query(op))
    document = openapi.build(OPERATIONS, "Campaigns API", "1.0.0")
    _describe_contact_extras(document)
    app.router.add_get("/openapi.json", openapi.handler(document))


def _strict_query(op: Op) -> Any:
    """The operation's handler, refusing a query parameter it does not take (a 422 naming each, and
    those it takes), as an unknown field of a body is: `GET /contacts?q=Ann` listed every contact."""
    known = {name for name, _ in op.query}
    takes = f"one of {', '.join(sorted(known))}" if known else "this path takes none"

    @functools.wraps(op.handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        unknown = [name for name in dict.fromkeys(request.query.keys()) if name not in known]
        if unknown:
            raise Invalid(
                f"unknown query parameter {unknown[0]!r}",
                details=[{"field": name, "reason": f"unknown query parameter ({takes})"} for name in unknown],
            )
        return await op.handler(request)

    return checked


def _describe_contact_extras(document: dict[str, Any]) -> None:
    """What one Operation row cannot say yet: `POST /contacts/import` takes CSV rather than a JSON model."""
    paths = document["paths"]
    form = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "group_id": {"type": "string"},
            "country": {"type": "string"},
            "file": {"type": "string", "format": "binary"},
        },
    }
    paths["/contacts/import"]["post"]["requestBody"] = {
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string"}}, "multipart/form-data": {"schema": form}},
    }
