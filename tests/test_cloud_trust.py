"""Whom the box's cloud agent believes is its portal, and what it does with what it is answered:
https only unless a lab config allows http, an optional CA bundle or certificate pin, a
keep-alive connection the portal closed while idle retried once, and answers that are not what
the API promises logged and retried, never a crash loop.

The portal is the real one, behind HAProxy terminating TLS (as a provider's balancer does). The
hostile answers come from a small HTTP server in the test: it plays a portal gone wrong (a proxy's
error page, a bug, someone on a lab's http link), which no real portal can be made to do."""
from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from appliance.cloud.client import PortalClient, PortalUnreachable, Trust
from conftest import write_office
from portal_lab import AgentProcess, Balancer, close_portal, enroll, start_portal


@pytest.fixture
def portal(tmp_path):
    portal = start_portal(tmp_path, "sqlite")
    yield portal
    close_portal(portal)


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and HAProxy's PEM (certificate then key)."""
    cert, key = tmp_path / "portal-cert.pem", tmp_path / "portal-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=portal.test",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    combined = tmp_path / "haproxy.pem"
    combined.write_text(cert.read_text() + key.read_text())
    return cert, combined


class Front:
    """Enough of a Portal for `enroll`: the URL boxes are given."""

    def __init__(self, url: str):
        self.url = url


def box(tmp_path: Path, name: str, cloud: str) -> Path:
    (tmp_path / name).mkdir()
    return write_office(tmp_path / name, f"cloud: {{retry_max_seconds: 2{cloud}}}")


def test_https_is_required_and_the_portal_certificate_must_chain_or_match_the_pin(portal, tmp_path):
    plain = box(tmp_path, "plain", "")
    refused = enroll(plain, portal, portal.add_site("Acme", "acme-hq"))
    assert refused.returncode == 2 and "is not https://" in refused.stderr and "cloud.allow_http" in refused.stderr
    assert not (plain.parent / "var" / "cloud.json").exists()

    cert, pem = self_signed(tmp_path)
    balancer = Balancer(tmp_path, [portal.port], tls_pem=pem, keep_alive_seconds=1)
    try:
        front = Front(f"https://127.0.0.1:{balancer.port}")
        unknown = enroll(box(tmp_path, "system-cas", ""), front, portal.add_site("Acme", "acme-2"))
        assert unknown.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in unknown.stderr, unknown.stderr

        der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        wrong_pin = "ab" * 32
        pinned_wrong = enroll(box(tmp_path, "wrong-pin", f", pin_sha256: '{wrong_pin}'"), front,
                              portal.add_site("Acme", "acme-3"))
        assert pinned_wrong.returncode == 1 and "not the pinned one" in pinned_wrong.stderr, pinned_wrong.stderr

        pin = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())  # as browsers and openssl show it
        pinned = enroll(box(tmp_path, "pinned", f", pin_sha256: '{pin}'"), front, portal.add_site("Acme", "acme-4"))
        assert pinned.returncode == 0, pinned.stderr

        with_ca = box(tmp_path, "with-ca", f", ca_file: {cert}")
        assert enroll(with_ca, front, portal.add_site("Acme", "acme-5")).returncode == 0
        link = json.loads((with_ca.parent / "var" / "cloud.json").read_text())
        assert link["portal_url"] == front.url and link["site"] == "acme-5"

        # HAProxy closes a connection idle for 1 s; the next request finds it closed and goes once more
        client = PortalClient(front.url, link["credential"], trust=Trust(ca_file=cert))
        assert client.request("POST", "/api/v1/heartbeat", {})["ok"] is True
        first = client.conn
        time.sleep(2.5)
        assert client.request("POST", "/api/v1/heartbeat", {})["ok"] is True
        assert client.conn is not first
        client.close()
    finally:
        balancer.stop()


class HostilePortal(ThreadingHTTPServer):
    """Answers each heartbeat with the next of `answers` (status, content type, body), round and round."""

    def __init__(self, answers: list[tuple[int, str, bytes]]):
        self.answers, self.heartbeats = answers, 0
        super().__init__(("127.0.0.1", 0), HostileHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class HostileHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server: HostilePortal = self.server  # type: ignore[assignment]
        status, kind, body = server.answers[server.heartbeats % len(server.answers)]
        server.heartbeats += 1
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def linked_box(tmp_path: Path, name: str, url: str, cloud: str) -> Path:
    """A box whose stored link points at `url` (what `edgepbx enroll` leaves)."""
    office = box(tmp_path, name, cloud)
    data_dir = office.parent / "var"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "cloud.json").write_text(json.dumps({"portal_url": url, "site": "acme-hq", "credential": "epbx_x",
                                                     "enrolled_at": "2026-12-03T00:00:00+00:00"}))
    return office


def test_answers_that_are_not_the_api_are_logged_and_retried_without_a_crash(tmp_path):
    hostile = HostilePortal([
        (200, "text/html", b"<html><body>502 Bad Gateway</body></html>"),
        (200, "application/json", json.dumps({"config_version": "7", "phone_actions": []}).encode()),
        (200, "application/json", b'{"ok": true, "phone_actions": "reboot all"}'),
        (200, "application/json", b'{"ok": true, "callbacks": [{"id": "1; DROP TABLE"}]}'),
        (200, "application/json", b'{"pad": "' + b"x" * (9 * 1024 * 1024) + b'"}'),
    ])
    agent = AgentProcess(linked_box(tmp_path, "box", hostile.url, ", allow_http: true")).start()
    try:
        deadline = time.monotonic() + 40
        while hostile.heartbeats < 7 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert agent.proc.poll() is None, agent.text()
        assert hostile.heartbeats >= 7, agent.text()
        text = agent.text()
        for reason in ("is not a JSON object", "config_version is str, not int", "phone_actions is str, not list",
                       "id is str, not int", "over 8388608 bytes"):
            assert reason in text, (reason, text)
        assert "Traceback" not in text
    finally:
        agent.kill()
        hostile.shutdown()


def test_a_stored_http_link_is_not_used_without_allow_http(tmp_path):
    hostile = HostilePortal([(200, "application/json", b'{"ok": true, "phone_actions": [], "callbacks": []}')])
    agent = AgentProcess(linked_box(tmp_path, "box", hostile.url, "")).start()
    try:
        deadline = time.monotonic() + 15
        while "cloud sync stopped" not in agent.text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        assert "is not https://" in agent.text() and agent.text().count("cloud sync stopped") == 1, agent.text()
        assert hostile.heartbeats == 0 and agent.proc.poll() is None
    finally:
        agent.kill()
        hostile.shutdown()


def test_a_plain_http_url_is_refused_before_any_connection():
    with pytest.raises(ValueError, match="not https://"):
        PortalClient("http://127.0.0.1:9/")
    with pytest.raises(PortalUnreachable):
        PortalClient("http://127.0.0.1:9/", trust=Trust(allow_http=True)).request("GET", "/healthz")


class SoundHandler(BaseHTTPRequestHandler):
    """A portal gone wrong for sounds: 404 for one, other bytes than the hash for another."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        sha = self.path.rsplit("/", 1)[-1]
        served = self.server.sounds.get(sha)  # type: ignore[attr-defined]
        self.send_response(200 if served is not None else 404)
        body = served if served is not None else b'{"detail": "no such sound for this site"}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_sound_is_kept_only_when_its_bytes_hash_to_its_name(tmp_path):
    """The box fetches the sounds a pulled config names before checking it; bytes that are not the
    named sound, or a sound the portal does not give, keep that config off the box with a reason."""
    from appliance.cloud.assets import fetch_sounds
    from appliance.config import load

    good = (Path(__file__).resolve().parent.parent / "appliance" / "sounds" / "greeting.wav").read_bytes()
    good_sha, bad_sha, gone_sha = hashlib.sha256(good).hexdigest(), "b" * 64, "c" * 64
    server = ThreadingHTTPServer(("127.0.0.1", 0), SoundHandler)
    server.sounds = {good_sha: good, bad_sha: good}  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = load(box(tmp_path, "box", ", allow_http: true"))
        client = PortalClient(f"http://127.0.0.1:{server.server_address[1]}", "epbx_x", trust=Trust(allow_http=True))
        text = cfg.path.read_text() + f'inbound: {{greeting: "sha256:{good_sha}", night_greeting: "sha256:{bad_sha}", ' \
                                      f'invalid_prompt: "sha256:{gone_sha}"}}\n'
        errors = fetch_sounds(client, cfg, text)
        assert len(errors) == 2 and f"sha256:{bad_sha}: the portal sent" in errors[0]
        assert f"sha256:{gone_sha}: the portal does not give it (404" in errors[1]
        assets = cfg.data_dir / "assets"
        assert sorted(p.name for p in assets.iterdir()) == [f"{good_sha}.wav"]
    finally:
        server.shutdown()
