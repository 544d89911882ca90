"""What every page shares: the templates (Jinja2, autoescaped), the language chosen for the
reader, the security headers, and the small formatters the templates use. Server-rendered, no
scripts, nothing from a CDN."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from . import clock, i18n
from .models import Call
from .users import SignedIn

LANG_COOKIE = "lang"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; media-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}

templates = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
                        autoescape=select_autoescape(["html"]))


def talk(seconds: int | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds // 60}:{seconds % 60:02d}"


def moment(value: str | None, zone_name: str | None = None) -> str:
    """An ISO 8601 moment as a person reads it, in the site's zone (portal/clock.py): `2026-12-03 14:05:09`."""
    if not value:
        return "—"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value[:19]
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(clock.zone(zone_name)).strftime("%Y-%m-%d %H:%M:%S")


POOR_MOS, FAIR_MOS = 3.6, 4.0  # under 3.6 users complain (G.107 Annex B); 4.0 and up is toll quality


def call_quality(call: Call) -> dict | None:
    """The report's mark for a call: its worse leg's MOS, good / fair / poor, and each leg's figures."""
    if not call.quality:
        return None
    try:
        legs = json.loads(call.quality)
        worst = min(float(leg["mos"]) for leg in legs.values() if isinstance(leg.get("mos"), (int, float)))
    except (ValueError, AttributeError, TypeError):
        return None
    mark = "poor" if worst < POOR_MOS else "fair" if worst < FAIR_MOS else "good"
    return {"mos": worst, "mark": mark, "legs": legs}


def file_name(call: Call) -> str:
    """The download's default name, without its extension (the format chosen adds it): when, who
    to whom, which way (safe on every file system)."""
    stamp = call.started_at[:16].replace("T", "_").replace(":", "")
    safe = lambda s: re.sub(r"[^0-9A-Za-z+]+", "", s or "") or "unknown"  # noqa: E731
    return f"{stamp}_{safe(call.src)}_{safe(call.dst_number or call.dst)}_{call.direction}"


def render(request: Request, name: str, status: int = 200, me: SignedIn | None = None,
           **values: object) -> HTMLResponse:
    lang = i18n.choose(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE),
                       request.headers.get("accept-language"))
    html = templates.get_template(name).render(t=i18n.WORDS[lang], lang=lang, me=me, talk=talk,
                                               file_name=file_name, moment=moment, call_quality=call_quality,
                                               **values)
    response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
    if request.query_params.get("lang") in i18n.LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


def words(request: Request) -> dict[str, str]:
    return i18n.WORDS[i18n.choose(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))]


def message(request: Request, status: int, me: SignedIn | None, key: str | None = None, text: str = "",
            home: bool = False) -> HTMLResponse:
    """A page that only says something: a word from i18n (`key`), or `text`; `home`: with a link
    to the start page."""
    return render(request, "message.html", status, me, message=words(request)[key] if key else text, home=home)
