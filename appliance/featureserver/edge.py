"""What the SIP edge (Kamailio, appliance/kamailio/kemi_router.py) tells the feature server about
an INVITE it relays, in one header of the project's own: who the caller is (authenticated, or
the trunk's From), what was dialled, the trunk it came in on, the call a BLF key picks up, its
Call-ID, and whether the caller's phone reached the edge over TLS. Kamailio has parsed the message already;
the feature server reads nothing else of it.

    X-Edgepbx-Call: caller=101;name=Reception;dialled=102;to=102;trunk=;replaces=;call_id=a84b4c76e66710;tls=0

Each value is percent-encoded (RFC 3986), so `;`, `=`, quotes and line ends cannot break out.
The edge removes any such header a phone or provider sent, and the feature server accepts
INVITEs only from the edge's address.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

HEADER = "X-Edgepbx-Call"
FIELDS = ("caller", "name", "dialled", "to", "trunk", "replaces", "call_id", "tls")


@dataclass(frozen=True)
class EdgeCall:
    caller: str = ""     # the authenticated extension, or the trunk caller's number ("anonymous" if none)
    name: str = ""       # the caller's display name (the extension's name)
    dialled: str = ""    # the Request-URI's user: what the phone dialled, or the DID a trunk sent
    to: str = ""         # the To header's user (a provider sending to a registered Contact puts the DID there)
    trunk: str = ""      # the trunk the call came in on; "" for an office phone
    replaces: str = ""   # a BLF key's pickup: the Call-ID of the ringing dialog it replaces
    call_id: str = ""    # the INVITE's Call-ID (for the call record)
    tls: bool = False    # the caller reached the edge over TLS


def format_edge_call(call: EdgeCall) -> str:
    """The header's value for `call` (what the edge writes; tests use it too)."""
    values = {name: getattr(call, name) for name in FIELDS}
    values["tls"] = "1" if call.tls else "0"
    return ";".join(f"{name}={quote(str(value), safe='')}" for name, value in values.items())


def parse_edge_call(value: str) -> EdgeCall:
    """The header's value read back; unknown names are ignored (a newer edge), a name given twice
    keeps its first value, and a part without `=` is a ValueError."""
    found: dict[str, str] = {}
    for part in value.strip().split(";"):
        if not part.strip():
            continue
        name, sep, text = part.partition("=")
        if not sep:
            raise ValueError(f"{HEADER}: {part.strip()!r} is not name=value")
        name = name.strip().lower()
        if name in FIELDS and name not in found:
            found[name] = unquote(text.strip())
    tls = found.pop("tls", "0") == "1"
    return EdgeCall(tls=tls, **found)
