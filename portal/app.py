"""The portal's web application: the box API and the pages people use, one router per area
(portal/routes/), with the database and the recordings store on the app's state for the
dependencies (portal/deps.py) to hand out. It holds no state of its own, so several instances
serve one database behind a load balancer."""
from __future__ import annotations

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


def create_app(sessions: sessionmaker[Session], storage: Storage) -> FastAPI:
    app = FastAPI(title="edgepbx portal", docs_url=None, redoc_url=None, max_body_size=DEFAULT_BODY_LIMIT)
    app.state.sessions = sessions
    app.state.storage = storage
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
