"""What the feature server reads of an INVITE pjsua2 hands it: where it came from and the edge's
X-Edgepbx-Call header (featureserver/edge.py), the one header it looks for in the raw message."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..edge import HEADER, EdgeCall, parse_edge_call

HEADER_LINE = re.compile(rf"^{re.escape(HEADER)}[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Invite:
    leg_id: int              # pjsua's id of the incoming leg
    source: str              # "address:port" it came from
    edge: EdgeCall | None    # None: no (or a malformed) X-Edgepbx-Call header


def read_invite(leg_id: int, source: str, message: str) -> Invite:
    header = HEADER_LINE.search(message)
    edge = None
    if header:
        try:
            edge = parse_edge_call(header.group(1))
        except ValueError:
            edge = None
    return Invite(leg_id, source, edge)
