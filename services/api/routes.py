"""The one table of API paths; the OpenAPI document is generated from it."""

from __future__ import annotations

from aiohttp import web

from services.api import openapi
from services.api.handlers import account, agents, campaigns, templates
from services.api.handlers.account import AccountPatch, SenderIn
from services.api.handlers.templates import PreviewIn, TemplateIn, TemplatePatch
from services.api.openapi import Operation as Op
from services.api.schemas import AgentCreate, CampaignCreate

_PAGE = (("limit", "page size, 1-200 (default 50)"), ("cursor", "`next_cursor` of the previous page"))

OPERATIONS: list[Op] = [
    Op("POST", "/agents", agents.create_agent, "Create an agent", AgentCreate, ok=201),
    Op("GET", "/agents/{id}", agents.get_agent, "Get an agent"),
    Op("POST", "/campaigns", campaigns.create_campaign, "Create a campaign (draft, or launched with status=scheduled)",
       CampaignCreate, ok=201, errors=(402, 404, 409)),
    Op("GET", "/campaigns", campaigns.list_campaigns, "List campaigns, newest first",
       query=(("status", "only this status"), ("channel", "only this channel"), *_PAGE)),
    Op("GET", "/campaigns/{id}", campaigns.get_campaign, "Get a campaign"),
    Op("GET", "/campaigns/{id}/results", campaigns.campaign_results, "A campaign's results (all runs, or ?run=N)",
       query=(("run", "one run's results"),)),
    Op("GET", "/campaigns/{id}/runs", campaigns.campaign_runs, "A campaign's runs, each with its results"),
    Op("GET", "/campaigns/{id}/deliveries", campaigns.campaign_deliveries,
       "A campaign's deliveries, with how each send time was chosen", query=(("state", "only this state"), *_PAGE)),
    *(
        Op("POST", f"/campaigns/{{id}}/{action}", campaigns.campaign_action, f"{action.capitalize()} a campaign",
           errors=(402, 409) if action == "launch" else (409,))
        for action in ("launch", "pause", "resume", "cancel")
    ),
    Op("POST", "/templates", templates.create_template, "Create a template", TemplateIn, ok=201),
    Op("GET", "/templates", templates.list_templates, "List templates",
       query=(("channel", "only this channel"), *_PAGE)),
    Op("GET", "/templates/{id}", templates.get_template, "Get a template"),
    Op("PATCH", "/templates/{id}", templates.update_template, "Change a template", TemplatePatch),
    Op("DELETE", "/templates/{id}", templates.delete_template, "Delete a template", ok=204),
    Op("POST", "/templates/{id}/preview", templates.preview_template, "Render a template for a contact", PreviewIn),
    Op("GET", "/account", account.get_account, "The account: balance, reservations, prices, defaults"),
    Op("PATCH", "/account", account.update_account, "Change the account's defaults", AccountPatch),
    Op("POST", "/senders", account.add_sender, "Add a sender identity (phone or email)", SenderIn, ok=201),
    Op("GET", "/senders", account.list_senders, "List sender identities"),
    Op("DELETE", "/senders/{address}", account.delete_sender, "Remove a sender identity", ok=204),
]


def add_routes(app: web.Application) -> None:
    """Register every operation of the table, and `GET /openapi.json` describing them."""
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, op.handler)
    document = openapi.build(OPERATIONS, "Campaigns API", "1.0.0")
    app.router.add_get("/openapi.json", openapi.handler(document))
