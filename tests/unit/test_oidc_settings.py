"""Sign-in through an identity provider is configured by settings, or is off."""

from __future__ import annotations

from pathlib import Path

import pytest

from guahao.config import load_settings
from guahao.web.oidc import ClientRegistration


def test_without_an_issuer_there_is_no_relying_party() -> None:
    assert ClientRegistration.from_settings(load_settings({})) is None


def test_redirect_uris_come_from_the_public_url() -> None:
    settings = load_settings(
        {
            "GUAHAO_PUBLIC_URL": "https://guahao.region.example/",
            "GUAHAO_OIDC_ISSUER": "https://id.region.example",
            "GUAHAO_OIDC_CLIENT_ID": "guahao",
            "GUAHAO_OIDC_CLIENT_SECRET": "s3cret",
            "GUAHAO_OIDC_SCOPES": "phone profile",
        }
    )
    registration = ClientRegistration.from_settings(settings)
    assert registration is not None
    assert registration.redirect_uri == "https://guahao.region.example/auth/oidc/callback"
    assert registration.post_logout_redirect_uri == "https://guahao.region.example/"
    assert registration.scopes == "openid phone profile"  # openid is never left out
    assert registration.private_key_pem == ""


def test_a_private_key_file_replaces_the_secret(tmp_path: Path) -> None:
    key = tmp_path / "client.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n…\n-----END PRIVATE KEY-----\n")
    settings = load_settings(
        {
            "GUAHAO_OIDC_ISSUER": "https://id.region.example",
            "GUAHAO_OIDC_CLIENT_ID": "guahao",
            "GUAHAO_OIDC_PRIVATE_KEY_FILE": str(key),
        }
    )
    registration = ClientRegistration.from_settings(settings)
    assert registration is not None
    assert registration.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize(
    "environ",
    [
        {"GUAHAO_OIDC_ISSUER": "https://id.region.example", "GUAHAO_OIDC_CLIENT_SECRET": "s"},
        {"GUAHAO_OIDC_ISSUER": "https://id.region.example", "GUAHAO_OIDC_CLIENT_ID": "guahao"},
    ],
    ids=["no-client-id", "no-secret-or-key"],
)
def test_a_half_configured_client_stops_the_start(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="GUAHAO_OIDC_"):
        ClientRegistration.from_settings(load_settings(environ))
