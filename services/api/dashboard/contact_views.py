"""Contacts and groups: search and pages, a contact's history across campaigns, creating and
editing, group members, and a CSV upload with its report row by row."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import asyncpg
from aiohttp import web

from services.api.contact_schemas import ContactBody, GroupIn, MembersIn
from services.api.dashboard import forms
from services.api.dashboard.web import account_of, field_errors, page
from services.api.paging import decode_cursor, encode_cursor
from services.api.schemas import parse
from services.api.uploads import csv_chunks
from services.api.usecases import contacts as usecase
from services.api.usecases import exports
from services.api.usecases import groups as groups_usecase
from services.api.usecases.contacts_import import import_contacts
from shared.db import activity
from shared.db import contacts as db
from shared.errors import AppError
from shared.web import download

#: Contacts (or groups) a page shows.
PAGE = 25


def _next(base: str, filters: dict[str, str], rows: list[asyncpg.Record]) -> str | None:
    if len(rows) <= PAGE:
        return None
    last = rows[PAGE - 1]
    return base + "?" + urlencode({**filters, "cursor": encode_cursor(last["created_at"], last["id"])})


async def contacts_page(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/contacts?q=&group=&cursor=`: the contacts, newest first, searched."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    q = (request.query.get("q") or "").strip()
    group_id = request.query.get("group") or None
    if group_id:
        await groups_usecase.get(pool, account_id, group_id)
    after = decode_cursor(request)
    if q:
        rows = await db.search_page(pool, account_id, q, group_id=group_id, after=after, limit=PAGE + 1)
    else:
        rows = await db.list_page(pool, account_id, group_id=group_id, after=after, limit=PAGE + 1)
    filters = {k: v for k, v in (("q", q), ("group", group_id)) if v}
    return page(
        request,
        "contacts.html",
        contacts=rows[:PAGE],
        q=q,
        group_id=group_id,
        groups=await db.list_groups(pool, account_id, after=None, limit=200),
        next_url=_next("/dashboard/contacts", filters, rows),
        first_url=("/dashboard/contacts?" + urlencode(filters)) if after else None,
    )


async def contacts_csv(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/contacts.csv?group=`: the contacts (of a group) as a CSV download, as the
    API's `GET /contacts.csv` writes them, with a byte order mark for spreadsheets."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    group_id = request.query.get("group") or None
    if group_id:
        await groups_usecase.get(pool, account_id, group_id)
    rows = exports.contacts_csv(pool, account_id, group_id=group_id, opted_out=None)
    name = f"contacts{'-' + group_id if group_id else ''}.csv"
    return await download(request, rows, content_type="text/csv", filename=name, prefix="\ufeff")


async def contact_page(
    request: web.Request, errors: dict[str, list[str]] | None = None, values: dict[str, Any] | None = None
) -> web.StreamResponse:
    """`GET /dashboard/contacts/{id}`: the contact, a form to change it (the saved fields, or with a
    refused change's errors what was typed), its history across campaigns."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    contact = await db.get(pool, account_id, request.match_info["id"])
    if contact is None:
        raise web.HTTPNotFound()
    return page(
        request,
        "contact.html",
        status=422 if errors else 200,
        contact=contact,
        values=values or _contact_values(contact),
        errors=errors or {},
        history=await activity.contact_history(pool, account_id, contact["id"]),
        messages=await activity.contact_messages(pool, account_id, contact["id"]),
    )


def _contact_values(contact: Any) -> dict[str, Any]:
    values = {k: contact[k] for k in ("first_name", "last_name", "email", "phone", "company", "timezone")}
    values["metadata"] = forms.metadata_text(contact["metadata"])
    values.update({f"opted_out_{c}": contact[f"opted_out_{c}"] for c in ("sms", "email", "voice")})
    return values


async def new_contact_form(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/contacts/new`."""
    return page(request, "contact_new.html", values={}, errors={})


async def create_contact(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/contacts/new`: created (or the one with that phone, else email, updated)."""
    form = await request.post()
    data = forms.contact_request(form)
    try:
        row = await usecase.create(request.app["pool"], account_of(request)["id"], parse(ContactBody, data))
    except AppError as exc:
        values = {k: form.get(k) for k in form}
        return page(request, "contact_new.html", status=exc.status, values=values, errors=field_errors(exc))
    raise web.HTTPSeeOther(f"/dashboard/contacts/{row['id']}")


async def update_contact(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/contacts/{id}`: the form's fields replace the contact's (a removed metadata
    line removes that key); refused, the form again as it was filled in."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    contact = await db.get(pool, account_id, request.match_info["id"])
    if contact is None:
        raise web.HTTPNotFound()
    form = await request.post()
    data = forms.contact_request(form)
    data["metadata"] = {**{k: None for k in contact["metadata"] or {}}, **data["metadata"]}
    try:
        await usecase.update(pool, account_id, contact["id"], parse(ContactBody, data))
    except AppError as exc:
        return await contact_page(request, field_errors(exc), {k: form.get(k) for k in form})
    raise web.HTTPSeeOther(f"/dashboard/contacts/{contact['id']}")


async def delete_contact(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/contacts/{id}/delete`: its unsent deliveries are cancelled."""
    await usecase.delete(request.app["pool"], account_of(request)["id"], request.match_info["id"])
    raise web.HTTPSeeOther("/dashboard/contacts")


async def groups_page(
    request: web.Request, errors: dict[str, list[str]] | None = None, values: dict[str, Any] | None = None
) -> web.StreamResponse:
    """`GET /dashboard/groups`: the groups, newest first, and a form to make one (with a refused
    one's errors, the name typed)."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    after = decode_cursor(request)
    rows = await db.list_groups(pool, account_id, after=after, limit=PAGE + 1)
    return page(
        request,
        "groups.html",
        status=422 if errors else 200,
        groups=rows[:PAGE],
        errors=errors or {},
        values=values or {},
        next_url=_next("/dashboard/groups", {}, rows),
        first_url="/dashboard/groups" if after else None,
    )


async def create_group(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/groups`."""
    form = await request.post()
    try:
        row = await groups_usecase.create(
            request.app["pool"], account_of(request)["id"], parse(GroupIn, {"name": form.get("name") or ""})
        )
    except AppError as exc:
        return await groups_page(request, field_errors(exc), {"name": form.get("name")})
    raise web.HTTPSeeOther(f"/dashboard/groups/{row['id']}")


async def group_page(
    request: web.Request,
    errors: dict[str, list[str]] | None = None,
    report: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> web.StreamResponse:
    """`GET /dashboard/groups/{id}`: its members (paged), rename, add or remove members, delete
    (with a refused change's errors, the name or members typed; else the saved name)."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    group = await groups_usecase.get(pool, account_id, request.match_info["id"])
    after = decode_cursor(request)
    rows = await db.list_page(pool, account_id, group_id=group["id"], after=after, limit=PAGE + 1)
    base = f"/dashboard/groups/{group['id']}"
    return page(
        request,
        "group.html",
        status=422 if errors else 200,
        group=group,
        members=rows[:PAGE],
        errors=errors or {},
        values={"name": group["name"], **(values or {})},
        report=report,
        next_url=_next(base, {}, rows),
        first_url=base if after else None,
    )


async def change_group(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/groups/{id}` with `intent`: rename, add, remove (members) or delete;
    refused, the form again as it was filled in."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    group_id = request.match_info["id"]
    form = await request.post()
    intent = form.get("intent")
    try:
        if intent == "rename":
            await groups_usecase.rename(pool, account_id, group_id, parse(GroupIn, {"name": form.get("name") or ""}))
        elif intent == "delete":
            await groups_usecase.delete(pool, account_id, group_id)
            raise web.HTTPSeeOther("/dashboard/groups")
        elif intent in ("add", "remove"):
            body = parse(MembersIn, forms.members(str(form.get("members") or "")))
            report = await groups_usecase.change_members(pool, account_id, group_id, body, adding=intent == "add")
            return await group_page(request, report=report)
    except AppError as exc:
        errors = field_errors(exc)
        if intent in ("add", "remove"):
            errors = {"members": [r for reasons in errors.values() for r in reasons]}
        typed = {k: form.get(k) for k in ("name", "members") if k in form}
        return await group_page(request, errors=errors, values=typed)
    raise web.HTTPSeeOther(f"/dashboard/groups/{group_id}")


async def import_form(request: web.Request) -> web.StreamResponse:
    """`GET /dashboard/contacts/import`."""
    groups = await db.list_groups(request.app["pool"], account_of(request)["id"], after=None, limit=200)
    values = {"group_id": request.query.get("group")}
    return page(request, "import.html", groups=groups, report=None, errors={}, values=values)


async def import_upload(request: web.Request) -> web.StreamResponse:
    """`POST /dashboard/contacts/import` (multipart: the CSRF token, `group_id`, `country`, then
    `file`): streamed through the API's import, then its report, row by row; the form again with
    the group and country chosen."""
    pool, account_id = request.app["pool"], account_of(request)["id"]
    options: dict[str, str | None] = {"group_id": None, "country": None}
    errors: dict[str, list[str]] = {}
    report = None
    try:
        settings = request.app["settings"]
        chunks, charset = await csv_chunks(request, options, settings.import_max_bytes)
        summary = await import_contacts(
            pool,
            account_id,
            chunks,
            group_id=options["group_id"],
            country=options["country"],
            charset=charset,
            concurrency=settings.import_concurrency,
        )
        report = summary.as_dict()
    except AppError as exc:
        errors = field_errors(exc, lambda name: "file" if name == "header" else name)  # (its header row: the file's)
    groups = await db.list_groups(pool, account_id, after=None, limit=200)
    return page(
        request,
        "import.html",
        status=200 if report else 422,
        groups=groups,
        report=report,
        errors=errors,
        values=options,
    )
