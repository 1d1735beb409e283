"""The dashboard's pages, its static files, and what it needs of the app (its middleware, and
ending its live streams when the API stops)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from services.api.dashboard import campaign_form_views as campaign_forms
from services.api.dashboard import campaign_views as campaigns
from services.api.dashboard import contact_views as contacts
from services.api.dashboard import live, session_views, setting_views, webhook_views
from services.api.dashboard.web import middleware

__all__ = ["add_routes", "middleware"]

STATIC = Path(__file__).parent / "static"


async def _home(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/dashboard")


def add_routes(app: web.Application) -> None:
    """Every dashboard page (under `/dashboard`; its middleware must be in the app's list)."""
    app[live.STOPPING] = asyncio.Event()
    app.on_shutdown.append(live.stop_streams)
    r = app.router
    r.add_get("/", _home)
    r.add_static("/dashboard/static/", STATIC, append_version=False)
    r.add_get("/dashboard/login", session_views.login_form)
    r.add_post("/dashboard/login", session_views.login)
    r.add_post("/dashboard/logout", session_views.logout)
    r.add_get("/dashboard", campaigns.campaigns_page)
    r.add_get("/dashboard/campaigns/new", campaign_forms.new_form)
    r.add_post("/dashboard/campaigns/new", campaign_forms.save)
    r.add_post("/dashboard/preview", campaign_forms.preview)
    r.add_get("/dashboard/campaigns/{id}", campaigns.campaign_page)
    r.add_get("/dashboard/campaigns/{id}/live", campaigns.campaign_live)
    r.add_get("/dashboard/campaigns/{id}/deliveries.csv", campaigns.deliveries_csv)
    r.add_get("/dashboard/campaigns/{id}/edit", campaign_forms.edit_form)
    r.add_post("/dashboard/campaigns/{id}/edit", campaign_forms.save)
    r.add_post("/dashboard/campaigns/{id}/{action:launch|pause|resume|cancel|delete}", campaigns.campaign_action)
    r.add_get("/dashboard/campaigns/{id}/conversations/{contact_id}", campaigns.conversation_page)
    r.add_get("/dashboard/contacts", contacts.contacts_page)
    r.add_get("/dashboard/contacts.csv", contacts.contacts_csv)
    r.add_get("/dashboard/contacts/new", contacts.new_contact_form)
    r.add_post("/dashboard/contacts/new", contacts.create_contact)
    r.add_get("/dashboard/contacts/import", contacts.import_form)
    r.add_post("/dashboard/contacts/import", contacts.import_upload)
    r.add_get("/dashboard/contacts/{id}", contacts.contact_page)
    r.add_post("/dashboard/contacts/{id}", contacts.update_contact)
    r.add_post("/dashboard/contacts/{id}/delete", contacts.delete_contact)
    r.add_get("/dashboard/groups", contacts.groups_page)
    r.add_post("/dashboard/groups", contacts.create_group)
    r.add_get("/dashboard/groups/{id}", contacts.group_page)
    r.add_post("/dashboard/groups/{id}", contacts.change_group)
    r.add_get("/dashboard/templates", setting_views.templates_page)
    r.add_get("/dashboard/templates/new", setting_views.template_form)
    r.add_post("/dashboard/templates/new", setting_views.save_template)
    r.add_post("/dashboard/templates/preview", setting_views.preview_template)
    r.add_get("/dashboard/templates/{id}", setting_views.template_form)
    r.add_post("/dashboard/templates/{id}", setting_views.save_template)
    r.add_get("/dashboard/senders", setting_views.senders_page)
    r.add_post("/dashboard/senders", setting_views.change_senders)
    r.add_get("/dashboard/webhooks", webhook_views.webhooks_page)
    r.add_post("/dashboard/webhooks", webhook_views.change_webhooks)
    r.add_get("/dashboard/agents", setting_views.agents_page)
    r.add_get("/dashboard/agents/new", setting_views.agent_form)
    r.add_post("/dashboard/agents/new", setting_views.save_agent)
    r.add_get("/dashboard/agents/{id}", setting_views.agent_form)
    r.add_post("/dashboard/agents/{id}", setting_views.save_agent)
    r.add_get("/dashboard/account", setting_views.account_page)
    r.add_post("/dashboard/account", setting_views.update_account)
    r.add_post("/dashboard/account/keys", setting_views.change_keys)
