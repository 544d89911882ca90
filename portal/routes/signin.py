"""Signing in and out, and where a signed-in person lands."""
from __future__ import annotations

import math
import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from .. import users
from ..deps import MAX_FORM_BYTES, SESSION_COOKIE, db, form, signed_form, signed_in
from ..pages import render, words

LOGIN_CSRF_COOKIE = "edgepbx_login_csrf"
router = APIRouter(include_in_schema=False)


def secure(request: Request) -> bool:
    return request.url.scheme == "https"  # X-Forwarded-Proto counts only from a --trusted-proxy


def landing(me: users.SignedIn) -> str:
    return "/fleet" if me.role == "operator" else "/calls"


@router.get("/")
def home(me: users.SignedIn = Depends(signed_in)) -> Response:
    return RedirectResponse(landing(me), status_code=303)


@router.get("/login")
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


@router.post("/login", max_body_size=MAX_FORM_BYTES)  # anonymous: cut off before any database work
def login(request: Request, fields: dict[str, str] = Depends(form), session: Session = Depends(db)) -> Response:
    t = words(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, fields.get("csrf", "")):
        return login_form(request, t["expired_form"], 403)
    username = fields.get("username", "").strip()
    address = request.client.host if request.client else "?"
    try:
        token, me = users.sign_in(session, username, fields.get("password", ""), address)
    except users.SignInRefused as refused:
        if refused.retry_after:
            return login_form(request, t["too_many"].format(minutes=math.ceil(refused.retry_after / 60)), 429,
                              username, {"Retry-After": str(refused.retry_after)})
        return login_form(request, t["wrong_password"], 401, username)
    response = RedirectResponse(landing(me), status_code=303)
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", secure=secure(request),
                        max_age=int(users.SESSION_LIFETIME.total_seconds()), path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout", max_body_size=MAX_FORM_BYTES)
def logout(request: Request, posted=Depends(signed_form()), session: Session = Depends(db)) -> Response:  # noqa: ANN001
    users.sign_out(session, request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
