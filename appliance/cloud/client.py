"""A small HTTP(S) client for the portal's JSON API, on the standard library (nothing extra on
the box). It tells apart "cannot reach the portal" (retry later) from "the portal refused", trusts
the portal only over https (unless a lab config allows http), and reads at most MAX_ANSWER_BYTES
of an answer."""
from __future__ import annotations

import hashlib
import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# The largest answer is a pushed config (the portal takes at most 3 MiB of YAML; JSON escaping
# can double it); anything bigger is not the portal speaking.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
# What a connection the portal closed while it sat idle looks like on the next request.
STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ssl.SSLEOFError,
                    ssl.SSLZeroReturnError)


class PortalUnreachable(Exception):
    """Network down, portal down or overloaded (5xx): retry with back-off."""


class PortalAnswerInvalid(PortalUnreachable):
    """The answer is not what the API promises (too big, not JSON, wrong fields): logged and
    retried like an outage, never a crash."""


class PortalRefused(Exception):
    """The portal answered 4xx: retrying the same request will not help."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class PortalUrlRefused(ValueError):
    """A portal URL the box will not talk to (not http(s), or http without cloud.allow_http)."""


@dataclass(frozen=True)
class Trust:
    """Whom the box believes is its portal (the config's cloud: section)."""
    allow_http: bool = False
    ca_file: Path | None = None
    pin_sha256: str = ""

    @classmethod
    def of(cls, cloud: object) -> "Trust":
        return cls(cloud.allow_http, cloud.ca_file, cloud.pin_sha256)

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.pin_sha256 and not self.ca_file:  # a pinned certificate needs no chain (a self-signed portal)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


class PortalClient:
    def __init__(self, base_url: str, credential: str | None = None, timeout: float = 30.0,
                 trust: Trust = Trust()):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PortalUrlRefused(f"portal URL must be https://host[:port]: {base_url!r}")
        if parts.scheme == "http" and not trust.allow_http:
            raise PortalUrlRefused(f"portal URL {base_url!r} is not https:// (call records, recordings and the site's "
                                   "credential would cross the network in clear); a lab may set cloud.allow_http: true")
        self.base_url = base_url.rstrip("/")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.credential = credential
        self.timeout = timeout
        self.trust = trust
        self.conn: http.client.HTTPConnection | None = None
        self.used = False  # whether self.conn has carried a request (a keep-alive the portal may have closed)

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:  # kept alive between requests: one TLS handshake per outage, not per call
            if self.scheme == "https":
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self.trust.context())
                conn.connect()
                self._check_pin(conn)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.conn, self.used = conn, False
        return self.conn

    def _check_pin(self, conn: http.client.HTTPConnection) -> None:
        if not self.trust.pin_sha256:
            return
        der = conn.sock.getpeercert(binary_form=True) or b""
        if hashlib.sha256(der).hexdigest() != self.trust.pin_sha256:
            conn.close()
            raise ssl.SSLError(f"the portal's certificate is not the pinned one (SHA-256 {hashlib.sha256(der).hexdigest()})")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _exchange(self, method: str, path: str, payload: bytes | None, headers: dict,
                  limit: int = MAX_ANSWER_BYTES) -> tuple[int, bytes]:
        conn = self._connection()
        reused = self.used
        try:
            conn.request(method, self.prefix + path, body=payload, headers=headers)
            response = conn.getresponse()
        except STALE_CONNECTION:
            if not reused:
                raise
            self.close()  # the portal closed it while idle: once more on a new connection
            conn = self._connection()
            conn.request(method, self.prefix + path, body=payload, headers=headers)
            response = conn.getresponse()
        self.used = True
        raw = response.read(limit + 1)
        if len(raw) > limit:
            self.close()
            raise PortalAnswerInvalid(f"{self.base_url}: answer to {method} {path} over {limit} bytes")
        if response.will_close:
            self.close()
        return response.status, raw

    def request(self, method: str, path: str, body: dict | bytes | None = None) -> dict:
        data = self._request(method, path, body, MAX_ANSWER_BYTES)
        try:
            answer = json.loads(data) if data else {}
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise PortalAnswerInvalid(f"{self.base_url}: answer to {method} {path} is not a JSON object: "
                                      f"{data[:80].decode(errors='replace')!r}")
        return answer

    def download(self, path: str, limit: int, byte_range: tuple[int, int] | None = None) -> bytes:
        """A file's bytes (a backup, a firmware chunk: bytes first..last), at most `limit` of them."""
        extra = {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"} if byte_range else {}
        return self._request("GET", path, None, limit, extra)

    def _request(self, method: str, path: str, body: dict | bytes | None, limit: int,
                 extra_headers: dict | None = None) -> bytes:
        headers = {"Accept": "application/json", **(extra_headers or {})}
        if self.credential:
            headers["Authorization"] = f"Bearer {self.credential}"
        if isinstance(body, dict):
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        else:
            payload = body
            headers["Content-Type"] = "application/octet-stream"
        try:
            status, raw = self._exchange(method, path, payload, headers, limit)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise PortalUnreachable(f"{self.base_url}: {exc.__class__.__name__}: {exc}") from None
        if status >= 500:
            self.close()
            raise PortalUnreachable(f"{self.base_url}: HTTP {status}")
        if status >= 400:
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            reason = data.get("error") or data.get("detail") if isinstance(data, dict) else None
            raise PortalRefused(status, str(reason or raw[:200].decode(errors="replace")))
        return raw
