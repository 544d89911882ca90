"""People who sign in to the portal's pages: accounts (argon2 password hashes), sign-in with a
rate limit against password guessing, and browser sessions kept in the database.

Sessions and failures live in the database, not in a process, so every portal instance behind
a load balancer agrees on who is signed in and how many guesses an address has left.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from . import tokens
from .db import as_utc
from .fleet import FleetError
from .models import LoginFailure, Organisation, PortalUser, WebSession, utcnow

ROLES = ("admin", "viewer", "operator")
SESSION_LIFETIME = timedelta(hours=12)
FAILURE_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5  # wrong passwords for one user name within the window
MAX_FAILURES_PER_ADDRESS = 20  # for any user names, from one address
MIN_PASSWORD_LENGTH = 10

hasher = PasswordHasher()  # argon2id, the library's defaults (RFC 9106 low-memory profile)
_UNKNOWN_USER_HASH = hasher.hash(secrets.token_hex(16))  # an unknown name costs the same time as a known one


class SignInRefused(Exception):
    """A wrong user name or password (retry_after 0; which of the two is not said), or too many
    failures lately: retry_after seconds to wait, and the password was not even checked."""

    def __init__(self, retry_after: int = 0):
        super().__init__(f"too many failed sign-ins; wait {retry_after} s" if retry_after
                         else "wrong user name or password")
        self.retry_after = retry_after


@dataclass(frozen=True)
class SignedIn:
    user_id: int
    username: str
    role: str
    org_id: int | None
    org_name: str | None
    csrf_token: str
    extension: str | None = None


def add_user(session: Session, org_name: str | None, username: str, password: str, role: str,
             extension: str | None = None) -> None:
    """Creates (or resets the password, role and extension of) a user; operators have no
    organisation, and a user stays in the organisation they were made in. A reset ends their sessions.
    `extension`: the user's own phone, which the "call back" button rings."""
    if role not in ROLES:
        raise FleetError(422, f"role must be one of {', '.join(ROLES)}")
    if (role == "operator") != (org_name is None):
        raise FleetError(422, "an operator has no --org; an admin or a viewer needs one")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise FleetError(422, f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    username = username.strip()
    if not username:
        raise FleetError(422, "the user name is empty")
    org_id = None
    if org_name is not None:
        org = session.scalar(select(Organisation).where(Organisation.name == org_name))
        if org is None:
            raise FleetError(404, f"no organisation {org_name!r} (add-site creates it)")
        org_id = org.id
    user = session.scalar(select(PortalUser).where(PortalUser.username == username))
    if user is None:
        user = PortalUser(username=username)
        session.add(user)
    elif user.org_id != org_id:
        raise FleetError(409, f"user {username!r} belongs to another organisation (or to the provider); "
                              "a user never changes organisation: add a new user name")
    else:  # a reset: whoever was signed in with the old password or role is signed out
        session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    if extension is not None and (role == "operator" or not extension.isdigit() or len(extension) > 16):
        raise FleetError(422, "--extension is an organisation user's extension number (digits)")
    user.org_id, user.role, user.password_hash = org_id, role, hasher.hash(password)
    user.extension = extension
    session.commit()


def retry_after(session: Session, username: str, address: str, now: datetime | None = None, pending: int = 0) -> int:
    """Seconds until this user name and address may try again; 0 when they may now. `pending`:
    rows among the failures that are attempts still being checked (the caller's own)."""
    now = now or utcnow()
    since = now - FAILURE_WINDOW
    waits = []
    for column, value, limit in ((LoginFailure.username, username, MAX_FAILURES_PER_USER),
                                 (LoginFailure.address, address, MAX_FAILURES_PER_ADDRESS)):
        count, first = session.execute(select(func.count(), func.min(LoginFailure.at))
                                       .where(column == value, LoginFailure.at > since)).one()
        if count - pending >= limit:
            waits.append(max(1, int((as_utc(first) + FAILURE_WINDOW - now).total_seconds()) + 1))
    return max(waits, default=0)


def sign_in(session: Session, username: str, password: str, address: str) -> tuple[str, SignedIn]:
    """The new session's cookie token and who signed in, or SignInRefused.

    The attempt is written down (committed) before its password is checked and counted with the
    rest: guesses sent in parallel see each other, so no more than the limit are ever checked. A
    wrong password leaves its row as the failure; a refused attempt takes its row back (it was
    not checked); a right one clears the user's failures."""
    attempt = LoginFailure(username=username[:120], address=address[:64])
    session.add(attempt)
    session.commit()
    wait = retry_after(session, username[:120], address[:64], pending=1)
    if wait:
        session.execute(delete(LoginFailure).where(LoginFailure.id == attempt.id))
        session.commit()
        raise SignInRefused(wait)
    user = session.scalar(select(PortalUser).where(PortalUser.username == username))
    try:
        hasher.verify(user.password_hash if user else _UNKNOWN_USER_HASH, password)
        ok = user is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        session.execute(delete(LoginFailure).where(LoginFailure.at < utcnow() - 4 * FAILURE_WINDOW))
        session.commit()
        raise SignInRefused()
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    token = secrets.token_urlsafe(32)
    row = WebSession(token_hash=tokens.digest(token), user_id=user.id, csrf_token=secrets.token_urlsafe(24),
                     expires_at=utcnow() + SESSION_LIFETIME)
    session.add(row)
    session.execute(delete(LoginFailure).where(LoginFailure.username == username[:120]))
    session.execute(delete(WebSession).where(WebSession.expires_at < utcnow()))
    session.commit()
    return token, _signed_in(session, user, row)


def _signed_in(session: Session, user: PortalUser, row: WebSession) -> SignedIn:
    org = session.get(Organisation, user.org_id) if user.org_id else None
    return SignedIn(user.id, user.username, user.role, user.org_id, org.name if org else None, row.csrf_token,
                    user.extension)


def current(session: Session, token: str | None) -> SignedIn | None:
    """Who the session cookie belongs to, or None (no cookie, unknown, expired, or logged out)."""
    if not token:
        return None
    row = session.scalar(select(WebSession).where(WebSession.token_hash == tokens.digest(token)))
    if row is None or as_utc(row.expires_at) < utcnow():
        return None
    user = session.get(PortalUser, row.user_id)
    return _signed_in(session, user, row) if user else None


def sign_out(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(WebSession).where(WebSession.token_hash == tokens.digest(token)))
        session.commit()
