"""The pages' session over HTTP: an HTTP-only, SameSite cookie after an SMS code, CSRF on
every form, sign-out ending the session everywhere, and the JSON API keeping its bearer
tokens. Also: the home page at the root, and Swagger UI served without a CDN."""

from __future__ import annotations

import re

import httpx
import pytest

from guahao.config import Settings
from guahao.web.citizen_session import CSRF_COOKIE, SESSION_COOKIE
from tests.e2e.pages.support import sent_code

PHONE = "13700137000"


async def csrf_of(http: httpx.AsyncClient, path: str = "/sign-in") -> str:
    page = await http.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found
    return found.group(1)


async def signed_in(http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> httpx.Response:
    csrf = await csrf_of(http)
    sent = await http.post("/sign-in/code", data={"csrf": csrf, "phone": "+86 137 0013 7000"})
    assert sent.status_code == 200, sent.text
    return await http.post(
        "/sign-in",
        data={"csrf": csrf, "phone": PHONE, "code": sent_code(caplog, PHONE), "next": "/me/"},
    )


async def test_signing_in_sets_an_http_only_same_site_cookie_and_signing_out_ends_it(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await signed_in(http, caplog)
    assert response.status_code == 303
    assert response.headers["location"] == "/me/"
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie  # the test server is plain http (cookie_secure = auto)
    token = http.cookies[SESSION_COOKIE]
    assert (await http.get("/me/bookings")).status_code == 200

    csrf = await csrf_of(http, "/me/")
    out = await http.post("/sign-out", data={"csrf": csrf})
    assert out.status_code == 303
    http.cookies.set(SESSION_COOKIE, token)  # the old cookie, replayed
    again = await http.get("/me/bookings")
    assert again.status_code == 303
    assert again.headers["location"] == "/sign-in?next=%2Fme%2Fbookings"


async def test_a_form_without_its_csrf_token_is_refused(http: httpx.AsyncClient) -> None:
    await csrf_of(http)  # the browser has its CSRF cookie, the attacker's form lacks the token
    missing = await http.post("/sign-in/code", data={"phone": PHONE})
    assert missing.status_code == 403
    assert "CSRF_TOKEN_INVALID" in missing.text
    forged = await http.post("/sign-in/code", data={"phone": PHONE, "csrf": "forged.token"})
    assert forged.status_code == 403
    http.cookies.set(CSRF_COOKIE, "forged.token")  # a cookie planted without our signature
    planted = await http.post("/sign-in/code", data={"phone": PHONE, "csrf": "forged.token"})
    assert planted.status_code == 403


async def test_a_wrong_code_is_shown_on_the_page_with_its_code(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    csrf = await csrf_of(http)
    await http.post("/sign-in/code", data={"csrf": csrf, "phone": PHONE})
    wrong = "000000" if sent_code(caplog, PHONE) != "000000" else "111111"
    page = await http.post("/sign-in", data={"csrf": csrf, "phone": PHONE, "code": wrong})
    assert page.status_code == 422
    assert "SIGN_IN_CODE_INVALID" in page.text
    assert "验证码错误或已失效" in page.text
    assert SESSION_COOKIE not in http.cookies


async def test_the_api_keeps_bearer_tokens_and_ignores_the_page_cookie(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await signed_in(http, caplog)
    assert SESSION_COOKIE in http.cookies
    api = await http.get("/api/v1/bookings")
    assert api.status_code == 401
    assert api.json()["code"] == "UNAUTHENTICATED"


async def test_a_page_that_needs_a_citizen_sends_them_to_sign_in(http: httpx.AsyncClient) -> None:
    response = await http.get("/me/patients")
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=%2Fme%2Fpatients"


async def test_the_root_address_is_the_home_page(http: httpx.AsyncClient) -> None:
    home = await http.get("/", headers={"accept-encoding": "gzip"})
    assert home.status_code == 200
    assert home.headers["content-type"].startswith("text/html")
    assert home.headers["content-encoding"] == "gzip"
    assert "全区医院 一站预约" in home.text
    english = await http.get("/prefs", params={"lang": "en", "next": "/"})
    assert english.status_code == 303
    assert "Every hospital of the region" in (await http.get("/")).text


async def test_the_language_switch_never_redirects_off_site(http: httpx.AsyncClient) -> None:
    response = await http.get("/prefs", params={"lang": "en", "next": "//evil.example/"})
    assert response.headers["location"] == "/"


async def test_swagger_ui_is_served_by_the_app_not_a_cdn(http: httpx.AsyncClient) -> None:
    docs = await http.get("/schema/swagger")
    assert docs.status_code == 200
    assert "cdn." not in docs.text
    for asset in re.findall(r"(?:href|src)=['\"](/static/[^'\"]+)", docs.text):
        assert (await http.get(asset)).status_code == 200, asset


@pytest.mark.parametrize(
    ("public_url", "setting", "secure"),
    [
        ("https://guahao.example", "auto", True),
        ("http://127.0.0.1:8000", "auto", False),
        ("http://10.0.0.5:8000", "always", True),
        ("https://guahao.example", "never", False),
    ],
)
def test_cookies_are_secure_when_served_over_https(
    public_url: str, setting: str, secure: bool
) -> None:
    settings = Settings(public_url=public_url, cookie_secure=setting)  # type: ignore[arg-type]
    assert settings.secure_cookies() is secure
