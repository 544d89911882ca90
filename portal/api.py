"""The sync and fleet API boxes talk to (JSON over HTTPS; a site credential as Bearer token),
and the pages people use (portal/web.py).

The app holds no state of its own: every instance behind a load balancer sees the same database
and storage, so a box may reach a different instance with each request.
"""
from __future__ import annotations

import logging
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from . import callbacks, configs, fleet, phones, sync
from .web import add_pages
from .fleet import FleetError
from .storage import Storage

log = logging.getLogger("edgepbx.portal")


def create_app(sessions: sessionmaker[Session], storage: Storage) -> FastAPI:
    app = FastAPI(title="edgepbx portal", docs_url=None, redoc_url=None)

    @app.exception_handler(FleetError)
    async def _refused(_request: Request, exc: FleetError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    def as_site(request: Request, work: Callable) -> object:
        """Runs work(session, site) for the box whose credential the request carries."""
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise FleetError(401, "missing site credential")
        with sessions() as session:
            site = fleet.authenticate(session, header[len("Bearer "):].strip())
            return work(session, site)

    async def json_body(request: Request) -> dict:
        try:
            body = await request.json()
        except ValueError:
            raise FleetError(400, "the body must be JSON") from None
        if not isinstance(body, dict):
            raise FleetError(400, "the body must be a JSON object")
        return body

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.post("/api/v1/enroll")
    async def enroll(request: Request) -> dict:
        body = await json_body(request)
        code = str(body.get("code", ""))

        def work() -> dict:
            with sessions() as session:
                site, credential = fleet.enrol(session, code)
                log.info("site %s enrolled (box %s)", site.name, body.get("hostname", "?"))
                return {"site": site.name, "credential": credential}
        return await run_in_threadpool(work)

    @app.post("/api/v1/calls")
    async def calls(request: Request) -> dict:
        body = await json_body(request)
        accepted = await run_in_threadpool(as_site, request, lambda s, site: sync.upsert_calls(s, site, body.get("calls")))
        return {"accepted": accepted}

    @app.post("/api/v1/recordings")
    async def offer(request: Request) -> dict:
        body = await json_body(request)
        return await run_in_threadpool(as_site, request, lambda s, site: sync.offer_recording(
            s, storage, site, str(body.get("call_id")), body.get("sha256"), body.get("size")))

    @app.put("/api/v1/recordings/{sha256}")
    async def chunk(sha256: str, call_id: str, offset: int, request: Request) -> dict:
        if int(request.headers.get("content-length") or 0) > sync.MAX_CHUNK:
            raise FleetError(413, f"a chunk may hold at most {sync.MAX_CHUNK} bytes")
        data = await request.body()
        return await run_in_threadpool(as_site, request, lambda s, site: sync.put_chunk(
            s, storage, site, call_id, sha256, offset, data))

    @app.post("/api/v1/heartbeat")
    async def heartbeat(request: Request) -> dict:
        """Answers with the newest config version (the box pulls only when there is a newer one),
        the operator's pending phone actions and the users' call-back requests."""
        body = await json_body(request)

        def work(session: Session, site) -> dict:  # noqa: ANN001
            fleet.record_heartbeat(session, site, body)
            desired = configs.desired_config(session, site)
            answer = {"ok": True, "config_version": desired.version if desired else None,
                      "phone_actions": phones.hand_out(session, site), "callbacks": callbacks.hand_out(session, site)}
            session.commit()  # one transaction for the whole heartbeat
            return answer
        return await run_in_threadpool(as_site, request, work)

    @app.get("/api/v1/config")
    def config(request: Request) -> dict:
        def work(session: Session, site) -> dict:  # noqa: ANN001
            desired = configs.desired_config(session, site)
            if desired is None:
                raise FleetError(404, "no config pushed for this site")
            return {"version": desired.version, "sha256": desired.sha256, "config": desired.text}
        return as_site(request, work)

    @app.post("/api/v1/config/{version}/result")
    async def config_result(version: int, request: Request) -> dict:
        body = await json_body(request)
        errors = body.get("errors") or []
        await run_in_threadpool(as_site, request, lambda s, site: configs.report(
            s, site, version, bool(body.get("applied")), errors if isinstance(errors, list) else [str(errors)]))
        return {"ok": True}

    @app.post("/api/v1/phone-actions/{action_id}/result")
    async def phone_action_result(action_id: int, request: Request) -> dict:
        body = await json_body(request)
        code = body.get("code")
        await run_in_threadpool(as_site, request, lambda s, site: phones.record_result(
            s, site, action_id, code if isinstance(code, int) else None, str(body.get("detail", ""))))
        return {"ok": True}

    @app.post("/api/v1/callbacks/{request_id}/result")
    async def callback_result(request_id: int, request: Request) -> dict:
        body = await json_body(request)
        await run_in_threadpool(as_site, request, lambda s, site: callbacks.record_result(
            s, site, request_id, body.get("started") is True, str(body.get("detail", ""))))
        return {"ok": True}

    add_pages(app, sessions, storage)
    return app
