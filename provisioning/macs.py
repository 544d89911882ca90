"""MAC addresses in every notation phones, labels and routers use, normalised to 12 lowercase hex."""
from __future__ import annotations

import re

_HEX = re.compile(r"[0-9a-fA-F]")


def normalise_mac(text: str) -> str | None:
    """'80:5E:C0:11:22:33', '80-5e-c0-11-22-33', '805e.c011.2233', '805EC0112233' -> '805ec0112233'."""
    if not isinstance(text, str):
        return None
    cleaned = re.sub(r"[\s:.\-]", "", text)
    if len(cleaned) != 12 or not all(_HEX.match(c) for c in cleaned):
        return None
    return cleaned.lower()


def oui(mac: str) -> str:
    return mac[:6].upper()
