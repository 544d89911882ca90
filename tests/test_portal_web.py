"""The portal's pages for people, against a real portal process on PostgreSQL: sign-in (argon2
hashes, rate limit, CSRF, HttpOnly session cookie, log out), an organisation's call report with
its quick views, a transfer shown as one conversation, recordings played with HTTP Range and
downloaded under a chosen name, the provider's site list, and tenant isolation by URL guessing.
Calls and recordings arrive the way boxes send them: through the sync API with a site credential.
The same pages in headless Chromium (Playwright driving Debian's chromium); the call-back button and
the settings page with a real box in test_portal_callback.py."""
from __future__ import annotations

import hashlib
import http.client
import select
import socket
import io
import json
import re
import time
import uuid
import wave
from datetime import datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest
import requests

from portal_lab import close_portal, start_portal

PASSWORD = "correct horse battery"


def wav_bytes(seconds: float) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(np.random.default_rng(7).integers(-3000, 3000, int(8000 * seconds), dtype="<i2").tobytes())
    return out.getvalue()


def now_local() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def call(src: str, dst: str, direction: str, disposition: str, billsec: int = 0, **extra) -> dict:
    return {"id": str(uuid.uuid4()), "started_at": now_local(), "ended_at": now_local(), "direction": direction,
            "src": src, "dst": dst, "disposition": disposition, "billsec": billsec, "duration": billsec + 5} | extra


class Box:
    """A site's box as the portal sees it: its credential and what it sends."""

    def __init__(self, portal, org: str, site: str):
        self.url = portal.url
        code = portal.add_site(org, site)
        answer = requests.post(f"{portal.url}/api/v1/enroll", json={"code": code}, timeout=10)
        assert answer.status_code == 200, answer.text
        self.auth = {"Authorization": f"Bearer {answer.json()['credential']}"}

    def send(self, *calls: dict) -> None:
        answer = requests.post(f"{self.url}/api/v1/calls", json={"calls": list(calls)}, headers=self.auth, timeout=10)
        assert answer.status_code == 200, answer.text

    def upload(self, call_id: str, data: bytes) -> None:
        sha = hashlib.sha256(data).hexdigest()
        offer = requests.post(f"{self.url}/api/v1/recordings", json={"call_id": call_id, "sha256": sha, "size": len(data)},
                              headers=self.auth, timeout=10).json()
        assert offer["status"] == "upload", offer
        put = requests.put(f"{self.url}/api/v1/recordings/{sha}", params={"call_id": call_id, "offset": 0}, data=data,
                           headers=self.auth, timeout=10)
        assert put.json() == {"status": "stored"}, put.text


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    """Two organisations' calls and users in one portal."""
    portal = start_portal(tmp_path_factory.mktemp("web"), "postgresql")
    acme, globex = Box(portal, "Acme", "acme-hq"), Box(portal, "Globex", "globex-hq")
    answered = call("+79161234567", "101", "inbound", "answered", 42, src_name="Client")
    missed = call("84951234567", "100", "inbound", "no_answer")
    consult = call("101", "102", "internal", "answered", 20, transferred_to="103")
    leg = call("101", "103", "internal", "answered", 30, linked_id=consult["id"])
    acme.send(answered, missed, consult, leg)
    recording = wav_bytes(2.0)
    acme.send(answered | {"recording": "/data/var/recordings/x.wav"})
    acme.upload(answered["id"], recording)
    theirs = call("200", "201", "internal", "answered", 10)
    globex.send(theirs)
    globex.upload(theirs["id"], wav_bytes(1.0))
    portal.cli("add-user", "--org", "Acme", "--user", "anna", "--password", PASSWORD, "--role", "admin")
    portal.cli("add-user", "--org", "Globex", "--user", "gleb", "--password", PASSWORD, "--role", "viewer")
    portal.cli("add-user", "--user", "olga", "--password", PASSWORD, "--role", "operator")
    yield {"portal": portal, "answered": answered, "missed": missed, "consult": consult, "leg": leg,
           "recording": recording, "theirs": theirs}
    close_portal(portal)


def cells(row: str) -> list[str]:
    """A table row's cells as text."""
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def signed_in(portal, user: str, password: str = PASSWORD) -> tuple[requests.Session, requests.Response]:
    browser = requests.Session()
    form = browser.get(f"{portal.url}/login", timeout=10)
    assert form.status_code == 200
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = browser.post(f"{portal.url}/login", data={"csrf": csrf, "username": user, "password": password},
                          allow_redirects=False, timeout=10)
    return browser, answer


def test_sign_in_sets_an_httponly_session_and_lands_on_the_report_of_the_organisations_calls(office):
    portal = office["portal"]
    form = requests.get(f"{portal.url}/login", timeout=10).text
    assert 'name="username"' in form and 'name="password"' in form and '<label for="password">' in form
    browser, answer = signed_in(portal, "anna")
    assert answer.status_code == 303 and answer.headers["location"] == "/calls"
    cookie = answer.headers["set-cookie"]
    assert "edgepbx_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    page = browser.get(f"{portal.url}/calls", timeout=10)
    assert page.status_code == 200
    for mine in ("answered", "missed", "consult"):
        assert f'data-call-id="{office[mine]["id"]}"' in page.text
    # the transfer's second leg is part of its conversation, not a row of its own
    assert f'data-call-id="{office["leg"]["id"]}"' not in page.text and "transferred to 103" in page.text
    assert office["theirs"]["id"] not in page.text  # another organisation's call
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    with psycopg.connect(portal.database_url) as db:
        stored = db.execute("SELECT password_hash FROM portal_user WHERE username = 'anna'").fetchone()[0]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_the_missed_view_shows_only_calls_nobody_answered(office):
    browser, _ = signed_in(office["portal"], "anna")
    page = browser.get(f"{office['portal'].url}/calls", params={"preset": "today", "view": "missed"}, timeout=10).text
    assert f'data-call-id="{office["missed"]["id"]}"' in page
    assert f'data-call-id="{office["answered"]["id"]}"' not in page and "no answer" in page


def test_a_recording_plays_with_http_range_and_downloads_under_the_chosen_name(office):
    browser, _ = signed_in(office["portal"], "anna")
    url = f"{office['portal'].url}/calls/{office['answered']['id']}/recording"
    whole = browser.get(url, timeout=10)
    assert whole.status_code == 200 and whole.content == office["recording"]
    assert whole.headers["content-type"] == "audio/wav" and whole.headers["accept-ranges"] == "bytes"
    part = browser.get(url, headers={"Range": "bytes=100-199"}, timeout=10)  # what a player sends when seeking
    assert part.status_code == 206 and part.content == office["recording"][100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(office['recording'])}"
    tail = browser.get(url, headers={"Range": "bytes=-10"}, timeout=10)
    assert tail.status_code == 206 and tail.content == office["recording"][-10:]
    assert browser.get(url, headers={"Range": "bytes=999999-"}, timeout=10).status_code == 416
    saved = browser.get(url, params={"download": "1", "name": "Звонок клиента"}, timeout=10)
    assert saved.content == office["recording"]
    assert "filename*=UTF-8''%D0%97%D0%B2%D0%BE%D0%BD%D0%BE%D0%BA%20%D0%BA%D0%BB%D0%B8%D0%B5%D0%BD%D1%82%D0%B0.wav" \
        in saved.headers["content-disposition"]
    default = browser.get(url, params={"download": "1"}, timeout=10).headers["content-disposition"]
    assert "_+79161234567_101_inbound.wav" in default


def test_another_organisation_cannot_open_the_first_ones_calls_or_recordings_by_url(office):
    portal = office["portal"]
    gleb, answer = signed_in(portal, "gleb")
    assert answer.status_code == 303
    stolen = gleb.get(f"{portal.url}/calls/{office['answered']['id']}/recording", timeout=10)
    assert stolen.status_code == 404 and office["recording"] not in stolen.content
    assert gleb.get(f"{portal.url}/calls/{uuid.uuid4()}/recording", timeout=10).status_code == 404  # the same answer
    own = gleb.get(f"{portal.url}/calls", timeout=10).text
    assert f'data-call-id="{office["theirs"]["id"]}"' in own and office["answered"]["id"] not in own
    anonymous = requests.get(f"{portal.url}/calls/{office['theirs']['id']}/recording", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    portal.cli("add-user", "--org", "Globex", "--user", "gleb", "--password", PASSWORD, "--role", "admin",
               "--extension", "200")  # an admin may call back, but only their own organisation's callers
    gleb, _ = signed_in(portal, "gleb")
    csrf = gleb.get(f"{portal.url}/calls", timeout=10).text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    called = gleb.post(f"{portal.url}/calls/{office['missed']['id']}/call-back", data={"csrf": csrf}, timeout=10)
    assert called.status_code == 404  # another organisation's missed call cannot be called back either
    settings = gleb.get(f"{portal.url}/settings", timeout=10).text
    assert "globex-hq" in settings and "acme-hq" not in settings


def test_password_guessing_is_stopped_after_five_failures_even_with_the_right_password_then(office):
    portal = office["portal"]
    portal.cli("add-user", "--org", "Acme", "--user", "target", "--password", PASSWORD, "--role", "viewer")
    for guess in range(5):
        _, answer = signed_in(portal, "target", f"guess-{guess}")
        assert answer.status_code == 401 and "Wrong user name or password" in answer.text
    _, answer = signed_in(portal, "target", PASSWORD)
    assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0
    assert "edgepbx_session" not in answer.headers.get("set-cookie", "")


def sign_in_from(portal, source: str, user: str, forwarded_for: str) -> int:
    """A sign-in with a wrong password sent from the loopback address `source` (as a proxy or as a
    client would), claiming X-Forwarded-For: `forwarded_for`; the answer's status."""
    import urllib3

    pool = urllib3.PoolManager(source_address=(source, 0), retries=False)
    form = pool.request("GET", f"{portal.url}/login")
    csrf = form.data.decode().split('name="csrf" value="', 1)[1].split('"', 1)[0]
    cookie = form.headers["set-cookie"].split(";", 1)[0]
    answer = pool.request("POST", f"{portal.url}/login", fields={"csrf": csrf, "username": user, "password": "wrong guess"},
                          encode_multipart=False, redirect=False,
                          headers={"Cookie": cookie, "X-Forwarded-For": forwarded_for})
    return answer.status


def test_the_address_limit_counts_the_client_behind_a_trusted_proxy_and_ignores_anyone_elses_forwarded_for(tmp_path):
    """Behind the provider's load balancer every sign-in comes from the balancer: the portal takes
    the client's address from X-Forwarded-For, but only when the trusted proxy sent it; a client
    cannot dodge the limit by making the header up."""
    from portal_lab import Portal

    portal = Portal(tmp_path / "portal", None, run_args=["--trusted-proxy", "127.0.0.1"])
    portal.start()
    try:
        for n in range(20):  # the proxy (127.0.0.1) relays one client's guesses at many user names
            assert sign_in_from(portal, "127.0.0.1", f"user{n}", "203.0.113.7") == 401
        assert sign_in_from(portal, "127.0.0.1", "user-new", "203.0.113.7") == 429  # that client is stopped
        assert sign_in_from(portal, "127.0.0.1", "user-new", "203.0.113.8") == 401  # its neighbour is not
        for n in range(20):  # a client (127.0.0.2, not a proxy) making up a new address each time
            assert sign_in_from(portal, "127.0.0.2", f"other{n}", f"198.51.100.{n}") == 401
        assert sign_in_from(portal, "127.0.0.2", "other-new", "198.51.100.99") == 429
    finally:
        portal.stop()


def test_forms_need_their_csrf_token_and_log_out_ends_the_session(office):
    portal = office["portal"]
    forged = requests.post(f"{portal.url}/login", data={"username": "anna", "password": PASSWORD},
                           allow_redirects=False, timeout=10)
    assert forged.status_code == 403  # no token from our own form: another site posted it
    browser, _ = signed_in(portal, "anna")
    page = browser.get(f"{portal.url}/calls", timeout=10).text
    assert browser.post(f"{portal.url}/logout", data={"csrf": "wrong"}, allow_redirects=False, timeout=10).status_code == 403
    csrf = page.split('action="/logout">', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    cookie = browser.cookies.get("edgepbx_session")
    out = browser.post(f"{portal.url}/logout", data={"csrf": csrf}, allow_redirects=False, timeout=10)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    replayed = requests.get(f"{portal.url}/calls", cookies={"edgepbx_session": cookie}, allow_redirects=False, timeout=10)
    assert replayed.status_code == 303  # the old cookie is dead on the server, not only deleted in the browser


def test_an_operator_sees_the_sites_not_the_customers_calls_and_russian_is_chosen_by_the_browser(office):
    portal = office["portal"]
    olga, answer = signed_in(portal, "olga")
    assert answer.headers["location"] == "/fleet"
    sites = olga.get(f"{portal.url}/fleet", timeout=10).text
    assert 'data-site="acme-hq"' in sites and 'data-site="globex-hq"' in sites
    assert olga.get(f"{portal.url}/calls", timeout=10).status_code == 403
    russian = requests.get(f"{portal.url}/login", headers={"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}, timeout=10)
    assert '<html lang="ru">' in russian.text and "Войти" in russian.text
    english = requests.get(f"{portal.url}/login", params={"lang": "en"}, headers={"Accept-Language": "ru"}, timeout=10)
    assert "Sign in" in english.text and "lang=en" in english.headers["set-cookie"]


def test_in_chromium_sign_in_pick_missed_calls_play_a_recording_and_save_it_under_a_chosen_name(office, tmp_path):
    """The memo's path in a real browser (Debian's Chromium, headless, driven by Playwright):
    log in, open the report, pick the missed calls, press play, download; an operator pushes a
    config. Screenshots of the
    pages go to build/screenshots/ (docs/portal.md shows them)."""
    from playwright.sync_api import sync_playwright

    from conftest import ROOT

    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    portal = office["portal"]
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_context(locale="en-GB", accept_downloads=True,
                                       viewport={"width": 1280, "height": 720}).new_page()
            page.goto(f"{portal.url}/")
            page.screenshot(path=str(shots / "login.png"))
            page.get_by_label("User name").fill("anna")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/calls")
            assert page.locator(f'tr[data-call-id="{office["answered"]["id"]}"]').count() == 1
            page.screenshot(path=str(shots / "calls.png"), full_page=True)

            page.get_by_role("link", name="Missed", exact=True).click()
            page.wait_for_url("**view=missed*")
            ids = page.locator("tr[data-call-id]").evaluate_all("rows => rows.map(r => r.dataset.callId)")
            assert ids == [office["missed"]["id"]]
            page.screenshot(path=str(shots / "calls-missed.png"), full_page=True)

            page.get_by_role("link", name="All", exact=True).click()
            row = page.locator(f'tr[data-call-id="{office["answered"]["id"]}"]')
            audio = row.locator("audio")
            audio.evaluate("a => { window.played = new Promise(ok => a.addEventListener('playing', () => ok(true))); a.play(); }")
            assert page.evaluate("window.played") is True  # the element reached `playing`
            assert audio.evaluate("a => a.duration") == pytest.approx(2.0, abs=0.05)

            row.get_by_label("File name").fill("client call")
            with page.expect_download() as download:
                row.get_by_role("button", name="Download").click()
            saved = tmp_path / download.value.suggested_filename
            download.value.save_as(saved)
            assert saved.name == "client call.wav" and saved.read_bytes() == office["recording"]

            page.get_by_role("link", name="Statistics").click()
            page.wait_for_url("**/stats")
            assert page.locator("svg[role=img]").count() == 2
            page.screenshot(path=str(shots / "stats.png"), full_page=True)

            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url("**/login")
            page.get_by_label("User name").fill("olga")
            page.get_by_label("Password").fill(PASSWORD)
            page.keyboard.press("Enter")  # the form works from the keyboard
            page.wait_for_url("**/fleet")
            page.get_by_role("link", name="acme-hq").click()
            page.wait_for_url("**/fleet/acme-hq")
            page.screenshot(path=str(shots / "site.png"), full_page=True)
            page.get_by_label("The whole office config").fill(GOOD_CONFIG)  # the operator pushes a config
            page.get_by_role("button", name="Check and push").click()
            page.wait_for_selector("[data-pushed]")
            assert page.locator("[data-pushed]").get_attribute("data-pushed") == "1"
            assert "first-secret-101" not in page.content()
        finally:
            browser.close()


def row_ids(page: str) -> list[str]:
    return [part.split('"', 1)[0] for part in page.split('data-call-id="')[1:]]


def test_filters_by_extension_number_and_recording_and_sorting_by_talk_time(office):
    browser, _ = signed_in(office["portal"], "anna")
    url = f"{office['portal'].url}/calls"
    answered, missed, consult = office["answered"]["id"], office["missed"]["id"], office["consult"]["id"]
    assert row_ids(browser.get(url, params={"ext": "103"}, timeout=10).text) == [consult]  # the transfer's target
    assert row_ids(browser.get(url, params={"number": "495"}, timeout=10).text) == [missed]
    assert row_ids(browser.get(url, params={"recorded": "1"}, timeout=10).text) == [answered]
    by_talk = browser.get(url, params={"sort": "talk", "dir": "desc"}, timeout=10).text
    assert row_ids(by_talk) == [answered, consult, missed]  # 42 s, 20 s, 0 s
    assert row_ids(browser.get(url, params={"sort": "talk", "dir": "asc"}, timeout=10).text) == [missed, consult, answered]
    assert 'aria-sort="descending"' in by_talk


def test_the_csv_export_opens_in_excel_with_cyrillic_intact(office):
    browser, _ = signed_in(office["portal"], "anna")
    russian = browser.get(f"{office['portal'].url}/calls.csv", params={"lang": "ru"}, cookies={"lang": "ru"}, timeout=10)
    assert russian.headers["content-type"].startswith("text/csv") and "attachment" in russian.headers["content-disposition"]
    assert russian.content.startswith(b"\xef\xbb\xbf")  # the byte order mark Excel needs to read UTF-8
    lines = russian.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("Время;Направление;Кто звонил")  # `;`: what Russian Excel splits on
    assert len(lines) == 4
    row = next(line for line in lines if office["answered"]["id"] in line)
    assert "входящий" in row and "+79161234567 (Client)" in row and ";да;" in row
    assert ";42;" in row and "Разговор, секунд" in lines[0]  # seconds as a number Excel sums, said in the header
    assert lines[0].endswith("Перезвонили;Идентификатор звонка")
    consult = next(line for line in lines if office["consult"]["id"] in line)
    assert "102 → 103" in consult  # the transfer is one line
    english = browser.get(f"{office['portal'].url}/calls.csv", params={"view": "missed"}, timeout=10)
    assert english.content.decode("utf-8-sig").splitlines()[0].startswith("Time,Direction,Caller")
    assert len(english.content.decode("utf-8-sig").splitlines()) == 2


def test_statistics_per_day_and_extension_with_answer_and_talk_time_and_who_was_never_called_back(office):
    """A third organisation's day: a missed caller called back by 101, one nobody called back, an
    answered incoming call, an internal call."""
    from datetime import timedelta

    portal = office["portal"]
    box = Box(portal, "Initech", "initech-hq")
    base = datetime.now().astimezone().replace(microsecond=0) - timedelta(minutes=5)
    at = lambda seconds: (base + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")  # noqa: E731
    missed = call("+7 916 111-22-33", "74951112233", "inbound", "no_answer", started_at=at(0))
    callback = call("101", "89161112233", "outbound", "answered", 45, dst_number="89161112233", started_at=at(10),
                    answered_at=at(15))
    forgotten = call("84957654321", "74951112233", "inbound", "busy", started_at=at(20))
    answered = call("84950000000", "101", "inbound", "answered", 60, started_at=at(30), answered_at=at(42))
    internal = call("101", "102", "internal", "answered", 30, started_at=at(50), answered_at=at(54))
    box.send(missed, callback, forgotten, answered, internal)
    portal.cli("add-user", "--org", "Initech", "--user", "ivan", "--password", PASSWORD, "--role", "viewer")
    browser, _ = signed_in(portal, "ivan")
    page = browser.get(f"{portal.url}/stats", params={"preset": "today"}, timeout=10).text
    figure = lambda name: page.split(f'data-figure="{name}">', 1)[1].split("<", 1)[0]  # noqa: E731
    assert figure("answered") == "2" and figure("answer-seconds") == "8 s" and figure("talk") == "2:15"
    today = page.split(f'data-day="{base.date().isoformat()}">', 1)[1].split("</tr>", 1)[0]
    assert cells(today) == [base.date().isoformat(), "3", "1", "1", "2"]
    ext_101 = page.split('data-extension="101">', 1)[1].split("</tr>", 1)[0]
    assert cells(ext_101) == ["101", "2", "1", "0"]
    never = page.split("<ul>", 1)[1].split("</ul>", 1)[0]
    assert forgotten["id"] in never and missed["id"] not in never  # the first one was called back by 101
    assert "<svg" in page and "<title" in page  # the charts, drawn by the server, no script
    report = browser.get(f"{portal.url}/calls", params={"preset": "today", "view": "missed"}, timeout=10).text
    assert report.count('data-callback="yes"') == 1 and report.count('data-callback="no"') == 1
    row = report.split(f'data-call-id="{missed["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-callback="yes"' in row and "from 101" in row


GOOD_CONFIG = """site: {name: "Acme office"}
network: {bind: 192.168.1.10}
extensions:
  - {number: "101", name: "Reception", password: "first-secret-101"}
"""


def test_an_operator_sees_alarms_and_a_sites_page_and_pushes_a_config_checked_before_it_is_queued(office):
    portal = office["portal"]
    box = Box(portal, "Umbrella", "umbrella-hq")
    status = {"version": "0.1.0", "outbox_depth": 3, "phones_registered": 1, "extensions": 2,
              "disk": {"total_bytes": 1000 << 20, "free_bytes": 50 << 20},
              "trunks": [{"name": "main", "state": "failing", "last_code": 403}],
              "phones": [{"mac": "805ec0112233", "vendor": "yealink", "model": "T46U", "extension": "101",
                          "registered": True, "last_fetch_at": None, "firmware": "108.86.0.70"}],
              "heartbeat_seconds": 60,
              "toll_alarm": {"at": "2026-12-01T03:12:09.120+03:00",
                             "reason": "extension 101: 20 calls out in the last hour (limit 20)"}}
    answer = requests.post(f"{portal.url}/api/v1/heartbeat", json=status, headers=box.auth, timeout=10)
    assert answer.status_code == 200, answer.text
    olga, _ = signed_in(portal, "olga")
    fleet = olga.get(f"{portal.url}/fleet", timeout=10).text
    row = fleet.split('data-site="umbrella-hq">', 1)[1].split("</tr>", 1)[0]
    assert "disk low: 50 MB free" in row and "trunk main failing (403)" in row and "online" in row
    assert "toll limit at 2026-12-01 03:12: extension 101: 20 calls out in the last hour (limit 20)" in row
    page = olga.get(f"{portal.url}/fleet/umbrella-hq", timeout=10).text
    assert 'data-mac="805ec0112233"' in page and "main — failing (403)" in re.sub(r"<[^>]+>", "", page)
    assert 'data-firmware="108.86.0.70"' in page  # the version the phone reports
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    push = f"{portal.url}/fleet/umbrella-hq/config"
    refused = olga.post(push, data={"csrf": csrf, "config": "extensions:\n  - {number: 1O1}\n"}, timeout=10)
    assert refused.status_code == 422 and "config:2:" in refused.text  # the box's own validator, with the line
    assert 'data-version="' not in refused.text  # nothing queued
    first = olga.post(push, data={"csrf": csrf, "config": GOOD_CONFIG}, timeout=10)
    assert first.status_code == 200 and 'data-pushed="1"' in first.text
    second = olga.post(push, data={"csrf": csrf, "config": GOOD_CONFIG.replace("first-secret-101", "second-secret-101")
                                   .replace("Reception", "Front desk")}, timeout=10).text
    assert 'data-pushed="2"' in second
    diff = second.split('data-version="2"', 1)[1].split("</details>", 1)[0]
    assert "-  - {number: &#34;101&#34;, name: &#34;Reception&#34;, password: ••••}" in diff
    assert "+  - {number: &#34;101&#34;, name: &#34;Front desk&#34;, password: ••••}" in diff
    assert "secret-101" not in second  # the passwords are in the versions, never on the page
    assert olga.post(push, data={"csrf": "forged", "config": GOOD_CONFIG}, timeout=10).status_code == 403
    configs = requests.get(f"{portal.url}/api/v1/config", headers=box.auth, timeout=10).json()
    assert configs["version"] == 2 and "second-secret-101" in configs["config"]  # what the box pulls
    greeting = olga.post(push, data={"csrf": csrf, "config": GOOD_CONFIG + "inbound: {greeting: sounds/hello.wav}\n"},
                         timeout=10).text
    assert 'data-pushed="3"' in greeting  # the WAV is on the box, which checks it; the portal checks the rest
    anna, _ = signed_in(portal, "anna")
    assert anna.get(f"{portal.url}/fleet/umbrella-hq", timeout=10).status_code == 403
    assert anna.post(push, data={"csrf": csrf, "config": GOOD_CONFIG}, timeout=10).status_code == 403


def test_the_management_plane_refuses_what_it_must(office):
    """Issue 21's findings, each tried as an attacker or a careless installer would."""
    portal = office["portal"]
    box = Box(portal, "Initech", "initech-hq")
    hacked = call('=HYPERLINK("http://evil.example/","Pay here")', "100", "inbound", "no_answer")
    box.send(hacked)
    # a heartbeat whose disk is a list: refused with the reason, and no page breaks on it
    odd = requests.post(f"{portal.url}/api/v1/heartbeat", json={"disk": []}, headers=box.auth, timeout=10)
    assert odd.status_code == 422 and "disk" in odd.json()["error"]
    olga, _ = signed_in(portal, "olga")
    assert olga.get(f"{portal.url}/fleet", timeout=10).status_code == 200
    # a replacement box's enrolment ends the old box's credential
    replacement = requests.post(f"{portal.url}/api/v1/enroll", json={"code": portal.add_site("Initech", "initech-hq")},
                                timeout=10).json()["credential"]
    beat = requests.post(f"{portal.url}/api/v1/heartbeat", json={}, headers=box.auth, timeout=10)
    assert beat.status_code == 401 and "revoked" in beat.json()["error"]
    assert requests.post(f"{portal.url}/api/v1/heartbeat", json={}, timeout=10,
                         headers={"Authorization": f"Bearer {replacement}"}).status_code == 200
    # a user never changes organisation; a reset signs them out everywhere
    portal.cli("add-user", "--org", "Initech", "--user", "ivan", "--password", PASSWORD, "--role", "viewer",
               "--extension", "105")
    moved = portal.cli("add-user", "--org", "Acme", "--user", "ivan", "--password", PASSWORD, "--role", "admin",
                       check=False)
    assert moved.returncode != 0 and "never changes organisation" in moved.stderr
    ivan, _ = signed_in(portal, "ivan")
    page = ivan.get(f"{portal.url}/calls", params={"view": "missed"}, timeout=10)
    assert f'data-call-id="{hacked["id"]}"' in page.text
    # a viewer reads and listens, but may not make the office's phones call out
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    refused = ivan.post(f"{portal.url}/calls/{hacked['id']}/call-back", data={"csrf": csrf}, allow_redirects=False,
                        timeout=10)
    assert refused.status_code == 403
    # the CSV does not hand Excel a formula from a caller's From user
    lines = ivan.get(f"{portal.url}/calls.csv", timeout=10).content.decode("utf-8-sig").splitlines()
    row = next(line for line in lines if hacked["id"] in line)
    assert "'=HYPERLINK" in row and ",=HYPERLINK" not in row
    portal.cli("add-user", "--org", "Initech", "--user", "ivan", "--password", PASSWORD + "!", "--role", "viewer")
    after_reset = ivan.get(f"{portal.url}/calls", allow_redirects=False, timeout=10)
    assert after_reset.status_code == 303 and after_reset.headers["location"] == "/login"


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def stream_body(port: int, path: str, total: int, seconds: float = 60.0) -> tuple[int, int, str]:
    """POSTs a chunked body of up to `total` bytes (1 MiB chunks, at most `seconds`), as an
    anonymous client would, and stops sending as soon as an answer arrives; returns (its status,
    the bytes sent before it came, its first bytes)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                 "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode())
    chunk, sent, deadline = b"a" * (1 << 20), 0, time.monotonic() + seconds
    try:
        while sent < total and time.monotonic() < deadline and not select.select([sock], [], [], 0)[0]:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the portal answered and closed the connection
    answer = sock.recv(4096).decode(errors="replace")
    sock.close()
    return int(answer.split(" ", 2)[1]), sent, answer


def test_a_huge_body_is_cut_off_without_the_portal_reading_it(office):
    """An anonymous client streaming 512 MB at /login or /api/v1/enroll is answered 413 after the
    route's limit (8 KiB, 4 KiB), and the portal's memory stays flat; a Content-Length over the
    limit is refused before any byte of the body is read."""
    portal = office["portal"]
    pid = portal.procs[0].pid
    before = rss_mb(pid)
    for path in ("/login", "/api/v1/enroll"):
        status, sent, body = stream_body(portal.port, path, 512 << 20)
        assert status == 413, body
        assert sent < 64 << 20, f"{sent >> 20} MB went out before the portal answered"
        print(f"{path}: 413 after {sent >> 20} MiB sent; portal RSS {before:.0f} -> {rss_mb(pid):.0f} MB")
    assert rss_mb(pid) - before < 20, f"RSS grew from {before:.0f} to {rss_mb(pid):.0f} MB"
    conn = http.client.HTTPConnection("127.0.0.1", portal.port, timeout=10)
    conn.putrequest("POST", "/api/v1/calls")
    conn.putheader("Content-Length", str(1 << 30))
    conn.endheaders()  # no body at all: the header alone is refused
    assert conn.getresponse().status == 413
    conn.close()


def test_config_diffs_mask_every_secret_the_yaml_holds():
    """Masked from the YAML's own nodes: quoted keys, flow mappings and block scalars (which a
    line-by-line pattern let through) as well as plain `password: x` lines."""
    from portal.configs import masked
    text = ('trunks:\n  - {name: main, "password": "s3cr:et-1", host: sip.example}\n'
            'extensions:\n  - number: "101"\n    password: |\n      s3cret-2a\n      s3cret-2b\n    name: Reception\n'
            '  - {number: "102", password: s3cret-3}\n'
            'security: {tls_key: s3cret-4.pem}\ncloud:\n  token: s3cret-5\n')
    shown = masked(text)
    assert "s3cr" not in shown and "s3cret" not in shown
    assert "name: Reception" in shown and "host: sip.example" in shown and shown.count("••••") == 5
    assert "s3cret" not in masked('password: "s3cret\n')  # not YAML: not shown at all


def test_guesses_sent_in_parallel_get_no_more_checks_than_the_limit(office):
    """Twelve wrong passwords for one user name at the same moment: each attempt is counted before
    its password is checked, so no more than five are checked (401) and the rest are refused
    (429). (Checked and counted apart, parallel guesses all passed the count first.) Runs last in
    this module: its failures count against the address for 15 minutes."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    portal = office["portal"]
    browsers = []
    for _ in range(12):
        browser = requests.Session()
        form = browser.get(f"{portal.url}/login", timeout=10).text
        browsers.append((browser, form.split('name="csrf" value="', 1)[1].split('"', 1)[0]))
    start = threading.Barrier(len(browsers))

    def guess(pair) -> int:
        browser, csrf = pair
        start.wait(timeout=30)
        return browser.post(f"{portal.url}/login", data={"csrf": csrf, "username": "parallel-victim",
                                                         "password": "wrong password!"},
                            allow_redirects=False, timeout=30).status_code
    with ThreadPoolExecutor(len(browsers)) as pool:
        answers = list(pool.map(guess, browsers))
    assert sorted(set(answers)) <= [401, 429] and answers.count(401) <= 5, answers
    assert answers.count(429) >= len(answers) - 5


def test_a_box_beating_in_a_loop_and_its_abandoned_uploads_do_not_grow_the_database(office):
    """Quotas: a box sending heartbeats as fast as it can still has its status current, but its
    history keeps one row per 10 s; an upload left unfinished for over a week leaves with its
    chunks at the site's first heartbeat of an hour."""
    portal = office["portal"]
    box = Box(portal, "Umbrella", "umbrella-hq")
    started = time.monotonic()
    for n in range(60):
        beat = requests.post(f"{portal.url}/api/v1/heartbeat", json={"extensions": n}, headers=box.auth, timeout=10)
        assert beat.status_code == 200
    slots = int(time.monotonic() - started) // 10 + 2
    half = call("101", "102", "internal", "answered", 5)
    box.send(half)
    data = wav_bytes(1.0)
    sha = hashlib.sha256(data).hexdigest()
    requests.post(f"{portal.url}/api/v1/recordings", json={"call_id": half["id"], "sha256": sha, "size": len(data)},
                  headers=box.auth, timeout=10)
    assert requests.put(f"{portal.url}/api/v1/recordings/{sha}", params={"call_id": half["id"], "offset": 0},
                        data=data[:1000], headers=box.auth, timeout=10).json() == {"status": "upload", "offset": 1000}
    with psycopg.connect(portal.database_url, autocommit=True) as db:
        site_id, status = db.execute("SELECT id, last_status FROM site WHERE name = 'umbrella-hq'").fetchone()
        assert json.loads(status)["extensions"] == 59  # the last one counts
        rows = db.execute("SELECT count(*) FROM heartbeat WHERE site_id = %s", (site_id,)).fetchone()[0]
        assert 1 <= rows <= slots, rows
        db.execute("UPDATE upload SET created_at = now() - interval '8 days' WHERE site_id = %s", (site_id,))
        db.execute("UPDATE site SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s", (site_id,))
        db.execute("INSERT INTO heartbeat (site_id, at, status) VALUES (%s, now() - interval '31 days', '{}')", (site_id,))
        assert requests.post(f"{portal.url}/api/v1/heartbeat", json={}, headers=box.auth, timeout=10).status_code == 200
        assert db.execute("SELECT count(*) FROM upload WHERE site_id = %s", (site_id,)).fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM upload_chunk").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM heartbeat WHERE site_id = %s AND at < now() - interval '30 days'",
                          (site_id,)).fetchone()[0] == 0
    offer = requests.post(f"{portal.url}/api/v1/recordings", json={"call_id": half["id"], "sha256": sha,
                                                                  "size": len(data)}, headers=box.auth, timeout=10)
    assert offer.json() == {"status": "upload", "offset": 0}  # the box starts it again


def test_a_calls_measured_quality_arrives_and_the_report_marks_a_poor_line(office):
    portal = office["portal"]
    box = Box(portal, "Quality Org", "quality-hq")
    leg = lambda mos, loss: {"codec": "PCMU", "packets": 450, "lost": 50, "loss_pct": loss,  # noqa: E731
                             "jitter_ms": 3.0, "jitter_max_ms": 20.0, "rtt_ms": None, "reported_loss_pct": None,
                             "reported_jitter_ms": None, "mos": mos}
    poor = call("101", "102", "internal", "answered", 30, quality={"caller": leg(4.4, 0.0), "callee": leg(3.29, 9.81)})
    box.send(poor)
    odd = call("101", "102", "internal", "answered", 5, quality={"caller": {"codec": "PCMU", "script": "<x>"}})
    refused = requests.post(f"{portal.url}/api/v1/calls", json={"calls": [odd]}, headers=box.auth, timeout=10)
    assert refused.status_code == 422 and "quality.caller.script" in refused.text
    [synced] = portal.calls("quality-hq")
    assert synced["quality"]["callee"]["mos"] == 3.29
    portal.cli("add-user", "--org", "Quality Org", "--user", "quinn", "--password", PASSWORD, "--role", "viewer")
    browser, _ = signed_in(portal, "quinn")
    row = browser.get(f"{portal.url}/calls", timeout=10).text.split(f'data-call-id="{poor["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-quality="poor"' in row and 'data-mos="3.29"' in row and "loss 9.81 %" in row


def test_a_sites_quality_page_and_an_alarm_when_a_trunks_calls_turn_poor(office):
    """Fifteen answered calls of a day: twelve over trunk main, four of them poor (a leg's MOS
    under 3.6), three clean over trunk backup. The organisation's quality page gives the day's
    share, the worst trunk and extension; the operator's site page links to the same; the
    portal opens a poor-calls alarm for the site and one for trunk main (a fifth or more of ten
    or more calls), and none for backup."""
    portal = office["portal"]
    box = Box(portal, "Line Org", "line-hq")
    leg = lambda mos: {"codec": "PCMA", "loss_pct": 0.0 if mos > 4 else 8.0, "jitter_ms": 2.0, "rtt_ms": 30.0,  # noqa: E731
                       "mos": mos}
    calls = [call("+74951110000", "100", "inbound", "answered", 60, trunk="main", answered_by="101" if i % 2 else "102",
                  quality={"caller": leg(4.3), "callee": leg(3.0 if i < 4 else 4.3)}) for i in range(12)]
    calls += [call("+74952220000", "100", "inbound", "answered", 60, trunk="backup", answered_by="102",
                   quality={"caller": leg(4.4), "callee": leg(4.4)}) for _ in range(3)]
    box.send(*calls)
    assert requests.post(f"{portal.url}/api/v1/heartbeat", json={}, headers=box.auth, timeout=10).status_code == 200
    portal.cli("add-user", "--org", "Line Org", "--user", "lena", "--password", PASSWORD, "--role", "viewer")
    lena, _ = signed_in(portal, "lena")
    page = lena.get(f"{portal.url}/quality", timeout=10).text
    section = page.split('data-quality-site="line-hq"', 1)[1]
    assert 'data-poor-share="26.7"' in section  # today: 4 of 15
    assert 'data-worst-trunk="main" data-poor-share="33.3"' in section and 'data-worst-trunk="backup"' not in section
    assert 'data-worst-extension="102"' in section and 'data-worst-extension="101"' in section
    assert "acme-hq" not in page  # its own sites only
    assert lena.get(f"{portal.url}/fleet/line-hq/quality", timeout=10).status_code == 403
    olga, _ = signed_in(portal, "olga")
    assert 'data-quality-link' in olga.get(f"{portal.url}/fleet/line-hq", timeout=10).text
    assert 'data-worst-trunk="main"' in olga.get(f"{portal.url}/fleet/line-hq/quality", timeout=10).text
    deadline = time.monotonic() + 30
    while True:
        alarms = json.loads(portal.cli("alarms", "--site", "line-hq", "--json").stdout)
        keys = {(a["key"], a.get("subject") or "") for a in alarms if not a.get("ended_at")}
        if ("poor_trunk", "main") in keys and ("poor_calls", "") in keys:
            break
        assert time.monotonic() < deadline, alarms
        time.sleep(0.5)
    assert ("poor_trunk", "backup") not in keys



@pytest.mark.parametrize("reported", [{"site": "x"}, {"pickup_groups": "x", "extensions": [{"nope": 1}]},
                                      {"inbound": {"day": [{"kind": 5}]}, "trunks": [None]}])
def test_settings_a_box_reports_in_another_shape_leave_the_settings_page_standing(tmp_path, reported):
    """Found by the fuzzer: a heartbeat whose settings lacked `pickup_groups` made /settings a 500
    for the whole organisation. Settings of a shape the page cannot read show as none reported."""
    portal = start_portal(tmp_path, "sqlite")
    try:
        box = Box(portal, "Acme", "acme-hq")
        sent = requests.post(f"{portal.url}/api/v1/heartbeat", json={"version": "1", "settings": reported},
                             headers=box.auth, timeout=10)
        assert sent.status_code == 200, sent.text
        portal.cli("add-user", "--org", "Acme", "--user", "anna", "--password", PASSWORD, "--role", "admin")
        anna, _ = signed_in(portal, "anna")
        page = anna.get(f"{portal.url}/settings", timeout=10)
        assert page.status_code == 200 and "acme-hq" in page.text
    finally:
        close_portal(portal)
