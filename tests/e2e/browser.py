"""Driving Debian's Chromium (headless, through Playwright) against the running system, and the
checks every page gets: screenshots at desktop and phone widths, nothing wider than a phone,
every form control labelled, no script error."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect

from tests.support import ROOT

#: Debian's chromium package (`./run test` installs it when it is missing).
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Where every page's screenshots go (named in the README; git-ignored).
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
DESKTOP, PHONE = 1280, 375
#: The viewer's zone in the tests: times on the pages are shown in it.
VIEWER_ZONE = "America/New_York"


def _chromium() -> str:
    """The browser's path, or a failure saying how to get it."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `./run test` installs Debian's chromium package with apt-get when it is "
            "absent (as root, with the package lists reachable); install it (`apt-get install -y chromium`) or "
            "deselect these tests with -m 'not browser'"
        )
    return str(CHROMIUM)


def _screenshot(name: str, width: int) -> str:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return str(SCREENSHOTS / f"{name}-{width}.png")


async def open_browser(profile: Path) -> AsyncIterator[tuple[BrowserContext, list[str]]]:
    """A fresh Chromium profile, and the script errors its pages raise (a test asserts none)."""
    executable = _chromium()
    errors: list[str] = []
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=ARGS,
            viewport={"width": DESKTOP, "height": 900},
            timezone_id=VIEWER_ZONE,
            locale="en-US",
        )
        context.set_default_timeout(20_000)
        context.on("page", lambda page: page.on("pageerror", lambda exc: errors.append(str(exc))))
        for page in context.pages:
            page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            yield context, errors
        finally:
            await context.close()


async def page_of(context: BrowserContext) -> Page:
    """The context's one tab."""
    return context.pages[0] if context.pages else await context.new_page()


async def sign_in(page: Page, api_url: str, key: str) -> None:
    """Sign in through the form, as a person does, landing on the campaigns."""
    await page.goto(api_url + "/dashboard")
    await expect(page).to_have_url(re.compile(r"/dashboard/login$"))
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", level=1, name="Campaigns")).to_be_visible()


async def check_page(page: Page, name: str) -> None:
    """Screenshots at both widths; at the phone's, nothing wider than the screen; every form
    control has a label; one h1."""
    for width in (DESKTOP, PHONE):
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(path=_screenshot(name, width), full_page=True)
        if width == PHONE:
            overflow = await page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= PHONE, f"{name}: {overflow}px wide at {PHONE}px"
    await page.set_viewport_size({"width": DESKTOP, "height": 900})
    unlabelled: list[Any] = await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter(el => el.type !== 'hidden' && !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map(el => el.name)"""
    )
    assert unlabelled == [], f"{name}: form controls without a label: {unlabelled}"
    assert await page.locator("h1").count() == 1, f"{name}: not exactly one h1"
