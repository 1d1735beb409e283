"""The one table of API paths."""

from __future__ import annotations

from aiohttp import web

from services.api.handlers import account, agents, campaigns, templates


def add_routes(app: web.Application) -> None:
    """Register every API route."""
    r = app.router
    r.add_post("/agents", agents.create_agent)
    r.add_get("/agents/{id}", agents.get_agent)
    r.add_post("/campaigns", campaigns.create_campaign)
    r.add_get("/campaigns", campaigns.list_campaigns)
    r.add_get("/campaigns/{id}", campaigns.get_campaign)
    r.add_get("/campaigns/{id}/results", campaigns.campaign_results)
    r.add_get("/campaigns/{id}/runs", campaigns.campaign_runs)
    r.add_get("/campaigns/{id}/deliveries", campaigns.campaign_deliveries)
    r.add_post("/campaigns/{id}/{action:launch|pause|resume|cancel}", campaigns.campaign_action)
    r.add_post("/templates", templates.create_template)
    r.add_get("/templates", templates.list_templates)
    r.add_get("/templates/{id}", templates.get_template)
    r.add_patch("/templates/{id}", templates.update_template)
    r.add_delete("/templates/{id}", templates.delete_template)
    r.add_post("/templates/{id}/preview", templates.preview_template)
    r.add_get("/account", account.get_account)
    r.add_patch("/account", account.update_account)
    r.add_post("/senders", account.add_sender)
    r.add_get("/senders", account.list_senders)
    r.add_delete("/senders/{address}", account.delete_sender)
