"""Who may speak HL7 v2 for a hospital: the sender binding of its ``hl7v2`` connector.

MSH-4 (the sending facility) is text the sender writes, so it cannot say who is sending: anyone
who reaches the MLLP port could otherwise stop another hospital's sessions, or spend the control
ids that hospital will use next so that its genuine messages are answered from the replay log
with no effect. Each ``hl7v2`` connector is therefore bound to what identifies the sender on the
connection itself, and a message is taken only when the connection matches the binding of the
hospital its MSH-4 names:

- ``addresses``: the networks the HIS sends from (CIDR, IPv4 or IPv6);
- ``certificates``: SHA-256 fingerprints of the client certificates the HIS presents over MLLP
  with TLS (the listener also checks the chain against its client CA).

When both are given, both must match. A connector with neither takes nothing: registration
refuses it (``HL7_SENDER_BINDING_INVALID``), and one recorded before bindings existed is refused
message by message (``HL7_SENDER_NOT_AUTHORISED``) until it is bound.

The binding lives in the connector's ``config`` under ``senders``::

    {"facility": "CITY1", "senders": {"addresses": ["10.8.0.0/24"],
                                      "certificates": ["9f86d081884c7d65..."]}}
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from guahao.hospital_connectors.mllp import Peer
from guahao.platform.error_codes import refuse

__all__ = ["SenderBinding", "binding_of", "normalise_fingerprint", "senders_config"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_HEX64 = re.compile(r"[0-9a-f]{64}")


def normalise_fingerprint(text: str) -> str:
    """Lower-case hex without separators, as ``openssl x509 -fingerprint -sha256`` prints it
    with colons.

    >>> normalise_fingerprint("9F:86:D0") == "9f86d0"
    True
    """
    return re.sub(r"[\s:]", "", text).lower()


class SenderBinding(msgspec.Struct, frozen=True):
    """The parsed ``senders`` of one connector."""

    addresses: tuple[IpNetwork, ...] = ()
    certificates: frozenset[str] = frozenset()

    @property
    def bound(self) -> bool:
        return bool(self.addresses or self.certificates)

    def admits(self, peer: Peer) -> bool:
        """Whether a message on ``peer``'s connection may speak for this hospital.

        >>> binding = binding_of({"senders": {"addresses": ["10.8.0.0/24"]}})
        >>> binding.admits(Peer("10.8.0.7")), binding.admits(Peer("10.9.0.7"))
        (True, False)
        >>> binding.admits(Peer("::ffff:10.8.0.7"))
        True
        """
        if not self.bound:
            return False
        if self.addresses and not _address_in(peer.host, self.addresses):
            return False
        return not self.certificates or peer.certificate_sha256 in self.certificates


def _address_in(host: str, networks: Sequence[IpNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener reports IPv4 peers this way
    return any(address.version == net.version and address in net for net in networks)


def binding_of(config: Mapping[str, Any]) -> SenderBinding:
    """The binding in a connector's config; ``HL7_SENDER_BINDING_INVALID`` if malformed."""
    senders = config.get("senders") or {}
    if not isinstance(senders, Mapping):
        refuse("HL7_SENDER_BINDING_INVALID", field="senders")
    addresses: list[IpNetwork] = []
    for text in senders.get("addresses") or ():
        try:
            addresses.append(ipaddress.ip_network(str(text), strict=False))
        except ValueError:
            refuse("HL7_SENDER_BINDING_INVALID", field="senders.addresses", value=str(text))
    certificates: set[str] = set()
    for text in senders.get("certificates") or ():
        fingerprint = normalise_fingerprint(str(text))
        if not _HEX64.fullmatch(fingerprint):
            refuse("HL7_SENDER_BINDING_INVALID", field="senders.certificates", value=str(text))
        certificates.add(fingerprint)
    return SenderBinding(tuple(addresses), frozenset(certificates))


def senders_config(addresses: Sequence[str], certificates: Sequence[str]) -> dict[str, list[str]]:
    """The ``senders`` value for a connector's config, checked and normalised."""
    config = {
        "addresses": [str(a) for a in addresses],
        "certificates": [normalise_fingerprint(c) for c in certificates],
    }
    binding = binding_of({"senders": config})
    if not binding.bound:
        refuse("HL7_SENDER_BINDING_INVALID", field="senders")
    return {
        "addresses": [str(net) for net in binding.addresses],
        "certificates": sorted(binding.certificates),
    }
