"""The box's own validator speaks English (`config:5: inbound.day: not an extension: 101`); the
configurator's pages say the messages a form's change can cause in the reader's language, beside
the box's original. Each known message is a pattern whose named parts (numbers, names, a MAC) are
kept as they were, marked translate="no"; an unknown one is shown as the box said it."""
from __future__ import annotations

import re

from markupsafe import Markup, escape

LOCATION = re.compile(r"^[^:\n]*:\d+: ")  # `config:5: ` or `portal config v3:5: ` before the message
PATTERNS = (
    (re.compile(r"inbound\.(day|night|menu\.\d): not an extension: (?P<numbers>.+)"), "box_not_extension"),
    (re.compile(r"extension (?P<number>\d+): MAC (?P<mac>\S+) is already used on line \d+"), "box_mac_used"),
    (re.compile(r"extension (?P<number>\d+): (?P<count>\d+) keys, but a (?P<model>\S+ \S+) has (?P<keys>\d+)"),
     "box_too_many_keys"),
    (re.compile(r"dial rule names unknown trunk\(s\): (?P<names>.+)"), "box_rule_trunk"),
    (re.compile(r"features\.(pickup_code|directed_pickup_prefix) must be 1 to 4 of 0-9 \* #"), "box_code_shape"),
    (re.compile(r"features\.transfer_key must be one DTMF key.*"), "box_transfer_key"),
    (re.compile(r"features\.transfer_key and features\.transfer_cancel_key must differ"), "box_transfer_keys_same"),
    (re.compile(r"duplicate extension (?P<number>\d+).*"), "box_duplicate_extension"),
    (re.compile(r"at most (?P<count>\d+) trunks.*"), "box_too_many_trunks"),
)


def said(message: str, words: dict[str, str]) -> Markup | None:
    """The box's message in the reader's words, or None when it is not one the portal knows."""
    text = LOCATION.sub("", message, count=1)
    for pattern, key in PATTERNS:
        found = pattern.fullmatch(text)
        if found and key in words:
            parts = {name: Markup('<span translate="no">{}</span>').format(value)
                     for name, value in found.groupdict().items()}
            return Markup(escape(words[key])).format(**parts)
    return None
