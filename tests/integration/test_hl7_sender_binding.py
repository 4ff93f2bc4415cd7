"""HL7 v2 senders are authenticated by their connection, not by what MSH-4 says.

Before the sender binding, anyone who reached the MLLP port could name another hospital in
MSH-4 and stop its sessions, or spend the control ids it would use next so that its genuine
messages were answered from the replay log with no effect. These tests send the hostile
messages over real sockets (plain MLLP and MLLP over TLS with client certificates) and check
that nothing changes, and that the genuine message still takes effect afterwards.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import ssl
import time
from pathlib import Path

import hl7
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from guahao.hospital_connectors.failures import RetryableError
from guahao.hospital_connectors.mllp import MllpClient, server_ssl_context
from guahao.platform.errors import GuahaoError
from tests.fixtures.his_simulator import LOOPBACK_SENDERS, SIM_HOSPITAL
from tests.fixtures.platforms import clinic, confirmed_booking, publish_clinic

FAR_AWAY = {"addresses": ["10.99.0.0/24"]}


def arrival(booking_id: str, control_id: str, facility: str = SIM_HOSPITAL) -> str:
    """ADT^A04 (the patient arrived) for a platform booking, as a HIS sends it."""
    return "\r".join(
        [
            f"MSH|^~\\&|HIS|{facility}|GUAHAO|REGION|20260304080000+0000||ADT^A04^ADT_A01|"
            f"{control_id}|P|2.5",
            "EVN|A04",
            f"PID|1||MR1^^^{facility}^MR||",
            f"PV1|1|O|||||||||||||||||{booking_id}^^^GUAHAO^VN",
        ]
    )


def answer(ack: str) -> tuple[str, str]:
    """MSA-1 and the ERR code of an ACK."""
    message = hl7.parse(ack.replace("\n", "\r"))
    code = str(message.segment("MSA")[1])
    try:
        err = str(message.segment("ERR")[5]).split("^")[0]
    except KeyError:
        err = ""
    return code, err


async def bind(platform, senders) -> None:
    await platform.connectors.registry.register(
        SIM_HOSPITAL, "hl7v2", config={"facility": SIM_HOSPITAL, "senders": senders}
    )


async def booked(platform) -> str:
    """A confirmed booking at the bound hospital."""
    slots = await publish_clinic(platform, clinic(code=SIM_HOSPITAL))
    _, booking_id, _ = await confirmed_booking(platform, slots[0])
    return booking_id


async def test_registering_hl7v2_without_a_sender_binding_is_refused(platform):
    await platform.supply.register_hospital(clinic(code=SIM_HOSPITAL))
    with pytest.raises(GuahaoError) as refused:
        await platform.connectors.registry.register(
            SIM_HOSPITAL, "hl7v2", config={"facility": SIM_HOSPITAL}
        )
    assert refused.value.code == "HL7_SENDER_BINDING_INVALID"
    with pytest.raises(GuahaoError) as malformed:
        await bind(platform, {"addresses": ["not-a-network"]})
    assert malformed.value.code == "HL7_SENDER_BINDING_INVALID"


async def test_a_message_from_an_unbound_address_changes_nothing_and_spends_no_control_id(
    platform,
):
    booking_id = await booked(platform)
    await bind(platform, FAR_AWAY)
    port = await platform.connectors.start_mllp()
    client = MllpClient("127.0.0.1", port)
    try:
        refused = await client.send(arrival(booking_id, "ARR-NEXT"))
        assert answer(refused) == ("AR", "HL7_SENDER_NOT_AUTHORISED")
        assert (await platform.bookings.get(booking_id)).status.value == "confirmed"

        # the hospital's own system, once bound, sends the control id the intruder used
        await bind(platform, LOOPBACK_SENDERS)
        genuine = await client.send(arrival(booking_id, "ARR-NEXT"))
        assert answer(genuine) == ("AA", "")
        assert (await platform.bookings.get(booking_id)).status.value == "checked_in"
    finally:
        await client.close()


async def test_a_bound_sender_cannot_speak_for_another_hospital(platform):
    await platform.supply.register_hospital(clinic(code=SIM_HOSPITAL))
    await bind(platform, FAR_AWAY)  # sim1's HIS is elsewhere
    slots = await publish_clinic(platform, clinic(code="h2"))
    _, foreign, _ = await confirmed_booking(platform, slots[0])
    await platform.connectors.registry.register(
        "h2", "hl7v2", config={"facility": "h2", "senders": LOOPBACK_SENDERS}
    )
    port = await platform.connectors.start_mllp()
    client = MllpClient("127.0.0.1", port)
    try:
        # h2's connection names sim1 in MSH-4: refused, whatever the message would do
        reply = await client.send(arrival("b-unknown", "X-1", facility=SIM_HOSPITAL))
        assert answer(reply) == ("AR", "HL7_SENDER_NOT_AUTHORISED")
        # and speaking for itself still works
        own = await client.send(arrival(foreign, "H2-1", facility="h2"))
        assert answer(own)[0] == "AA"
        assert (await platform.bookings.get(foreign)).status.value == "checked_in"
    finally:
        await client.close()


# ---------------------------------------------------------------- MLLP over TLS


class Pki:
    """A CA, the listener's certificate and two hospitals' client certificates, on disk."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Regional HIS CA")])
        self.ca = self._certificate(name, self.ca_key.public_key(), ca=True, subject=name)
        self.ca_file = self._write("ca.pem", self.ca)
        self.server_cert, self.server_key = self._issue("listener", server=True)
        self.a_cert, self.a_key = self._issue("his-a")
        self.b_cert, self.b_key = self._issue("his-b")

    def _certificate(self, issuer, public_key, *, ca=False, subject=None, server=False):
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject or issuer)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(self.ca_key, hashes.SHA256())

    def _issue(self, cn: str, *, server: bool = False) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = self._certificate(self.ca.subject, key.public_key(), subject=subject, server=server)
        key_file = self.folder / f"{cn}.key"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return self._write(f"{cn}.pem", cert), key_file

    def _write(self, name: str, cert: x509.Certificate) -> Path:
        path = self.folder / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    @staticmethod
    def fingerprint(cert_file: Path) -> str:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()

    def client(self, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        if cert is not None and key is not None:
            context.load_cert_chain(cert, key)
        return context


async def test_over_tls_only_the_pinned_client_certificate_speaks_for_the_hospital(
    platform, tmp_path
):
    pki = Pki(tmp_path)
    booking_id = await booked(platform)
    # the binding names the certificate by the fingerprint openssl prints (with colons)
    pinned = ":".join(Pki.fingerprint(pki.a_cert)[i : i + 2].upper() for i in range(0, 64, 2))
    await bind(platform, {"certificates": [pinned]})
    port = await platform.connectors.start_mllp(
        ssl_context=server_ssl_context(str(pki.server_cert), str(pki.server_key), str(pki.ca_file))
    )

    no_certificate = MllpClient("127.0.0.1", port, timeout=5, ssl_context=pki.client())
    with pytest.raises(RetryableError):  # the handshake itself fails: no client certificate
        await no_certificate.send(arrival(booking_id, "T-0"))
    await no_certificate.close()

    other = MllpClient(
        "127.0.0.1", port, ssl_context=pki.client(pki.b_cert, pki.b_key)
    )  # a valid certificate of the region, but not this hospital's
    try:
        assert answer(await other.send(arrival(booking_id, "T-1"))) == (
            "AR",
            "HL7_SENDER_NOT_AUTHORISED",
        )
    finally:
        await other.close()
    assert (await platform.bookings.get(booking_id)).status.value == "confirmed"

    own = MllpClient("127.0.0.1", port, ssl_context=pki.client(pki.a_cert, pki.a_key))
    try:
        assert answer(await own.send(arrival(booking_id, "T-1"))) == ("AA", "")
    finally:
        await own.close()
    assert (await platform.bookings.get(booking_id)).status.value == "checked_in"


# ---------------------------------------------------------------- one message, no stall


async def test_hostile_frames_are_refused_without_stalling_the_event_loop(platform):
    """Frames of separators just under the frame limit once held the loop for ~18 s (the
    message was parsed three to five times on it). Now they are counted before parsing and
    parsed at most once, in a worker thread: the loop's own thread does next to nothing."""
    await platform.supply.register_hospital(clinic(code=SIM_HOSPITAL))
    await bind(platform, LOOPBACK_SENDERS)
    port = await platform.connectors.start_mllp()
    msh = f"MSH|^~\\&|HIS|{SIM_HOSPITAL}|GUAHAO|REGION|20260304080000||ADT^A04|H-{{}}|P|2.5\r"
    hostile = [
        msh.format(1) + "NTE|1||" + "^" * 1_000_000,  # near the 1 MiB frame limit
        msh.format(2) + "NTE|1||" + "~" * 4_900,  # under the separator limit: parsed
        msh.format(3) + "\r".join(["NTE|1||x"] * 5_000),  # too many segments
        "MSH#$%@*#HIS#"
        + SIM_HOSPITAL
        + "#G#R#20260304080000##ADT$A04#H-4#P#2.5\rNTE#1##"
        + "$" * 200_000,  # separators the sender chose itself
    ]

    async def send(message: str) -> str:
        client = MllpClient("127.0.0.1", port, timeout=30)
        try:
            return await client.send(message)
        finally:
            await client.close()

    # CPU time of the event loop's own thread: what the loop cannot spend on other clients.
    # (Wall-clock lag is no measure on a shared machine; this is.)
    loop_cpu = time.thread_time()
    replies = await asyncio.gather(*(send(m) for m in hostile))
    loop_cpu = time.thread_time() - loop_cpu

    codes = [answer(reply) for reply in replies]
    assert codes[0] == ("AR", "HL7_MESSAGE_TOO_LARGE")
    assert codes[1][0] == "AA"  # under the limits: parsed once; no platform visit, no effect
    assert codes[2] == ("AR", "HL7_MESSAGE_TOO_LARGE")
    assert codes[3] == ("AR", "HL7_MESSAGE_TOO_LARGE")
    # before: the separators alone cost the loop's thread several seconds of CPU
    assert loop_cpu < 0.2, f"the event loop's thread spent {loop_cpu:.3f} s of CPU"
