"""Transport to a HIS's FHIR R4 REST endpoint: search with paging, Appointment writes.

Authentication is SMART Backend Services when the connector has a private key: Authlib's
``AsyncOAuth2Client`` with a ``private_key_jwt`` client assertion (RFC 7523) fetches the
token from the HIS's token endpoint. Failures are typed: unreachable, timed out, 5xx and 429
are ``RetryableError`` (retried here a few times with exponential backoff by tenacity, then by
the next scheduled sync); other 4xx answers are ``PermanentError``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from guahao.hospital_connectors.canonical import Refusal
from guahao.hospital_connectors.failures import PermanentError, RetryableError
from guahao.hospital_connectors.fhir_mapping import decode_resources
from guahao.hospital_connectors.fhir_resources import Appointment, Bundle, Patient
from guahao.platform.oauth_client import AsyncOAuth2Client

__all__ = ["FhirClient"]

FHIR_JSON = "application/fhir+json"
_BUNDLE = msgspec.json.Decoder(Bundle)
_ENCODER = msgspec.json.Encoder()


class FhirClient:
    """One HIS's FHIR endpoint."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str = "",
        private_key_pem: str = "",
        token_url: str = "",
        timeout: float = 10.0,
        attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._attempts = attempts
        headers = {"accept": FHIR_JSON}
        if private_key_pem:
            # SMART Backend Services: the client assertion is signed with RS384
            oauth = AsyncOAuth2Client(
                client_id=client_id,
                client_secret=private_key_pem,
                token_endpoint_auth_method="private_key_jwt",
                timeout=timeout,
                headers=headers,
                transport=transport,
            )
            oauth.register_client_auth_method(PrivateKeyJWT(token_url, alg="RS384"))
            self._token_url = token_url
            self._http: httpx.AsyncClient = oauth
        else:
            self._token_url = ""
            self._http = httpx.AsyncClient(timeout=timeout, headers=headers, transport=transport)

    async def close(self) -> None:
        await self._http.aclose()

    async def _authorize(self) -> None:
        if not self._token_url:
            return
        oauth = self._http
        assert isinstance(oauth, AsyncOAuth2Client)
        token = oauth.token
        if token is None or token.is_expired():
            try:
                await oauth.fetch_token(
                    self._token_url, grant_type="client_credentials", scope="system/*.rs"
                )
            except httpx.TransportError as exc:
                raise RetryableError("HIS_UNAVAILABLE", f"token endpoint: {exc!r}") from exc
            except Exception as exc:  # the token endpoint refused the assertion
                raise PermanentError("HIS_REFUSED", f"token endpoint: {exc}") from exc

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.1, max=2),
            retry=retry_if_exception_type(RetryableError),
            reraise=True,
        ):
            with attempt:
                await self._authorize()
                try:
                    response = await self._http.request(method, url, **kwargs)
                except httpx.TransportError as exc:
                    raise RetryableError("HIS_UNAVAILABLE", f"{method} {url}: {exc!r}") from exc
                if response.status_code >= 500 or response.status_code == 429:
                    raise RetryableError(
                        "HIS_UNAVAILABLE", f"{method} {url}: HTTP {response.status_code}"
                    )
                if response.status_code >= 400:
                    raise PermanentError(
                        "HIS_REFUSED",
                        f"{method} {url}: HTTP {response.status_code} {response.text[:300]}",
                        status=response.status_code,
                    )
                return response
        raise AssertionError("unreachable")

    async def metadata(self) -> dict[str, Any]:
        response = await self._request("GET", f"{self.base_url}/metadata")
        data: dict[str, Any] = response.json()
        return data

    async def search(
        self, kind: str, params: dict[str, str] | None = None, *, page_size: int = 500
    ) -> AsyncIterator[tuple[list[Any], list[Refusal]]]:
        """Each page's resources (decoded by msgspec) and refusals, following ``next``."""
        query = {"_count": str(page_size), **(params or {})}
        url: str | None = f"{self.base_url}/{kind}"
        first = True
        while url:
            response = await self._request("GET", url, params=query if first else None)
            first = False
            body = response.content
            resources, refusals = decode_resources(body)
            yield resources, refusals
            try:
                url = _BUNDLE.decode(body).next_url() or None
            except msgspec.ValidationError:
                # the page had a resource type we do not read; find the link the slow way
                raw = msgspec.json.decode(body)
                url = next(
                    (k["url"] for k in raw.get("link", []) if k.get("relation") == "next"), None
                )

    async def operation(self, name: str, parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """An IHE ITI Scheduling operation on Appointment (``find``, ``hold``, ``book``):
        the resources of the Bundle it answers."""
        response = await self._request(
            "POST",
            f"{self.base_url}/Appointment/${name}",
            content=_ENCODER.encode({"resourceType": "Parameters", "parameter": parameters}),
            headers={"content-type": FHIR_JSON},
        )
        body: dict[str, Any] = response.json()
        if body.get("resourceType") == "Bundle":
            return [e["resource"] for e in body.get("entry", []) if "resource" in e]
        return [body]

    async def put_patient(self, patient: Patient, patient_identifier: str) -> dict[str, Any]:
        """建档: create or update the Patient by the platform's identifier (idempotent)."""
        response = await self._request(
            "PUT",
            f"{self.base_url}/Patient",
            params={"identifier": patient_identifier},
            content=_ENCODER.encode(patient),
            headers={"content-type": FHIR_JSON},
        )
        data: dict[str, Any] = response.json()
        return data

    async def put_appointment(
        self, appointment: Appointment, booking_identifier: str
    ) -> dict[str, Any]:
        """Create or update the Appointment for a booking (conditional update: idempotent)."""
        response = await self._request(
            "PUT",
            f"{self.base_url}/Appointment",
            params={"identifier": booking_identifier},
            content=_ENCODER.encode(appointment),
            headers={"content-type": FHIR_JSON},
        )
        data: dict[str, Any] = response.json()
        return data

    async def put_resource(
        self, kind: str, resource: dict[str, Any], identifier: str
    ) -> dict[str, Any]:
        """Conditional update of any resource by its identifier (idempotent)."""
        response = await self._request(
            "PUT",
            f"{self.base_url}/{kind}",
            params={"identifier": identifier},
            content=_ENCODER.encode(resource),
            headers={"content-type": FHIR_JSON},
        )
        data: dict[str, Any] = response.json()
        return data
