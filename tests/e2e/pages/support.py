"""Driving the citizen pages in Debian's chromium through Playwright, as a phone would.

Helpers for the browser tests: a phone-sized page in a language and mode, sign-in by SMS code
(read from the console notifier's log line, as a demo user reads the console), axe-core
accessibility checks (axe comes from npm, injected into the page), bytes transferred by a
first load, and screenshots kept in docs/screenshots/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request, expect

from guahao.bootstrap import Platform

__all__ = [
    "AXE",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "PHONE_VIEWPORT",
    "SCREENSHOTS",
    "Site",
    "axe_serious",
    "first_load_bytes",
    "new_phone",
    "sent_code",
    "shot",
    "sign_in",
]

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE_VIEWPORT = {"width": 390, "height": 844}
SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"

EXPECT_TIMEOUT_MS = 15_000
"""How long a browser assertion waits: generous, the suite shares two cores with others."""
expect.set_options(timeout=EXPECT_TIMEOUT_MS)

_phones = iter(range(10_000_000, 99_999_999, 7919))


def new_phone() -> str:
    """A phone number no other test of this process uses."""
    return f"137{next(_phones):08d}"


@dataclass
class Site:
    """The live app and what the test seeded into its platform."""

    base: str
    platform: Platform
    doctor_id: str
    slot_ids: list[str]

    async def page(
        self, browser: Browser, *, lang: str = "zh", elder: bool = False
    ) -> tuple[BrowserContext, Page]:
        """A fresh phone-sized browser (no cookies, no cache) in ``lang`` and mode."""
        context = await browser.new_context(
            viewport=PHONE_VIEWPORT,  # type: ignore[arg-type]
            locale="zh-CN" if lang == "zh" else "en-US",
            base_url=self.base,
        )
        page = await context.new_page()
        page.set_default_timeout(EXPECT_TIMEOUT_MS * 2)
        if lang != "zh" or elder:
            mode = "elder" if elder else "standard"
            await page.goto(f"/prefs?lang={lang}&mode={mode}&next=/")
        return context, page


def sent_code(caplog: pytest.LogCaptureFixture, phone: str) -> str:
    """The last SMS code the console notifier printed for ``phone``."""
    masked = f"{phone[:3]}****{phone[-4:]}"
    for record in reversed(caplog.records):
        message = record.getMessage()
        if record.name == "guahao.sms" and masked in message:
            found = re.search(r"(\d{6})", message.split(":", 1)[1])
            assert found, message
            return found.group(1)
    raise AssertionError(f"no SMS was sent to {masked}")


async def sign_in(page: Page, caplog: pytest.LogCaptureFixture, phone: str) -> None:
    """On the sign-in page: ask for a code, read it from the console, enter it."""
    await page.locator("#phone").fill(phone)
    await page.locator("form[action='/sign-in/code'] button[type=submit]").click()
    await page.locator("#code").fill(sent_code(caplog, phone))
    await page.locator("form[action='/sign-in'] button[type=submit]").click()
    await page.wait_for_load_state()


async def shot(page: Page, name: str, *, scroll_to: str | None = None) -> None:
    """A phone-sized screenshot kept in docs/screenshots/ (committed, linked from README),
    from the top of the page or from the element ``scroll_to`` names."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if scroll_to is None:
        await page.evaluate("window.scrollTo(0, 0)")
    else:
        await page.locator(scroll_to).evaluate("el => el.scrollIntoView()")
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=False)


async def axe_serious(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations of impact serious or critical on this page."""
    await page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = await page.evaluate(
        """async () => await axe.run(document, {
            runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}
        })"""
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"][:3]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def first_load_bytes(browser: Browser, url: str) -> int:
    """Bytes a first visit transfers (headers and bodies as sent, compressed), with an empty
    cache. The live stream (never finished) is left out: it is not part of loading."""
    context = await browser.new_context(viewport=PHONE_VIEWPORT)  # type: ignore[arg-type]
    finished: list[Request] = []
    try:
        page = await context.new_page()

        def keep(request: Request) -> None:
            finished.append(request)

        page.on("requestfinished", keep)
        await page.goto(url, wait_until="load")
        await page.wait_for_timeout(300)
        total = 0
        for request in finished:
            sizes = await request.sizes()
            total += sizes["responseBodySize"] + sizes["responseHeadersSize"]
        return total
    finally:
        await context.close()
