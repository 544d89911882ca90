"""The portal's pages for people: sign-in, an organisation's call report with its recordings,
and the provider's list of sites. Server-rendered (Jinja2), no scripts, nothing from a CDN.

Every page of an organisation's data asks the database for that organisation's rows only; a call
id of another organisation, guessed or copied, is "not found", the same as an id that never was.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import secrets
from datetime import date
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, quote, urlencode

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from . import callbacks, i18n, reports, stats, users
from .db import as_utc
from .configs import MAX_CONFIG_BYTES, push_config, version_diffs
from .fleet import FleetError, heartbeat_history, site_by_name, site_rows
from .phones import site_phones
from .models import Call, CallbackRequest, Recording, Site
from .storage import Storage

SESSION_COOKIE = "edgepbx_session"
LOGIN_CSRF_COOKIE = "edgepbx_login_csrf"
LANG_COOKIE = "lang"
MAX_FORM_BYTES = 8 << 10
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


def file_name(call: Call) -> str:
    """The download's default name: when, who to whom, which way (safe on every file system)."""
    stamp = call.started_at[:16].replace("T", "_").replace(":", "")
    safe = lambda s: re.sub(r"[^0-9A-Za-z+]+", "", s or "") or "unknown"  # noqa: E731
    return f"{stamp}_{safe(call.src)}_{safe(call.dst_number or call.dst)}_{call.direction}.wav"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range of a `Range: bytes=...` header (what audio players send), or None for
    the whole file; ValueError when it cannot be satisfied."""
    if not header:
        return None
    found = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not found or found.group(1) == found.group(2) == "":
        return None  # several ranges or a malformed header: the whole file, as RFC 9110 allows
    first, last = found.group(1), found.group(2)
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise ValueError("unsatisfiable range")
    return start, end


def add_pages(app: FastAPI, sessions: sessionmaker[Session], storage: Storage) -> None:

    def render(request: Request, name: str, status: int = 200, me: users.SignedIn | None = None,
               **values: object) -> HTMLResponse:
        lang = i18n.choose(request.query_params.get("lang") or request.cookies.get(LANG_COOKIE),
                           request.headers.get("accept-language"))
        html = templates.get_template(name).render(t=i18n.WORDS[lang], lang=lang, me=me, talk=talk,
                                                   file_name=file_name, **values)
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if request.query_params.get("lang") in i18n.LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
        return response

    def words(request: Request) -> dict[str, str]:
        return i18n.WORDS[i18n.choose(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))]

    def secure(request: Request) -> bool:
        return request.url.scheme == "https"  # X-Forwarded-Proto counts only from a --trusted-proxy

    def who(request: Request) -> users.SignedIn | None:
        with sessions() as session:
            return users.current(session, request.cookies.get(SESSION_COOKIE))

    async def form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
        body = await request.body()
        if len(body) > limit:
            raise FleetError(413, "form too large")
        return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}

    def to_login() -> RedirectResponse:
        return RedirectResponse("/login", status_code=303)

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        me = who(request)
        if me is None:
            return to_login()
        return RedirectResponse("/fleet" if me.role == "operator" else "/calls", status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request) -> Response:
        return login_form(request)

    def login_form(request: Request, error: str = "", status: int = 200, username: str = "",
                   headers: dict[str, str] | None = None) -> Response:
        csrf = secrets.token_urlsafe(24)  # double submit: the form's copy must match the cookie's
        response = render(request, "login.html", status, csrf=csrf, error=error, username=username)
        response.set_cookie(LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=secure(request),
                            max_age=3600)
        response.headers.update(headers or {})
        return response

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        fields = await form(request)
        t = words(request)
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not cookie or not secrets.compare_digest(cookie, fields.get("csrf", "")):
            return login_form(request, t["expired_form"], 403)
        username = fields.get("username", "").strip()
        address = request.client.host if request.client else "?"

        def work() -> tuple[str, users.SignedIn]:
            with sessions() as session:
                return users.sign_in(session, username, fields.get("password", ""), address)
        try:
            token, me = await run_in_threadpool(work)
        except users.SignInRefused as refused:
            if refused.retry_after:
                return login_form(request, t["too_many"].format(minutes=math.ceil(refused.retry_after / 60)), 429,
                                  username, {"Retry-After": str(refused.retry_after)})
            return login_form(request, t["wrong_password"], 401, username)
        response = RedirectResponse("/fleet" if me.role == "operator" else "/calls", status_code=303)
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=secure(request),
                            max_age=int(users.SESSION_LIFETIME.total_seconds()), path="/")
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        posted = await signed_form(request, lambda r: signed_in_as(r, lambda _me: True))
        if isinstance(posted, Response):
            return posted

        def work() -> None:
            with sessions() as session:
                users.sign_out(session, request.cookies.get(SESSION_COOKIE))
        await run_in_threadpool(work)
        response = to_login()
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    def report_query(request: Request) -> tuple[reports.Query, str | None]:
        """The report's parameters from the URL, forgiving: anything unknown falls back to a default."""
        q = request.query_params
        preset = q.get("preset") if q.get("preset") in ("today", "yesterday", "week", "month") else None
        if preset is None:
            try:  # any range the user typed; this week when there is none (or it is not a date)
                first, last = sorted((date.fromisoformat(q.get("from", "")), date.fromisoformat(q.get("to", ""))))
            except ValueError:
                preset = "week"
        if preset:
            first, last = reports.preset_range(preset, date.today())
        query = reports.Query(first, last, q.get("view") if q.get("view") in reports.VIEWS else "all",
                              extension=q.get("ext", "").strip()[:32], number=q.get("number", "").strip()[:32],
                              recorded_only=q.get("recorded") == "1",
                              sort=q.get("sort") if q.get("sort") in reports.SORTS else "time",
                              descending=q.get("dir") != "asc")
        return query, preset

    def signed_in_as(request: Request, allowed: Callable[[users.SignedIn], bool]) -> users.SignedIn | Response:
        """Who is signed in, if this page is for them; else the answer to send instead."""
        me = who(request)
        if me is None:
            return to_login()
        if not allowed(me):
            return render(request, "message.html", 403, me, message=words(request)["forbidden"])
        return me

    def org_user(request: Request) -> users.SignedIn | Response:
        return signed_in_as(request, lambda me: me.org_id is not None)

    def operator(request: Request) -> users.SignedIn | Response:
        return signed_in_as(request, lambda me: me.role == "operator")

    async def signed_form(request: Request, allowed: Callable[[Request], users.SignedIn | Response],
                          limit: int = MAX_FORM_BYTES) -> tuple[dict[str, str], users.SignedIn] | Response:
        """A posted form and who posted it, if they may and the form carries their session's CSRF
        token; else the answer to send instead."""
        fields = await form(request, limit)
        me = await run_in_threadpool(allowed, request)
        if isinstance(me, Response):
            return me
        if not secrets.compare_digest(me.csrf_token, fields.get("csrf", "")):
            return render(request, "message.html", 403, me, message=words(request)["expired_form"])
        return fields, me

    @app.get("/calls", include_in_schema=False)
    def calls_page(request: Request) -> Response:
        me = org_user(request)
        if isinstance(me, Response):
            return me
        query, preset = report_query(request)
        page = int(request.query_params.get("page")) if (request.query_params.get("page") or "").isdigit() else 1
        with sessions() as session:
            found, total = reports.conversations(session, me.org_id, query, page)
            called_back = stats.callbacks_for(session, me.org_id, [c.first for c in found])
            requests = callbacks.latest_for(session, [(c.first.site_id, c.first.id) for c in found])
            queued = queued_call_back(session, me, request.query_params.get("queued", ""))
        params = {"from": query.first.isoformat(), "to": query.last.isoformat(), "view": query.view,
                  "ext": query.extension, "number": query.number, "recorded": "1" if query.recorded_only else "",
                  "sort": query.sort, "dir": "desc" if query.descending else "asc"}

        def link(**changes: str) -> str:
            """This report's URL with some parameters changed (empty ones left out)."""
            merged = {k: v for k, v in (params | changes).items() if v}
            return "/calls?" + urlencode(merged)
        return render(request, "calls.html", me=me, conversations=found, total=total, page=page,
                      pages=max(1, math.ceil(total / reports.PAGE_SIZE)), query=query, views=reports.VIEWS,
                      preset=preset, many_sites=len({c.site for c in found}) > 1, link=link, callbacks=called_back,
                      requests=requests, queued=queued, back_link=link(),
                      csv_link="/calls.csv?" + urlencode({k: v for k, v in params.items() if v}))

    def queued_call_back(session: Session, me: users.SignedIn, request_id: str) -> dict | None:
        """The notice after "call back": which phone rings, when, and what it dials (this user's requests only)."""
        row = session.get(CallbackRequest, int(request_id)) if request_id.isdigit() and len(request_id) < 10 else None
        if row is None or row.user_id != me.user_id:
            return None
        site = session.get(Site, row.site_id)
        status = json.loads(site.last_status) if site and site.last_status else {}
        return {"ext": row.extension, "number": row.number, "seconds": int(status.get("heartbeat_seconds") or 60)}

    @app.post("/calls/{call_id}/call-back", include_in_schema=False)
    async def call_back(call_id: str, request: Request) -> Response:
        """Queues the box's call back of a missed call: it rings the user's own extension, then
        dials the caller (the box's dial plan and the extension's permissions apply there)."""
        posted = await signed_form(request, org_user)
        if isinstance(posted, Response):
            return posted
        fields, me = posted
        t = words(request)
        if not me.extension:
            return render(request, "message.html", 409, me, message=t["no_extension"])

        def work() -> int:
            with sessions() as session:
                return callbacks.request_call_back(session, me.org_id, me.user_id, me.extension, call_id).id
        try:
            queued = await run_in_threadpool(work)
        except FleetError as exc:
            return render(request, "message.html", exc.status, me,
                          message=t["not_found"] if exc.status == 404 else exc.message)
        back = fields.get("back", "")
        back = back if back.startswith("/calls?") or back == "/calls" else "/calls"
        return RedirectResponse(f"{back}{'&' if '?' in back else '?'}queued={queued}", status_code=303)

    @app.get("/settings", include_in_schema=False)
    def settings_page(request: Request) -> Response:
        """The box's running settings as it last reported them (read-only; no password is ever sent)."""
        me = org_user(request)
        if isinstance(me, Response):
            return me
        with sessions() as session:
            sites = session.scalars(select(Site).where(Site.org_id == me.org_id).order_by(Site.name)).all()
            shown = []
            for site in sites:
                status = json.loads(site.last_status) if site.last_status else {}
                phones = {p.get("extension"): p for p in status.get("phones", []) if p.get("extension")}
                shown.append({"name": site.name, "settings": status.get("settings"), "phones": phones,
                              "at": as_utc(site.last_heartbeat_at).strftime("%Y-%m-%d %H:%M UTC")
                              if site.last_heartbeat_at else None})
        return render(request, "settings.html", me=me, sites=shown)

    @app.get("/stats", include_in_schema=False)
    def stats_page(request: Request) -> Response:
        me = org_user(request)
        if isinstance(me, Response):
            return me
        query, preset = report_query(request)
        with sessions() as session:
            figures = stats.compute(session, me.org_id, query)
        peak = max([sum(v for k, v in counts.items() if k != "missed") for _, counts in figures.days] + [1])
        return render(request, "stats.html", me=me, s=figures, query=query, preset=preset, peak=peak,
                      hour_peak=max(figures.hours + [1]))

    @app.get("/calls.csv", include_in_schema=False)
    def calls_csv(request: Request) -> Response:
        """The report as CSV that Excel opens with Cyrillic intact: UTF-8 with a byte order mark,
        `;` between fields for a Russian page (what Russian Excel expects), `,` for an English one."""
        me = org_user(request)
        if isinstance(me, Response):
            return me
        query, _preset = report_query(request)
        with sessions() as session:
            found = reports.all_conversations(session, me.org_id, query)
        t = words(request)
        out = io.StringIO()
        writer = csv.writer(out, delimiter=";" if t is i18n.WORDS["ru"] else ",")
        writer.writerow([t["col_time"], t["col_direction"], t["col_from"], t["col_to"], t["col_result"],
                         t["col_talk"], t["col_site"], t["col_recording"], "id"])
        for c in found:
            call = c.first
            legs = "; ".join(f"→ {leg.dst_number or leg.dst}" for leg in c.linked)
            writer.writerow([call.started_at[:19].replace("T", " "), t.get("dir_" + call.direction, call.direction),
                             call.src + (f" ({call.src_name})" if call.src_name and call.src_name != call.src else ""),
                             (call.dst_number or call.dst) + (f" {legs}" if legs else ""),
                             t.get("res_" + (call.disposition or "live"), call.disposition),
                             talk(call.billsec), c.site, "+" if call.recording_sha256 else "", call.id])
        name = f"calls_{query.first.isoformat()}_{query.last.isoformat()}.csv"
        return Response("\ufeff" + out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers=dict(SECURITY_HEADERS, **{"Content-Disposition": f'attachment; filename="{name}"'}))

    @app.get("/calls/{call_id}/recording", include_in_schema=False)
    def recording(call_id: str, request: Request) -> Response:
        me = org_user(request)
        if isinstance(me, Response):
            return me
        with sessions() as session:
            call = reports.call_of_org(session, me.org_id, call_id)
            stored = session.get(Recording, (call.site_id, call.recording_sha256)) \
                if call is not None and call.recording_sha256 else None
        if stored is None:
            return render(request, "message.html", 404, me, message=words(request)["not_found"])
        headers = dict(SECURITY_HEADERS, **{"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"})
        if request.query_params.get("download"):
            name = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "_", request.query_params.get("name") or file_name(call)).strip()
            name = name if name.lower().endswith(".wav") else name + ".wav"
            ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
            headers["Content-Disposition"] = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
        try:
            wanted = parse_range(request.headers.get("range"), stored.size)
        except ValueError:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{stored.size}"})
        start, end = wanted or (0, stored.size - 1)
        headers["Content-Length"] = str(end - start + 1)
        if wanted:
            headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
        return StreamingResponse(storage.read_range(stored.sha256, start, end), status_code=206 if wanted else 200,
                                 media_type="audio/wav", headers=headers)

    @app.get("/fleet", include_in_schema=False)
    def fleet_page(request: Request) -> Response:
        me = operator(request)
        if isinstance(me, Response):
            return me
        with sessions() as session:
            rows = site_rows(session)
        return render(request, "fleet.html", me=me, sites=rows)

    def site_page(request: Request, me: users.SignedIn, name: str, status: int = 200, pushed: int | None = None,
                  errors: list[str] | None = None, text: str = "") -> Response:
        with sessions() as session:
            try:
                site_by_name(session, name)
            except FleetError:
                return render(request, "message.html", 404, me, message=words(request)["not_found"])
            row = next(r for r in site_rows(session) if r["site"] == name)
            history, versions, phones = heartbeat_history(session, name), version_diffs(session, name), site_phones(session, name)
        return render(request, "site.html", status, me=me, site=row, history=history, versions=versions,
                      phones=phones, pushed=pushed, errors=errors or [], text=text)

    @app.get("/fleet/{name}", include_in_schema=False)
    def fleet_site(name: str, request: Request) -> Response:
        me = operator(request)
        return me if isinstance(me, Response) else site_page(request, me, name)

    @app.post("/fleet/{name}/config", include_in_schema=False)
    async def fleet_push(name: str, request: Request) -> Response:
        """An operator's edited config: checked with the box's own validator before it is queued."""
        posted = await signed_form(request, operator, limit=3 * MAX_CONFIG_BYTES)  # urlencoded: up to 3 bytes a byte
        if isinstance(posted, Response):
            return posted
        fields, me = posted
        text = fields.get("config", "").replace("\r\n", "\n")

        def work() -> Response:
            with sessions() as session:
                try:
                    version = push_config(session, name, text)
                except FleetError as exc:
                    errors = exc.message.split("\n")[1:] or [exc.message]
                    return site_page(request, me, name, exc.status, errors=errors, text=text)
            return site_page(request, me, name, pushed=version)
        return await run_in_threadpool(work)
