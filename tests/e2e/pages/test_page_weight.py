"""The performance budget on a poor mobile connection: the first load of the home page, the
search page and a doctor's page each transfers at most 150 KB (HTML, CSS and script as sent,
compressed, with an empty cache), measured in the browser."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Response

from tests.e2e.pages.support import PHONE_VIEWPORT, Site, first_load_bytes

pytestmark = [pytest.mark.browser]

BUDGET_BYTES = 150 * 1024


@pytest.mark.parametrize("path", ["/", "/search?q=王伟", "/doctors/{doctor}"])
async def test_a_first_load_transfers_at_most_150_kb(
    site: Site, browser: Browser, path: str
) -> None:
    url = site.base + path.format(doctor=site.doctor_id)
    sent = await first_load_bytes(browser, url)
    print(f"first load of {path}: {sent} bytes")
    assert 0 < sent <= BUDGET_BYTES


async def test_pages_and_their_assets_are_sent_compressed(site: Site, browser: Browser) -> None:
    context = await browser.new_context(viewport=PHONE_VIEWPORT)  # type: ignore[arg-type]
    try:
        page = await context.new_page()
        encodings: dict[str, str | None] = {}

        async def record(response: Response) -> None:
            encodings[response.url.removeprefix(site.base)] = await response.header_value(
                "content-encoding"
            )

        page.on("response", record)
        await page.goto(f"{site.base}/doctors/{site.doctor_id}", wait_until="load")
        await page.wait_for_timeout(200)
    finally:
        await context.close()
    assert encodings[f"/doctors/{site.doctor_id}"] == "gzip"
    assert encodings["/static/app.css"] == "gzip"
    assert encodings["/static/app.js"] == "gzip"
