"""The customer's "call back" button and settings page, end to end: a real box (Kamailio, the
feature server and its cloud agent) enrolled in a real portal on PostgreSQL, a pjsua2 phone on the
user's extension, a SIPp provider on the trunk, and the pages in headless Chromium."""
from __future__ import annotations

import re
import subprocess
import time

import pjsua2 as pj
import requests

from conftest import EDGEPBX, ROOT, TONES, start_pbx
from portal_lab import FAST_CLOUD, close_portal, enrolled_box, start_portal
from sipp import provider_calls

PASSWORD = "correct horse battery"
CALLER = "+79101234567"  # the missed caller, as the provider presented them


def seed_missed_call(data_dir, src: str) -> str:
    """An incoming call nobody answered, written by the box's own CDR store as the feature server
    does (the inbound path itself is tested in test_inbound.py); the agent syncs it."""
    from appliance.cdr import CdrStore

    store = CdrStore(data_dir / "cdr.sqlite")
    call_id = store.start(direction="inbound", src=src, dst="100")
    store.ended(call_id, "no_answer", 480)
    store.close()
    return call_id


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


def test_call_back_rings_the_users_phone_then_dials_the_caller_over_the_trunk_and_settings_show_no_secret(
        tmp_path, lab):
    from playwright.sync_api import sync_playwright

    provider, provider_port, trace = provider_calls(tmp_path, "provider_call.xml", "provider")
    portal = start_portal(tmp_path, "postgresql")
    extensions = "\n".join([
        '  - {number: "101", name: "Anna", password: "pw-101-secret"}',
        '  - {number: "102", name: "Boris", password: "pw-102-secret", permissions: city,'
        ' phone: {mac: "80:5E:C0:11:22:33", vendor: yealink, model: T46U}}'])
    office = enrolled_box(tmp_path, portal, extensions=extensions, extra=f"""{FAST_CLOUD}
site: {{name: "NN", area_code: "831"}}
trunks:
  - {{name: main, host: 127.0.0.1, port: {provider_port}, register: false, username: nn-office, password: trunk-pass-2,
     caller_id: "+78312000000"}}""")
    pbx = start_pbx(office)
    lab.port = pbx.sip_port
    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        phone = lab.phone("101", "pw-101-secret", TONES["101"])
        phone.answer_delay = 1.0
        missed = seed_missed_call(office.parent / "var", CALLER)
        refused_missed = seed_missed_call(office.parent / "var", "+79107654321")
        portal.cli("add-user", "--org", "Acme", "--user", "anna", "--password", PASSWORD, "--role", "admin",
                   "--extension", "101")
        portal.cli("add-user", "--org", "Acme", "--user", "boris", "--password", PASSWORD, "--role", "admin",
                   "--extension", "102")
        portal.wait_calls("acme-hq", lambda calls: {missed, refused_missed} <= {c["id"] for c in calls})
        wait_until(lambda: (portal_site(portal).get("status") or {}).get("phones_registered") == 1
                   and "settings" in portal_site(portal)["status"], 15, "phone 101 and the settings in a heartbeat")

        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            try:
                page = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 720}).new_page()
                page.goto(f"{portal.url}/login")
                page.get_by_label("User name").fill("anna")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url("**/calls")

                page.get_by_role("link", name="Settings").click()
                page.wait_for_url("**/settings")
                text = page.locator("main").inner_text()
                boris = page.locator('tr[data-extension="102"]').inner_text()
                assert "yealink T46U" in boris and "long distance" not in boris and "city" in boris
                assert "main (IP-authenticated)" in text and "every extension in turn" in text
                assert "pw-101-secret" not in page.content() and "trunk-pass-2" not in page.content()
                assert "nn-office" not in page.content()  # not even the trunk's user name
                page.screenshot(path=str(shots / "settings.png"), full_page=True)

                page.get_by_role("link", name="Calls").click()
                page.get_by_role("link", name="Missed", exact=True).click()
                page.wait_for_url("**view=missed*")
                row = page.locator(f'tr[data-call-id="{missed}"]')
                assert row.locator('[data-callback="no"]').count() == 1  # nobody has called them back yet
                row.get_by_role("button", name="Call back").click()
                page.wait_for_url("**queued=*")
                assert "Your phone (extension 101) rings" in page.get_by_role("status").inner_text()

                # The box collects the request with its next heartbeat (2 s here): phone 101 rings,
                # answers, and only then does the provider get the call, to the missed caller.
                lab.wait_for(lambda: phone.calls and phone.last_call.state == pj.PJSIP_INV_STATE_CONFIRMED, 20,
                             "phone 101 to ring and answer")
                assert phone.last_call.getInfo().remoteUri.find(CALLER) >= 0  # the phone shows whom it calls
                lab.wait_for(lambda: f"INVITE sip:{CALLER}@127.0.0.1" in trace.read_text(), 10,
                             "the provider to get the call")
                sent = trace.read_text()
                assert re.search(r"^From: <sip:\+78312000000@", sent, re.M)  # the trunk's caller ID
                lab.poll(1.5)
                phone.last_call.hangup_now()
                record = pbx.wait_cdr(lambda r: r["direction"] == "outbound")
                assert (record["src"], record["dst_number"], record["trunk"], record["disposition"]) == (
                    "101", CALLER, "main", "answered")

                portal.wait_calls("acme-hq", lambda calls: any(c["id"] == record["id"] for c in calls))
                page.reload()
                row = page.locator(f'tr[data-call-id="{missed}"]')
                assert row.locator('[data-callback="yes"]').count() == 1  # the report now shows it called back
                assert row.locator('[data-callback-state="ringing"]').count() == 1
                page.screenshot(path=str(shots / "calls-called-back.png"), full_page=True)
            finally:
                browser.close()

        # Boris may call city numbers only: the box refuses to call a mobile back for him, and says why.
        session = requests.Session()
        form = session.get(f"{portal.url}/login", timeout=10).text
        csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        session.post(f"{portal.url}/login", data={"csrf": csrf, "username": "boris", "password": PASSWORD}, timeout=10)
        russian = session.get(f"{portal.url}/settings", headers={"Accept-Language": "ru"}, timeout=10).text
        assert "Настройки: NN" in russian and "город" in russian and "trunk-pass-2" not in russian
        report = session.get(f"{portal.url}/calls?view=missed", timeout=10).text
        csrf = report.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        queued = session.post(f"{portal.url}/calls/{refused_missed}/call-back", data={"csrf": csrf, "back": "/calls"},
                              timeout=10)
        assert queued.status_code == 200 and "queued=" in queued.url

        def refusal() -> str:
            page = session.get(f"{portal.url}/calls?view=missed", timeout=10).text
            row = page.split(f'data-call-id="{refused_missed}"', 1)[1].split("</tr>", 1)[0]
            return row if 'data-callback-state="refused"' in row else ""
        assert "may call city numbers only" in wait_until(refusal, 15, "the box's refusal")
        assert trace.read_text().count("INVITE sip:") == 2  # the provider saw only the first call (and its challenge)
        unknown = subprocess.run(EDGEPBX + ["call-back", "--config", str(office), "999", CALLER], capture_output=True,
                                 text=True, cwd=ROOT, timeout=30)  # the same request from the box's shell
        assert unknown.returncode == 1 and "no extension 999 on this box" in unknown.stderr
    finally:
        lab.release_phones()
        pbx.stop()
        provider.kill()
        close_portal(portal)


def portal_site(portal) -> dict:
    import json

    return next(s for s in json.loads(portal.cli("sites", "--json").stdout) if s["site"] == "acme-hq")
