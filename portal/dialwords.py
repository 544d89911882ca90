"""A dial-plan rule's pattern as a person reads it: `^8(9\\d{9})$` is `8 9XXXXXXXXX`,
`^\\+?7(\\d{10})$` is `(+)7 XXXXXXXXXX`, `^810(\\d{6,15})$` is `810 X…`, `^(112|10[1-4])$` is `112 | 10X`. Only the shapes the
country plans and office rules use are read (literal digits, `\\d{n}`, `\\d{m,n}`, a digit class,
`\\+` and `\\+?`, groups and `|`); anything else is None and the page shows the pattern as code."""
from __future__ import annotations

import re

TOKEN = re.compile(r"\\d\{(\d+)\}|\\d\{(\d+),(\d+)\}|\\d|\[[0-9-]+\]|\\\+\??|[0-9#*]|[()|]")


def shape(pattern: str) -> str | None:
    body = pattern.removeprefix("^").removesuffix("$")
    out, at = [], 0
    while at < len(body):
        found = TOKEN.match(body, at)
        if not found:
            return None
        text = found.group(0)
        if found.group(1):
            out.append("X" * int(found.group(1)))
        elif found.group(2):
            out.append("X…")
        elif text in (r"\d",) or text.startswith("["):
            out.append("X")
        elif text.startswith("\\+"):
            out.append("(+)" if text.endswith("?") else "+")
        elif text == "|":
            out.append(" | ")
        elif text == "(":
            out.append(" " if out and out[-1] not in (" | ", "(+)", "+") else "")
        elif text != ")":
            out.append(text)
        at = found.end()
    return re.sub(r"\s+", " ", "".join(out)).strip() or None
