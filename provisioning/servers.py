"""TFTP (tftpy) and HTTP/HTTPS servers that serve rendered phone configs and firmware files.

Configs are rendered per request and never written to disk. Firmware files come from
provisioning.firmware_dir, as /firmware/<name> over HTTP and firmware/<name> over TFTP, with
blksize/tsize negotiation (RFC 2347/2348, tftpy) so large files go fast.
A device file (with secrets) over HTTP goes without credentials only to the office LAN
(provisioning.lan); from anywhere else it needs the device's basic-auth credentials (user = MAC).
Requests for files nobody has (scanners, unknown MACs) are counted per client; past
MISS_LIMIT a minute the client is refused and logged once.
"""
from __future__ import annotations

import base64
import hmac
import io
import ipaddress
import logging
import os
import shutil
import ssl
import threading
import time
from collections import defaultdict, deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import tftpy

from appliance.config import Config
from appliance.firmware_cache import cached_file
from appliance.tls import box_certificate

from .lan import office_lan
from .render import Renderer

log = logging.getLogger("edgepbx.provisioning")
MISS_LIMIT = 30
MISS_WINDOW = 60.0


class MissCounter:
    """Not-found requests per client address within a sliding minute."""

    def __init__(self, limit: int = MISS_LIMIT, window: float = MISS_WINDOW):
        self.limit, self.window = limit, window
        self.misses: dict[str, deque] = defaultdict(deque)
        self.lock = threading.Lock()

    def _trim(self, client: str, now: float) -> deque:
        q = self.misses[client]
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def blocked(self, client: str) -> bool:
        with self.lock:
            return len(self._trim(client, time.monotonic())) >= self.limit

    def miss(self, client: str) -> None:
        with self.lock:
            q = self._trim(client, time.monotonic())
            q.append(time.monotonic())
            if len(q) == self.limit:
                log.warning("provisioning: %s asked for %d unknown files within %.0f s; refusing it for a while",
                            client, self.limit, self.window)


def firmware_file(cfg: Config, name: str) -> Path | None:
    """A firmware file by name: one the portal pinned (the box's cache), else the firmware folder's."""
    if "/" in name or name.startswith("."):
        return None
    cached = cached_file(cfg.data_dir, name)
    if cached is not None:
        return cached
    folder = cfg.provisioning.firmware_dir
    path = Path(folder) / name if folder is not None else None
    return path if path is not None and path.is_file() else None


# -- TFTP ---------------------------------------------------------------------------------

def memory_file(data: bytes) -> io.BufferedRandom:
    """A real file descriptor backed by memory (memfd): tftpy 0.8.7 flock()s every file it
    serves, which a BytesIO cannot take, and a rendered config must not touch the disk."""
    fh = os.fdopen(os.memfd_create("edgepbx-config", os.MFD_CLOEXEC), "w+b")
    fh.write(data)
    fh.seek(0)
    return fh


class TftpService:
    def __init__(self, cfg: Config, renderer: Renderer, misses: MissCounter):
        self.cfg, self.renderer, self.misses = cfg, renderer, misses
        root = cfg.data_dir / "tftp-root"  # holds only a link to the firmware folder
        root.mkdir(parents=True, exist_ok=True)
        link = root / "firmware"
        if cfg.provisioning.firmware_dir and not link.exists():
            link.symlink_to(cfg.provisioning.firmware_dir, target_is_directory=True)
        self.root = root
        self.stopped = False
        self.server = tftpy.TftpServer(str(root), dyn_file_func=self.open_file)
        logging.getLogger("tftpy").setLevel(logging.WARNING)

    def open_file(self, filename: str, raddress: str = "", rport: int = 0) -> io.BufferedRandom | None:
        if self.misses.blocked(raddress):
            return None
        if filename.lstrip("/").startswith("firmware/"):  # a pinned file in the box's cache (the folder's are in the root)
            path = firmware_file(self.cfg, filename.lstrip("/").removeprefix("firmware/"))
            return open(path, "rb") if path is not None else None
        try:
            rendered = self.renderer.resolve(filename, raddress)
        except Exception:
            log.exception("provisioning: rendering %s for %s failed", filename, raddress)
            return None
        registry = self.renderer.registry
        if rendered is None:
            self.misses.miss(raddress)
            registry.record_fetch(None, "tftp", filename, raddress, "not found")
            log.info("provisioning: TFTP %s from %s: not found", filename, raddress)
            return None
        registry.record_fetch(rendered.device.mac if rendered.device else None, "tftp", filename, raddress, "served")
        return memory_file(rendered.body)

    def serve_forever(self) -> None:
        """tftpy's loop ends on an error it did not expect; log it and serve on."""
        while not self.stopped:
            try:
                self.server.listen(self.cfg.network.bind, self.cfg.provisioning.tftp_port)
            except Exception:
                if self.stopped:
                    return
                log.exception("provisioning: TFTP server failed; restarting it")
                time.sleep(1.0)
                self.server = tftpy.TftpServer(str(self.root), dyn_file_func=self.open_file)

    def stop(self) -> None:
        self.stopped = True
        self.server.stop(now=True)


# -- HTTP(S) ------------------------------------------------------------------------------

def make_handler(cfg: Config, renderer: Renderer, misses: MissCounter, scheme: str):
    lan = office_lan(cfg)
    registry = renderer.registry

    class Handler(BaseHTTPRequestHandler):
        server_version = "edgepbx-provisioning"
        sys_version = ""

        def log_message(self, fmt: str, *args: object) -> None:
            log.debug("provisioning %s: %s %s", scheme, self.client_address[0], fmt % args)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.respond(send_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self.respond(send_body=False)

        def respond(self, send_body: bool) -> None:
            client = self.client_address[0]
            path = unquote(urlsplit(self.path).path)
            agent = self.headers.get("User-Agent")
            if misses.blocked(client):
                self.send_error(HTTPStatus.TOO_MANY_REQUESTS)
                return
            if path.startswith("/firmware/"):
                self.send_firmware(path.removeprefix("/firmware/"), send_body)
                return
            try:
                rendered = renderer.resolve(path, client, agent)
            except Exception:
                log.exception("provisioning: rendering %s for %s failed", path, client)
                self.send_error(HTTPStatus.INTERNAL_SERVER_ERROR)
                return
            if rendered is None:
                misses.miss(client)
                registry.record_fetch(None, scheme, path, client, "not found", agent)
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            device = rendered.device
            if device is not None and not self.authorised(device, client):
                registry.record_fetch(device.mac, scheme, path, client, "unauthorised", agent)
                self.send_response(HTTPStatus.UNAUTHORIZED)
                self.send_header("WWW-Authenticate", 'Basic realm="edgepbx provisioning"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            registry.record_fetch(device.mac if device else None, scheme, path, client, "served", agent)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", rendered.content_type)
            self.send_header("Content-Length", str(len(rendered.body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if send_body:
                self.wfile.write(rendered.body)

        def authorised(self, device, client: str) -> bool:
            """Right credentials if any are given; none needed from the office LAN."""
            header = self.headers.get("Authorization", "")
            if header.startswith("Basic "):
                try:
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    return False
                return user.lower().replace(":", "") == device.mac and hmac.compare_digest(password, device.http_password)
            return ipaddress.ip_address(client) in lan

        def send_firmware(self, name: str, send_body: bool) -> None:
            path = firmware_file(cfg, name)
            if path is None:
                misses.miss(self.client_address[0])
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            if send_body:
                with open(path, "rb") as fh:
                    shutil.copyfileobj(fh, self.wfile, 256 * 1024)

    return Handler


class ProvisioningHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a boot storm of a whole office; the default 5 drops SYNs (1 s retries)


def http_server(cfg: Config, renderer: Renderer, misses: MissCounter, tls: bool) -> ThreadingHTTPServer:
    port = cfg.provisioning.https_port if tls else cfg.provisioning.http_port
    server = ProvisioningHTTPServer((cfg.network.bind, port), make_handler(cfg, renderer, misses, "https" if tls else "http"))
    if tls:
        identity = box_certificate(cfg)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(identity.cert), str(identity.key))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
