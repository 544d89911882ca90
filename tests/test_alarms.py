"""Alarms that reach a person (issue 23, the alarms part): a portal on PostgreSQL opens and closes
alarms from its sites' heartbeats and tells its contacts of each start and end once: by e-mail
through a real SMTP server on loopback (aiosmtpd, STARTTLS and a login required) and by a signed
webhook to a receiver in the test. The heartbeats are the real API's, sent as a box sends them."""
from __future__ import annotations

import contextlib
import email
import hashlib
import hmac
import json
import ssl
import threading
import time
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from portal_lab import Portal, close_portal, free_tcp_port, new_database
from test_cloud_trust import self_signed
from test_portal_web import PASSWORD, Box, signed_in

MAIL_USER, MAIL_PASSWORD, HOOK_SECRET = "alarms", "mail-s3cret", "hook-s3cret"


class Inbox:
    def __init__(self):
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001 - aiosmtpd's handler hook
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(make_header(decode_header(m["Subject"]))) for m in self.messages]


def login_checker(server, session, envelope, mechanism, auth_data):  # noqa: ANN001 - aiosmtpd's authenticator
    return AuthResult(success=isinstance(auth_data, LoginPassword) and auth_data.login == MAIL_USER.encode()
                      and auth_data.password == MAIL_PASSWORD.encode())


class Hooks(ThreadingHTTPServer):
    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        super().__init__(("127.0.0.1", 0), HookHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        """The bodies whose signature checks out with the secret."""
        good = []
        for headers, body in self.received:
            fields = dict(part.split("=", 1) for part in headers.get("X-Edgepbx-Signature", "").split(","))
            expected = hmac.new(HOOK_SECRET.encode(), f"{fields.get('t')}.".encode() + body, hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, fields.get("v1", "")) and abs(time.time() - int(fields["t"])) < 300:
                good.append(json.loads(body))
        return good


class HookHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def lab(tmp_path):
    with alarm_portal(tmp_path) as found:
        yield found


@contextlib.contextmanager
def alarm_portal(tmp_path):
    """A portal on PostgreSQL that tells its alarms through a real SMTP server on loopback
    (STARTTLS, a login) every second; a webhook receiver beside it."""
    cert, pem = self_signed(tmp_path)
    key = tmp_path / "portal-key.pem"
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_tcp_port(), tls_context=context, require_starttls=True,
                      authenticator=login_checker, auth_require_tls=True)
    smtp.start()
    hooks = Hooks()
    portal = Portal(tmp_path / "portal", new_database(),
                    run_args=["--smtp", f"127.0.0.1:{smtp.port}", "--smtp-user", MAIL_USER, "--smtp-ca-file", str(cert),
                              "--mail-from", "alarms@provider.example", "--alarm-interval", "1"],
                    env={"EDGEPBX_SMTP_PASSWORD": MAIL_PASSWORD})
    portal.start()
    try:
        yield portal, inbox, hooks
    finally:
        close_portal(portal)
        smtp.stop()
        hooks.shutdown()


def wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


def test_alarms_begin_and_end_once_each_by_mail_and_signed_webhook_per_severity(lab):
    portal, inbox, hooks = lab
    box = Box(portal, "Ромашка", "romashka-hq")
    for typo in ("noc@provider", "noc provider.example", "noc@provider.example, boss@provider.example"):
        refused = portal.cli("add-contact", "--email", typo, check=False)
        assert refused.returncode == 2 and "is not an e-mail address" in refused.stderr, refused.stderr
    assert json.loads(portal.cli("contacts", "--json").stdout) == []  # nothing half-added
    portal.cli("add-contact", "--email", "noc@provider.example", "--severity", "critical", "--language", "ru")
    added = portal.cli("add-contact", "--org", "Ромашка", "--webhook", f"http://127.0.0.1:{hooks.server_address[1]}/hook",
                       "--secret", HOOK_SECRET)
    assert "webhook" in added.stdout

    def beat(**status) -> None:
        answer = requests.post(f"{portal.url}/api/v1/heartbeat", json={"heartbeat_seconds": 2, **status},
                               headers=box.auth, timeout=10)
        assert answer.status_code == 200, answer.text

    failing = [{"name": "main", "state": "failing", "last_code": 403}]
    started = time.monotonic()
    beat(trunks=failing)
    wait(lambda: inbox.messages, 15, "the trunk alarm's e-mail")
    took = time.monotonic() - started
    message = inbox.messages[0]
    assert message["To"] == "noc@provider.example" and message["From"] == "alarms@provider.example"
    assert inbox.subjects()[0] == "[edgepbx] АВАРИЯ romashka-hq: транк main не работает (403)", inbox.subjects()
    assert "Ромашка / romashka-hq" in message.get_payload(decode=True).decode()
    wait(lambda: hooks.events(), 10, "the webhook")
    assert [(e["event"], e["key"], e["subject"], e["severity"]) for e in hooks.events()] == [
        ("alarm.started", "trunk_failing", "main", "critical")]
    for _ in range(3):  # the same trouble, heartbeat after heartbeat: still one alarm
        beat(trunks=failing)
        time.sleep(0.7)
    assert len(inbox.messages) == 1 and len(hooks.events()) == 1

    # The trunk comes back; the disk runs low (a warning: the webhook hears it, the NOC's critical-only mail does not)
    beat(trunks=[{"name": "main", "state": "registered", "last_code": 200}],
         disk={"total_bytes": 100 << 20, "free_bytes": 5 << 20})
    wait(lambda: len(inbox.messages) == 2 and len(hooks.events()) == 3, 15, "the trunk's end and the disk alarm")
    assert inbox.subjects()[1] == "[edgepbx] устранено romashka-hq: транк main не работает (403)"
    assert sorted((e["event"], e["key"]) for e in hooks.events()[1:]) == [("alarm.ended", "trunk_failing"),
                                                                           ("alarm.started", "disk_low")]
    assert all(e["organisation"] == "Ромашка" for e in hooks.events())

    # The box goes quiet: three missed heartbeats (2 s each) and the site is offline
    wait(lambda: len(inbox.messages) == 3, 20, "the offline alarm's e-mail")
    assert inbox.subjects()[2] == "[edgepbx] АВАРИЯ romashka-hq: нет связи с АТС"
    listed = json.loads(portal.cli("alarms", "--json").stdout)
    assert {(a["key"], a["ended_at"] is None, a["told"]) for a in listed} == {
        ("trunk_failing", False, True), ("disk_low", True, True), ("offline", True, True)}
    # the operator's page of the site lists them with their start and end, in Russian
    portal.cli("add-user", "--user", "olga", "--password", PASSWORD, "--role", "operator")
    olga, _ = signed_in(portal, "olga")
    page = olga.get(f"{portal.url}/fleet/romashka-hq", headers={"Accept-Language": "ru"}, timeout=10).text
    assert page.count('data-alarm-key="') == 3 and page.count('data-alarm-open="yes"') == 2
    trunk_row = page.split('data-alarm-key="trunk_failing"', 1)[1].split("</tr>", 1)[0]
    assert "транк main не работает (403)" in trunk_row and "авария" in trunk_row and "продолжается" not in trunk_row
    # a forged webhook (wrong secret) would not pass the receiver's check
    assert hooks.received and all("X-Edgepbx-Signature" in h for h, _ in hooks.received)
    print(f"first alarm e-mail {took:.1f} s after the heartbeat that carried it")


def test_a_wrong_smtp_password_is_logged_and_the_alarm_is_told_once_the_server_takes_it(tmp_path):
    """The mail server refusing the login: the portal logs it and keeps the alarm untold, trying
    every round; nothing is lost and the portal keeps serving."""
    cert, _pem = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(tmp_path / "portal-key.pem"))
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_tcp_port(), tls_context=context, require_starttls=True,
                      authenticator=login_checker, auth_require_tls=True)
    smtp.start()
    portal = Portal(tmp_path / "portal", new_database(),
                    run_args=["--smtp", f"127.0.0.1:{smtp.port}", "--smtp-user", MAIL_USER, "--smtp-ca-file", str(cert),
                              "--alarm-interval", "1"], env={"EDGEPBX_SMTP_PASSWORD": "wrong"})
    portal.start()
    try:
        box = Box(portal, "Acme", "acme-hq")
        portal.cli("add-contact", "--email", "noc@provider.example")
        requests.post(f"{portal.url}/api/v1/heartbeat", headers=box.auth, timeout=10,
                      json={"trunks": [{"name": "main", "state": "failing", "last_code": 503}]})
        log = portal.data_dir.parent / f"portal-{portal.port}.log"
        wait(lambda: "telling email noc@provider.example failed" in log.read_text(), 20, "the refused mail in the log")
        [alarm] = json.loads(portal.cli("alarms", "--json").stdout)
        assert alarm["told"] is False and not inbox.messages
        assert requests.get(f"{portal.url}/healthz", timeout=5).status_code == 200
    finally:
        close_portal(portal)
        smtp.stop()
