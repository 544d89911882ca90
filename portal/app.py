"""The portal's web application: the box API and the pages people use, one router per area
(portal/routes/), with the database and the recordings store on the app's state for the
dependencies (portal/deps.py) to hand out. It holds no state of its own, so several instances
serve one database behind a load balancer."""
from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from .deps import PageRefused, SignInNeeded
from .fleet import FleetError
from .pages import message
from .routes import boxes, calls, fleet, office, settings, signin
from .storage import Storage
from .wake import Waker


# No request body is read past its route's limit: a larger Content-Length is answered 413 before
# a byte of the body is read, and a chunked body is cut off with 413 as soon as it passes the limit
# (FastAPI's max_body_size). The routes that take more say so (routes/boxes.py, routes/fleet.py).
DEFAULT_BODY_LIMIT = 64 << 10


class InFlightLimit:
    """At most `limit` requests in progress at once (the database pool's connections); the rest
    wait in the event loop, holding nothing. Without it a burst of boxes (a fleet reconnecting
    after a restart) deadlocks: each request's dependencies take a pooled connection in one worker
    thread and its endpoint then waits for another thread, while every thread waits for a
    connection (measured: 120 simultaneous heartbeats, the pool's 30 s timeout, then 500s). The
    held wake-up request is exempt: it waits without a connection."""

    EXEMPT = ("/api/v1/wait",)

    def __init__(self, app, limit: int):  # noqa: ANN001 - an ASGI application
        self.app, self.limit = app, limit
        self.slots: asyncio.Semaphore | None = None

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI's callables
        if scope["type"] != "http" or scope["path"] in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.limit)
        async with self.slots:
            await self.app(scope, receive, send)


def pool_connections(sessions: sessionmaker[Session] | None) -> int:
    pool = sessions.kw["bind"].pool if sessions is not None else None
    size = getattr(pool, "size", None)
    return size() + max(pool._max_overflow, 0) if callable(size) else 20  # noqa: SLF001 - QueuePool's limit


def create_app(sessions: sessionmaker[Session], storage: Storage) -> FastAPI:
    app = FastAPI(title="edgepbx portal", docs_url=None, redoc_url=None, max_body_size=DEFAULT_BODY_LIMIT)
    app.add_middleware(InFlightLimit, limit=pool_connections(sessions))
    app.state.sessions = sessions
    app.state.storage = storage
    app.state.release_keyring = None  # `run --release-keyring`: the /rollouts page's uploads are checked with it
    app.state.waker = Waker(sessions.kw["bind"]) if sessions is not None else None

    @app.exception_handler(FleetError)
    async def refused(_request: Request, exc: FleetError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def malformed(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """A body that is not JSON, or not an object: 400; a field of the wrong shape: 422. Both
        in the API's own error form, with what was wrong."""
        errors = exc.errors()
        whole = [e for e in errors if tuple(e.get("loc", ())) == ("body",)]  # the body itself, not a field
        if any(e.get("type") == "json_invalid" for e in errors) or any(
                e.get("type") == "missing" or isinstance(e.get("input"), (bytes, str)) for e in whole):
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        if whole:
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        said = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in errors)
        return JSONResponse({"error": said}, status_code=422)

    @app.exception_handler(SignInNeeded)
    async def to_login(_request: Request, _exc: SignInNeeded) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        """An unknown URL or a method a route does not take: the API's JSON error for boxes, a
        page in the portal's style for people."""
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)
        return message(request, exc.status_code, None, "page_not_found" if exc.status_code == 404 else None,
                       text=str(exc.detail), home=True)

    @app.exception_handler(PageRefused)
    async def page_refused(request: Request, exc: PageRefused) -> Response:
        return message(request, exc.status, exc.me, exc.key)

    for area in (boxes, signin, calls, office, fleet, settings):
        app.include_router(area.router)
    return app
