"""A small HTTP(S) client for the portal's JSON API, on the standard library (nothing extra on
the box). It tells apart "cannot reach the portal" (retry later) from "the portal refused"."""
from __future__ import annotations

import http.client
import json
import ssl
from urllib.parse import urlsplit


class PortalUnreachable(Exception):
    """Network down, portal down or overloaded (5xx): retry with back-off."""


class PortalRefused(Exception):
    """The portal answered 4xx: retrying the same request will not help."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class PortalClient:
    def __init__(self, base_url: str, credential: str | None = None, timeout: float = 30.0):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"portal URL must be http(s)://host[:port]: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.prefix = parts.path.rstrip("/")
        self.credential = credential
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is None:  # kept alive between requests: one TLS handshake per outage, not per call
            if self.scheme == "https":
                self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout,
                                                        context=ssl.create_default_context())
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method: str, path: str, body: dict | bytes | None = None) -> dict:
        headers = {"Accept": "application/json"}
        if self.credential:
            headers["Authorization"] = f"Bearer {self.credential}"
        if isinstance(body, dict):
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        else:
            payload = body
            headers["Content-Type"] = "application/octet-stream"
        try:
            conn = self._connection()
            conn.request(method, self.prefix + path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise PortalUnreachable(f"{self.base_url}: {exc.__class__.__name__}: {exc}") from None
        if response.status >= 500:
            self.close()
            raise PortalUnreachable(f"{self.base_url}: HTTP {response.status}")
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"error": raw[:200].decode(errors="replace")}
        if response.status >= 400:
            raise PortalRefused(response.status, str(data.get("error") or data.get("detail") or data))
        return data
