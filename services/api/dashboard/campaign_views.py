"""Campaign pages: the list, one campaign (live figures, pace, chart, waiting contacts, buttons,
deliveries and why each went when it did, conversations), its actions and a conversation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import get_args
from urllib.parse import urlencode

from aiohttp import web

from services.api.dashboard import live
from services.api.dashboard.web import account_of, page
from services.api.paging import decode_cursor, encode_cursor
from services.api.usecases import campaigns as usecase
from services.api.usecases import exports
from services.api.usecases.dryrun import dry_run
from shared.db import activity
from shared.db import campaigns as db
from shared.domain.campaign import Action, Status
from shared.domain.deliveries import STATES
from shared.errors import AppError, Invalid, NotFound
from shared.web import download

#: Campaigns a page of the list shows.
PAGE = 20
#: Deliveries a page of a campaign shows.
DELIVERIES_PAGE = 25
CHANNELS = ("sms", "email", "voice")


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name) or None
    if value is not None and value not in allowed:
        raise Invalid(f"unknown {name} {value!r}", details=[{"field": name, "reason": f"one of {', '.join(allowed)}"}])
    return value


async def campaigns_page(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard?status=&channel=&cursor=`: the campaigns, newest first, with their progress."""
    pool = request.app["pool"]
    status = _choice(request, "status", get_args(Status))
    channel = _choice(request, "channel", CHANNELS)
    rows = await db.list_page(
        pool, account_of(request)["id"], status=status, channel=channel, after=decode_cursor(request), limit=PAGE + 1
    )
    shown = rows[:PAGE]
    counts = await db.delivery_counts(pool, [r["id"] for r in shown])
    items = []
    for row in shown:
        results = usecase.results_of(row, counts.get(row["id"]))
        items.append({"row": row, "results": results, "progress": live.progress(row, results)})
    filters = {k: v for k, v in (("status", status), ("channel", channel)) if v}
    next_url = None
    if len(rows) > PAGE:
        last = shown[-1]
        next_url = "/dashboard?" + urlencode({**filters, "cursor": encode_cursor(last["created_at"], last["id"])})
    return page(
        request,
        "campaigns.html",
        items=items,
        chosen_status=status,
        chosen_channel=channel,
        statuses=get_args(Status),
        channels=CHANNELS,
        next_url=next_url,
        first_url=("/dashboard?" + urlencode(filters)) if request.query.get("cursor") else None,
    )


async def campaign_page(request: web.Request, error: AppError | None = None) -> web.StreamResponse:
    """`GET /dashboard/campaigns/{id}`: everything about one campaign, kept live by its events."""
    pool = request.app["pool"]
    account = account_of(request)
    view = await live.look(request, request.match_info["id"])
    row = view.row
    state = _choice(request, "state", STATES)
    to = (request.query.get("to") or "").strip() or None
    found = await db.deliveries_page(
        pool, row["id"], state=state, to=to, after=request.query.get("after") or None, limit=DELIVERIES_PAGE + 1
    )
    deliveries, after_last = (
        found[:DELIVERIES_PAGE],
        (found[DELIVERIES_PAGE - 1]["id"] if len(found) > DELIVERIES_PAGE else None),
    )
    base = f"/dashboard/campaigns/{row['id']}"
    filters = {k: v for k, v in (("state", state), ("to", to)) if v}
    dry = None
    if row["status"] == "draft":
        try:
            dry = await dry_run(pool, account, row["id"], datetime.now(UTC))
        except AppError as exc:  # e.g. a schedule that no longer plans: the launch would say so too
            dry = {"error": exc.message}
    return page(
        request,
        "campaign.html",
        status=409 if error is not None and error.status == 409 else (error.status if error else 200),
        error=error,
        **view.context(request),
        runs=await db.runs(pool, row["id"]),
        conversations=await activity.conversations(pool, row["id"]),
        deliveries=deliveries,
        state=state,
        to=to,
        states=STATES,
        next_url=f"{base}?{urlencode({**filters, 'after': after_last})}#deliveries" if after_last else None,
        first_url=f"{base}?{urlencode(filters)}#deliveries" if request.query.get("after") else None,
        dry=dry,
        live_url=f"{base}/live"
        if row["status"] in ("scheduled", "running", "paused") or view.results["pending"]
        else None,
    )


async def deliveries_csv(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/campaigns/{id}/deliveries.csv?state=`: the deliveries shown, all of them, as
    a CSV download (with a byte order mark, so that a spreadsheet reads it as UTF-8)."""
    row, _counts = await usecase.load(request.app["pool"], account_of(request)["id"], request.match_info["id"])
    state = _choice(request, "state", STATES)
    rows = exports.deliveries_csv(request.app["pool"], row["id"], state=state, run_id=None)
    name = f"{row['id']}-deliveries{'-' + state if state else ''}.csv"
    return await download(request, rows, content_type="text/csv", filename=name, prefix="\ufeff")


async def campaign_live(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/campaigns/{id}/live`: the page's server-sent events."""
    return await live.stream(request)


async def campaign_action(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/campaigns/{id}/{action}`: a button. Cancel asks first (a page saying what
    it does, unless the page's script already asked); a refusal shows its reason on the page."""
    campaign_id, action = request.match_info["id"], request.match_info["action"]
    form = await request.post()
    account = account_of(request)
    if action == "cancel" and form.get("confirmed") != "yes":
        row, _counts = await usecase.load(request.app["pool"], account["id"], campaign_id)
        return page(request, "confirm_cancel.html", row=row)
    try:
        if action == "delete":
            await usecase.delete_draft(request.app["pool"], account["id"], campaign_id)
            raise web.HTTPSeeOther("/dashboard")
        verb: Action = action  # type: ignore[assignment]  # the route allows only the four actions
        defaults = usecase.platform_senders(request.app["settings"])
        await usecase.apply_action(request.app["pool"], account, campaign_id, verb, defaults)
    except NotFound:
        raise
    except AppError as exc:
        return await campaign_page(request, error=exc)
    raise web.HTTPSeeOther(f"/dashboard/campaigns/{campaign_id}")


async def conversation_page(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/campaigns/{id}/conversations/{contact_id}`: one contact's messages, in order."""
    pool = request.app["pool"]
    row, _counts = await usecase.load(pool, account_of(request)["id"], request.match_info["id"])
    contact_id = request.match_info["contact_id"]
    messages = await activity.conversation(pool, row["id"], contact_id)
    if not messages:
        raise NotFound("There is no conversation with this contact in this campaign.")
    sent = await activity.sent_to_contact(pool, row["id"], contact_id)
    messages = sorted([*sent, *messages], key=lambda m: m["created_at"])
    contact = next(
        (
            c
            for c in await activity.conversations(pool, row["id"])
            if c["contact_id"] == request.match_info["contact_id"]
        ),
        None,
    )
    return page(request, "conversation.html", row=row, messages=messages, contact=contact)
