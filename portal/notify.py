"""How a contact is told of an alarm: an e-mail (SMTP, STARTTLS and a login when configured) or a
webhook (a JSON POST whose body is signed: `X-Edgepbx-Signature: t=TIMESTAMP,v1=HEX`, the
HMAC-SHA256 of `TIMESTAMP.BODY` with the contact's secret, so a receiver can check it came from the
portal and is fresh). Standard library only."""
from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from . import clock, i18n
from .db import as_utc
from .models import Alarm, AlarmContact

TIMEOUT = 10.0


class NotifyError(Exception):
    """The message did not go: the server refused it, or could not be reached."""


@dataclass(frozen=True)
class MailServer:
    host: str
    port: int = 587
    starttls: bool = True
    user: str | None = None
    password: str | None = None
    sender: str = "edgepbx@localhost"
    ca_file: Path | None = None  # a private CA the server's certificate chains to


@dataclass(frozen=True)
class Event:
    """One alarm's start or end, as a contact is told of it."""
    alarm: Alarm
    site: str
    org: str
    org_id: int
    timezone: str
    ended: bool

    def text(self, lang: str) -> str:
        return i18n.WORDS[lang]["alarm_" + self.alarm.key].format(**json.loads(self.alarm.detail))

    def payload(self) -> dict:
        a = self.alarm
        return {"event": "alarm.ended" if self.ended else "alarm.started", "id": a.id, "site": self.site,
                "organisation": self.org, "key": a.key, "subject": a.subject, "severity": a.severity,
                "text": self.text("en"), "values": json.loads(a.detail),
                "started_at": a.started_at.isoformat(), "ended_at": a.ended_at.isoformat() if a.ended_at else None}


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class Notifier:
    def __init__(self, mail: MailServer | None):
        self.mail = mail

    def send(self, contact: AlarmContact, event: Event) -> None:
        if contact.kind == "webhook":
            self._webhook(contact, event.payload())
            return
        words = i18n.WORDS.get(contact.language, i18n.WORDS["en"])
        state = words["alarm_mail_ended"] if event.ended else words["alarm_mail_" + event.alarm.severity]
        subject = f"[edgepbx] {state} {event.site}: {event.text(contact.language)}"
        self._mail(contact.target, subject, self._body(words, [event], contact.language))

    def send_digest(self, contact: AlarmContact, events: list[Event]) -> None:
        words = i18n.WORDS.get(contact.language, i18n.WORDS["en"])
        subject = f"[edgepbx] {words['alarm_digest'].format(count=len(events))}"
        self._mail(contact.target, subject, self._body(words, events, contact.language) if events
                   else words["alarm_digest_none"])

    def _body(self, words: dict[str, str], events: list[Event], lang: str) -> str:
        lines = []
        for event in events:
            where = clock.zone(event.timezone)
            when = lambda moment: moment.astimezone(where).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
            a = event.alarm
            lines.append(f"{event.org} / {event.site}: {event.text(lang)} ({words['alarm_severity_' + a.severity]})")
            lines.append(f"  {words['alarm_started']}: {when(as_utc(a.started_at))} {event.timezone}")
            if a.ended_at:
                lines.append(f"  {words['alarm_ended']}: {when(as_utc(a.ended_at))} {event.timezone}")
        return "\n".join(lines) + "\n"

    def _mail(self, to: str, subject: str, body: str) -> None:
        if self.mail is None:
            raise NotifyError("no SMTP server configured (edgepbx-portal run --smtp HOST:PORT)")
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.mail.sender, to, subject
        message.set_content(body)
        try:
            with smtplib.SMTP(self.mail.host, self.mail.port, timeout=TIMEOUT) as smtp:
                if self.mail.starttls:
                    smtp.starttls(context=ssl.create_default_context(
                        cafile=str(self.mail.ca_file) if self.mail.ca_file else None))
                if self.mail.user:
                    smtp.login(self.mail.user, self.mail.password or "")
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifyError(f"{exc.__class__.__name__}: {exc}") from None

    def _webhook(self, contact: AlarmContact, payload: dict) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "edgepbx-portal"}
        if contact.secret:
            headers["X-Edgepbx-Signature"] = signature(contact.secret, int(time.time()), body)
        request = urllib.request.Request(contact.target, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
                if answer.status >= 300:
                    raise NotifyError(f"HTTP {answer.status}")
        except (OSError, urllib.error.URLError) as exc:
            raise NotifyError(f"{exc.__class__.__name__}: {exc}") from None
