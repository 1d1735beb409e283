"""The dashboard in a real browser (headless Chromium) against the running system: a person signs
in, imports contacts, creates a campaign with a preview, launches it and watches it finish without
a reload, pauses, resumes and cancels it, reads a conversation and why a delivery went when it did;
and every page, at desktop and phone widths."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import BrowserContext, Page, expect

from tests.e2e.browser import check_page, open_browser, page_of, sign_in
from tests.support import call, new_phone, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
async def browser(tmp_path) -> AsyncIterator[tuple[BrowserContext, list[str]]]:
    """A fresh Chromium profile; no page may raise a script error."""
    async for opened in open_browser(tmp_path / "profile"):
        yield opened
        assert opened[1] == [], f"script errors: {opened[1]}"


@pytest.fixture
async def page(browser) -> Page:
    """The browser's tab."""
    return await page_of(browser[0])


def figure(page: Page, key: str):
    """The value of one results figure on a campaign page."""
    return page.locator(f'[data-figure="{key}"] dd')


async def _agent(http, system, account, settings=None) -> str:
    _status, agent = await call(
        http, "POST", system.api_url + "/agents", account.headers, {"name": "Riley", "settings": settings or {}}
    )
    return agent["id"]


async def test_a_person_signs_in_with_a_key_and_out(page, browser, system, account):
    await page.goto(system.api_url + "/dashboard/login")
    await check_page(page, "login")
    await page.get_by_label("API key").fill("sk_not_a_key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("That API key is not valid.")
    await sign_in(page, system.api_url, account.key)
    cookies = {c["name"]: c for c in await browser[0].cookies()}
    session = cookies["campaigns_session"]
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/dashboard"
    assert account.key not in session["value"]
    # A form posted without this browser's token (another site's page) changes nothing.
    forged = await page.request.post(system.api_url + "/dashboard/account", form={"default_timezone": "UTC"})
    assert forged.status == 403
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.goto(system.api_url + "/dashboard")
    await expect(page).to_have_url(re.compile(r"/dashboard/login$"))


async def test_a_person_imports_a_csv_and_reads_its_report(page, system, account, db):
    await sign_in(page, system.api_url, account.key)
    await page.get_by_role("link", name="Groups").click()
    await page.get_by_label("Name").fill("Spring list")
    await page.get_by_role("button", name="Create the group").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Spring list")
    await page.get_by_role("link", name="import a CSV into it").click()
    phones = [new_phone() for _ in range(3)]
    csv = f"First Name,phone,plan\nAnn,{phones[0]},Pro\nBob,{phones[1]},Basic\nCy,not-a-phone,Pro\nDee,{phones[2]},\n"
    await page.get_by_label("CSV file").set_input_files(
        {"name": "contacts.csv", "mimeType": "text/csv", "buffer": csv.encode()}
    )
    await expect(page.get_by_label("Add every contact to the group")).to_have_value(re.compile(r"^grp_"))
    await page.get_by_role("button", name="Import").click()
    report = page.get_by_role("region", name="Import report")
    await expect(report).to_be_visible()
    await expect(figure(page, "rows")).to_have_text("4")
    await expect(figure(page, "created")).to_have_text("3")
    await expect(figure(page, "rejected")).to_have_text("1")
    row = report.get_by_role("row").filter(has_text="not-a-phone")
    await expect(row).to_contain_text("4")  # the line of the file
    await expect(row).to_contain_text("phone")
    await check_page(page, "import-report")
    group = await db.fetchrow("SELECT id FROM contact_groups WHERE account_id = $1", account.id)
    assert await db.fetchval("SELECT count(*) FROM group_members WHERE group_id = $1", group["id"]) == 3


async def _import(http, system, account, csv: str, group: str) -> str:
    _status, body = await call(http, "POST", system.api_url + "/contact-groups", account.headers, {"name": group})
    async with http.post(
        f"{system.api_url}/contacts/import?group_id={body['id']}",
        data=csv.encode(),
        headers={**account.headers, "Content-Type": "text/csv"},
    ) as response:
        assert response.status == 200
    return body["id"]


async def test_a_person_creates_a_campaign_with_a_preview_launches_it_and_watches_it_finish(
    page, http, system, account, fake_twilio, db
):
    await _agent(http, system, account, {"rules": [{"keyword": "YES", "reply": "Great"}]})
    phones = [new_phone() for _ in range(3)]
    await _import(
        http,
        system,
        account,
        f"first_name,phone,plan\nAnn,{phones[0]},Pro\nBob,{phones[1]},Basic\nCy,{phones[2]},\n",
        "Trial",
    )
    await sign_in(page, system.api_url, account.key)
    await page.get_by_role("link", name="New campaign").click()
    await page.get_by_label("Name").fill("Plan reminder")
    await page.get_by_label("Channel").select_option("sms")
    await page.get_by_label("Agent (answers the replies)").select_option(label="Riley")
    await page.get_by_role("checkbox", name=re.compile("Trial")).check()
    await page.get_by_label("Message", exact=True).fill("Hi {{first_name}}, your {{plan}} plan renews soon.")
    preview = page.get_by_role("region", name="Preview")
    await page.get_by_label("Preview for").select_option(label=f"Ann {phones[0]}")
    await expect(preview).to_contain_text("Hi Ann, your Pro plan renews soon.")
    await page.get_by_label("Preview for").select_option(label=f"Cy {phones[2]}")
    await expect(preview).to_contain_text("This contact lacks 1 variable: plan")
    await page.get_by_label("Message", exact=True).fill("Hi {{first_name}}, your {{ plan | default('trial') }} plan.")
    await expect(preview).to_contain_text("Hi Cy, your trial plan.")
    await check_page(page, "campaign-new")
    await page.get_by_role("button", name="Save draft").click()

    await expect(page.get_by_role("heading", level=1)).to_have_text("Plan reminder")
    dry = page.get_by_role("region", name="Before you launch: a dry run")
    await expect(dry).to_contain_text("3 contacts")
    await expect(figure(page, "cost")).to_contain_text("of a balance of 100.0000")
    await expect(page.locator("[data-live=progress]")).to_contain_text("not started")  # a draft: no bar
    await check_page(page, "campaign-draft")

    fake_twilio.response_delay = 0.7  # slow enough to watch the figures move
    try:
        await page.get_by_role("button", name="Launch").click()
        await expect(page.locator("[data-live=status]")).to_contain_text(re.compile("scheduled|running"))
        await page.evaluate("window.sameDocument = true")  # gone if the page reloads
        await expect(page.locator("#campaign")).to_have_attribute("data-updates", re.compile(r"^[1-9]"))
        await expect(figure(page, "sent")).to_have_text("3", timeout=30_000)
        await expect(figure(page, "delivered")).to_have_text("3", timeout=30_000)
        await expect(page.locator("[data-live=status]")).to_contain_text("completed", timeout=30_000)
    finally:
        fake_twilio.response_delay = 0.0
    await expect(figure(page, "pending")).to_have_text("0")
    await expect(page.locator("[data-live=progress] progress")).to_have_attribute("value", "100")
    await expect(page.locator("[data-live=progress]")).to_contain_text("100%")
    await expect(page.locator("#campaign")).to_have_attribute("data-ended", "1")
    assert await page.evaluate("window.sameDocument") is True  # the figures came without a reload
    assert int(await page.locator("#campaign").get_attribute("data-updates")) >= 2
    await expect(page.locator("[data-live=chart]")).to_contain_text("3 sent, 3 delivered")
    rendered = await db.fetch(
        "SELECT rendered FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id "
        "WHERE c.account_id = $1 ORDER BY rendered",
        account.id,
    )
    assert [r["rendered"] for r in rendered] == [
        "Hi Ann, your Pro plan.",
        "Hi Bob, your Basic plan.",
        "Hi Cy, your trial plan.",
    ]
    await check_page(page, "campaign-completed")


async def test_a_person_pauses_resumes_and_cancels_after_confirming(page, http, system, account, db):
    agent = await _agent(http, system, account)
    _status, body = await call(
        http,
        "POST",
        system.api_url + "/campaigns",
        account.headers,
        {
            "name": "Later",
            "agent_id": agent,
            "type": "sms",
            "contacts": [new_phone()],
            "message_template": "hi",
            "schedule": "2031-01-01T09:00:00Z",
            "status": "scheduled",
        },
    )
    status_of = "SELECT status FROM campaigns WHERE id = $1"
    await sign_in(page, system.api_url, account.key)
    await page.get_by_role("link", name="Later").click()
    status = page.locator("[data-live=status]")
    await expect(status).to_have_text("scheduled")
    await page.get_by_role("button", name="Pause").click()
    await expect(status).to_have_text("paused")
    assert await db.fetchval(status_of, body["id"]) == "paused"
    await check_page(page, "campaign-paused")
    await page.get_by_role("button", name="Resume").click()
    await expect(status).to_have_text("scheduled")
    assert await db.fetchval(status_of, body["id"]) == "scheduled"

    asked: list[str] = []

    async def dismiss(dialog) -> None:
        asked.append(dialog.message)
        await dialog.dismiss()

    async def accept(dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept()

    page.once("dialog", dismiss)
    await page.get_by_role("button", name="Cancel").click()
    await wait_until(lambda: _true(asked), message="the confirmation")
    assert "cannot be undone" in asked[0]
    await expect(status).to_have_text("scheduled")
    assert await db.fetchval(status_of, body["id"]) == "scheduled"
    page.once("dialog", accept)
    await page.get_by_role("button", name="Cancel").click()
    await expect(status).to_have_text("cancelled")
    assert await db.fetchval(status_of, body["id"]) == "cancelled"
    await expect(figure(page, "cancelled")).to_have_text("1")
    await expect(page.locator("[data-live=actions] button")).to_have_count(0)


async def _true(items: list[str]) -> bool:
    return bool(items)


async def test_a_person_opens_a_conversation(page, http, system, account, fake_twilio):
    phone = new_phone()
    agent = await _agent(http, system, account, {"rules": [{"keyword": "CONFIRM", "reply": "You're confirmed!"}]})
    _status, body = await call(
        http,
        "POST",
        system.api_url + "/campaigns",
        account.headers,
        {
            "name": "Appointments",
            "agent_id": agent,
            "type": "sms",
            "contacts": [{"phone": phone, "first_name": "Ann"}],
            "message_template": "Reply CONFIRM",
            "status": "scheduled",
        },
    )

    async def delivered():
        _s, r = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/results", account.headers)
        return r["delivered"] == 1

    await wait_until(delivered)
    fake_twilio.inbound_url = system.tracker_url + "/webhooks/twilio/sms/inbound"
    answer = await asyncio.wrap_future(
        asyncio.run_coroutine_threadsafe(
            fake_twilio.inbound(phone, "+15005550006", "confirm please"), fake_twilio.thread.loop
        )
    )
    assert answer == "You're confirmed!"
    await sign_in(page, system.api_url, account.key)
    await page.get_by_role("link", name="Appointments").click()
    await expect(figure(page, "replied")).to_have_text("1")
    await page.get_by_role("link", name=phone).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Conversation with {phone}")
    thread = page.get_by_role("listitem")
    await expect(thread.filter(has_text="Reply CONFIRM")).to_contain_text("The campaign")
    await expect(thread.filter(has_text="confirm please")).to_contain_text("From the contact")
    await expect(thread.filter(has_text="You're confirmed!")).to_contain_text("The agent")
    await check_page(page, "conversation")


async def test_a_person_finds_why_a_delivery_goes_when_it_does(page, http, system, account):
    phones = [new_phone() for _ in range(30)]
    agent = await _agent(http, system, account)
    contacts = [
        {"phone": p, "timezone": "America/Chicago" if i == 17 else "Europe/Paris"} for i, p in enumerate(phones)
    ]
    _status, body = await call(
        http,
        "POST",
        system.api_url + "/campaigns",
        account.headers,
        {
            "name": "Local mornings",
            "agent_id": agent,
            "type": "sms",
            "contacts": contacts,
            "message_template": "Good morning",
            "schedule": "2031-01-06T08:00:00",
            "timezone": "contact_local",
            "sending_window": {"start_hour": 10, "end_hour": 12},
            "status": "scheduled",
        },
    )
    assert _status == 201, body

    async def planned():
        _s, r = await call(http, "GET", f"{system.api_url}/campaigns/{body['id']}/deliveries?limit=50", account.headers)
        return len(r["data"]) == 30

    await wait_until(planned)
    await sign_in(page, system.api_url, account.key)
    await page.get_by_role("link", name="Local mornings").click()
    waiting = page.locator("[data-live=waiting]")
    await expect(waiting).to_contain_text("30 contacts wait for their local sending window")
    # The deliveries come a page at a time: find the Chicago contact's.
    await page.get_by_label("State").select_option("planned")
    await page.get_by_role("button", name="Show").click()
    row = page.get_by_role("row").filter(has_text=phones[17])
    while not await row.count():
        await page.get_by_role("link", name="Next page").click()
    await row.get_by_text(re.compile("^Why 10:00 local time")).click()
    reason = row.locator("details.why")
    await expect(reason).to_contain_text("Time zone America/Chicago, from the contact's own time zone.")
    await expect(reason).to_contain_text("Local send time 2031-01-06 10:00 (UTC-06:00).")
    await expect(reason).to_contain_text("Sending window 10:00 to 12:00 in the contact's local time.")
    await expect(reason).to_contain_text("Moved into the campaign's sending window.")
    await check_page(page, "campaign-deliveries")
    # The same delivery, by its address.
    await page.get_by_label("To (phone or email)").fill(phones[17])
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("tbody tr")).to_have_count(1)


async def test_every_page_reads_at_desktop_and_phone_widths_and_shows_the_apis_errors(
    page, http, system, account, db, fake_twilio
):
    agent = await _agent(http, system, account)
    phone = new_phone()
    group = await _import(http, system, account, f"first_name,phone\nAnn,{phone}\n", "Everyone")
    _status, draft = await call(
        http,
        "POST",
        system.api_url + "/campaigns",
        account.headers,
        {
            "name": "A draft",
            "agent_id": agent,
            "type": "sms",
            "contact_group_id": group,
            "message_template": "hi {{first_name}}",
        },
    )
    await sign_in(page, system.api_url, account.key)
    await expect(page.get_by_role("row").filter(has_text="A draft")).to_contain_text("not started")
    await check_page(page, "campaigns")
    contact = await db.fetchval("SELECT id FROM contacts WHERE account_id = $1", account.id)
    for name, path in [
        ("campaign-edit", f"/dashboard/campaigns/{draft['id']}/edit"),
        ("contacts", "/dashboard/contacts?q=Ann"),
        ("contact", f"/dashboard/contacts/{contact}"),
        ("contact-new", "/dashboard/contacts/new"),
        ("groups", "/dashboard/groups"),
        ("group", f"/dashboard/groups/{group}"),
        ("templates", "/dashboard/templates"),
        ("agents", "/dashboard/agents"),
        ("agent", f"/dashboard/agents/{agent}"),
        ("not-found", "/dashboard/campaigns/camp_nothing"),
    ]:
        await page.goto(system.api_url + path)
        await check_page(page, name)
    await expect(page.get_by_role("alert")).to_contain_text("not found")

    # Templates: the API's own error next to the field, then saved and previewed.
    await page.goto(system.api_url + "/dashboard/templates/new")
    await page.get_by_label("Name").fill("Welcome")
    await page.get_by_label("Text").fill("Hello {{ first_name")
    await page.get_by_role("button", name="Create the template").click()
    await expect(page.locator("#body-error")).to_contain_text("line 1")
    await check_page(page, "template-error")
    await page.get_by_label("Text").fill("Hello {{ first_name }}")
    await page.get_by_label("Preview for").select_option(label=f"Ann {phone}")
    await expect(page.get_by_role("region", name="Preview")).to_contain_text("Hello Ann")
    await page.get_by_role("button", name="Create the template").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Template “Welcome”")
    await check_page(page, "template")

    # Senders: a bad one is refused with the API's reason; a number the platform's Twilio account
    # owns is verified at once, an email address waits for its owner to open the link mailed to it.
    await page.goto(system.api_url + "/dashboard/senders")
    await page.get_by_label("Phone number or email address").fill("not an address")
    await page.get_by_role("button", name="Add the sender").click()
    await expect(page.locator("#address-error")).to_contain_text("not a valid")
    owned = new_phone()
    fake_twilio.owned_numbers.add(owned)
    for address in (owned, f"news-{owned[1:]}@example.com"):
        await page.get_by_label("Phone number or email address").fill(address)
        await page.get_by_role("button", name="Add the sender").click()
    await expect(page.get_by_role("row").filter(has_text=owned).first).to_contain_text("verified")
    await expect(page.get_by_role("row").filter(has_text="@example.com")).to_contain_text("pending")
    row = page.get_by_role("row").filter(has_text=owned).first
    await row.get_by_label("Sends a second").fill("2")
    await page.get_by_role("button", name=f"Set the rate of {owned}").click()
    await expect(page.get_by_role("row").filter(has_text=owned).first.get_by_label("Sends a second")).to_have_value(
        re.compile(r"^2(\.0)?$")
    )
    await check_page(page, "senders")

    # Webhooks: a private URL is refused with the API's reason; an endpoint added shows its secret once.
    await page.goto(system.api_url + "/dashboard/webhooks")
    await page.locator("#f-url").fill("http://10.0.0.1/hooks")
    await page.get_by_role("button", name="Add the endpoint").click()
    await expect(page.locator("#url-error")).to_contain_text("not reachable from here")
    await page.locator("#f-url").fill("http://127.0.0.1:9/hooks")
    await page.get_by_label("campaign.completed").last.check()
    await page.get_by_role("button", name="Add the endpoint").click()
    await expect(page.locator("#new-secret")).to_have_value(re.compile(r"^whsec_"))
    await expect(page.get_by_role("heading", level=2).filter(has_text="127.0.0.1:9")).to_contain_text("on")
    await check_page(page, "webhooks")

    # Agents: settings the mode needs are named; the account: a zone that is not one.
    await page.goto(system.api_url + "/dashboard/agents/new")
    await page.get_by_label("Name").fill("Hook")
    await page.get_by_label("Answers by").select_option("webhook")
    await page.get_by_label("Settings (JSON)").fill("{}")
    await page.get_by_role("button", name="Create the agent").click()
    await expect(page.locator("#settings-error")).to_contain_text("required when mode is 'webhook'")
    await check_page(page, "agent-new")
    await page.goto(system.api_url + "/dashboard/account")
    await expect(page.locator('[data-figure="balance"]')).to_have_text("100.0000")
    await page.get_by_label("Default time zone").fill("Mars/Olympus")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#default_timezone-error")).to_contain_text("not an IANA time zone name")
    await check_page(page, "account")

    # A campaign form with mistakes: each named next to its field, nothing saved.
    await page.goto(system.api_url + "/dashboard/campaigns/new")
    await page.get_by_label("Name").fill("Broken")
    await page.get_by_label("Agent (answers the replies)").select_option(label="Riley")
    await page.get_by_label("And these contacts (optional)").fill("+1415555\nnot-a-number")
    await page.get_by_label("Time zone").fill("Nowhere/Land")
    await page.get_by_role("button", name="Save draft").click()
    await expect(page.locator("#message_template-error")).to_contain_text("required for an SMS or email campaign")
    await expect(page.locator("#timezone-error")).to_contain_text("not an IANA time zone name")
    await expect(page.locator("#contacts-error").first).to_contain_text("contacts[0]")
    await expect(page.get_by_role("alert")).to_be_focused()
    await check_page(page, "campaign-errors")
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE account_id = $1", account.id) == 1


async def test_a_person_makes_a_repeating_voice_campaign_and_corrects_its_mistakes(page, http, system, account):
    await _agent(http, system, account)
    phone = new_phone()
    await sign_in(page, system.api_url, account.key)
    await page.goto(system.api_url + "/dashboard/campaigns/new")
    calls = page.get_by_role("group", name="Voice calls")
    # An SMS campaign's form hides the call settings; choosing voice shows them.
    await expect(calls).to_be_hidden()
    await page.get_by_label("Channel").select_option("voice")
    await expect(calls).to_be_visible()
    await page.get_by_label("Name").fill("Check-in calls")
    await page.get_by_label("Agent (answers the replies)").select_option(label="Riley")
    await page.get_by_label("And these contacts (optional)").fill(phone)
    await page.get_by_label("Opening message").fill("Hello {{first_name}}")
    await page.get_by_label("Call duration limit (seconds)").fill("0")
    await page.get_by_label("Schedule (optional)").fill("2027-03-10T09:00")
    await page.get_by_label("Time zone").fill("Europe/Paris")
    await page.get_by_label("Repeats").select_option("weekly")
    repeat = page.get_by_role("group", name="On these days (weekly)")
    await repeat.get_by_label("Tuesday").check()
    await page.get_by_label("Until (last day, optional)").fill("2027-03-01")
    await check_page(page, "campaign-voice-new")
    await page.get_by_role("button", name="Save draft").click()

    # The API's reasons next to the fields, what was typed kept, the call settings still shown.
    await expect(page.locator("#voice_call_duration_limit-error")).to_contain_text("10 to 14400")
    await expect(page.locator("#recurrence_until-error")).to_contain_text("before the first run")
    await expect(page.get_by_label("Call duration limit (seconds)")).to_have_value("0")
    await expect(page.get_by_label("Opening message")).to_have_value("Hello {{first_name}}")
    await expect(page.get_by_label("Repeats")).to_have_value("weekly")
    await expect(repeat.get_by_label("Tuesday")).to_be_checked()
    await expect(calls).to_be_visible()
    await check_page(page, "campaign-voice-errors")

    await page.get_by_label("Call duration limit (seconds)").fill("90")
    await page.get_by_label("Until (last day, optional)").fill("2027-04-30")
    await page.get_by_role("button", name="Save draft").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Check-in calls")
    campaign_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    _status, stored = await call(http, "GET", f"{system.api_url}/campaigns/{campaign_id}", account.headers)
    assert stored["voice"] == {"opening_message": "Hello {{first_name}}", "call_duration_limit": 90}
    assert stored["recurrence"] == {
        "frequency": "weekly", "interval": 1, "weekdays": ["tuesday"], "month_day": None,
        "until": "2027-04-30", "count": None,
    }  # fmt: skip

    # The edit form shows them again.
    await page.goto(f"{system.api_url}/dashboard/campaigns/{campaign_id}/edit")
    await expect(page.get_by_label("Call duration limit (seconds)")).to_have_value("90")
    await expect(page.get_by_label("Until (last day, optional)")).to_have_value("2027-04-30")
    await expect(page.get_by_role("group", name="On these days (weekly)").get_by_label("Tuesday")).to_be_checked()
    await check_page(page, "campaign-voice-edit")
