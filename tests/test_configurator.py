"""The configurator, end to end: a real box (Kamailio, the feature server, its cloud agent with a
60 s heartbeat, so only the portal's wake-up can make a change quick) enrolled in a real portal on
PostgreSQL, the pages in headless Chromium in Russian, pjsua2 phones registering with what the
page showed."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time

import pjsua2 as pj
import pytest

from audio import has_tone, lacks_tone
from conftest import ROOT, TONES, start_pbx
from portal_lab import close_portal, enrolled_box, start_portal
from sipp import free_udp_port
from test_inbound import DID, OutsideCaller
from test_portal_truth import english_words

PASSWORD = "correct horse battery"
SLOW_CLOUD = "cloud: {heartbeat_seconds: 60, retry_max_seconds: 2, upload_kbps: 0, allow_http: true}"
SHOTS = ROOT / "build" / "screenshots"  # docs/screenshots/ holds the reviewed copies


def versions(portal) -> dict[int, dict]:
    return {v["version"]: v for v in json.loads(portal.cli("configs", "--site", "acme-hq", "--json").stdout)}


def wait_until(condition, timeout: float, what: str, lab=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        lab.poll(0.2) if lab else time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout:.0f} s")


def russian_text(page) -> str:
    """The page's words a Russian reader sees, without what the office typed (translate="no")."""
    return page.evaluate("""() => { const copy = document.body.cloneNode(true);
        copy.querySelectorAll('[translate="no"], script, style').forEach(e => e.remove());
        return copy.innerText; }""")


def fresh(page):
    """The same person's new tab, the old one closed: a page showing a pending version refreshes
    itself every 3 s, which would abort a navigation started in it."""
    new = page.context.new_page()
    page.close()
    return new


def sign_in(browser, portal, user: str, landing: str = "**/calls"):
    page = browser.new_context(locale="ru-RU", viewport={"width": 1280, "height": 900},
                               extra_http_headers={"Accept-Language": "ru-RU,ru;q=0.9"}).new_page()
    page.goto(f"{portal.url}/login")
    page.get_by_label("Имя пользователя").fill(user)
    page.get_by_label("Пароль").fill(PASSWORD)
    page.get_by_role("button", name="Войти").click()
    page.wait_for_url(landing)
    return page


@pytest.fixture
def office(tmp_path, lab):
    portal = start_portal(tmp_path, "postgresql")
    provider_port = free_udp_port()  # where the "provider" of the trunk sends from
    config = enrolled_box(tmp_path, portal, extra=f"""{SLOW_CLOUD}
trunks:
  - {{name: main, host: 127.0.0.1, port: {provider_port}, register: false, dids: ["{DID}"]}}
inbound: {{day: [{{ring: ["101"]}}]}}""", extensions='  - {number: "101", name: "Reception", password: "pw-101-secret"}\n'
                                                       '  - {number: "102", name: "Sales", password: "pw-102-secret"}')
    pbx = start_pbx(config)
    lab.port = pbx.sip_port
    for user, role in (("anna", "admin"), ("boris", "admin"), ("vera", "viewer")):
        portal.cli("add-user", "--org", "Acme", "--user", user, "--password", PASSWORD, "--role", role)
    try:
        yield portal, pbx, config, provider_port
    finally:
        lab.release_phones()
        pbx.stop()
        close_portal(portal)


def test_an_admin_adds_an_extension_in_russian_and_a_phone_registers_with_the_shown_password_within_seconds(office, lab):
    from playwright.sync_api import sync_playwright

    portal, pbx, config, _ = office
    SHOTS.mkdir(parents=True, exist_ok=True)
    # The box sends the config it runs at its first heartbeat: the configurator edits that.
    wait_until(lambda: versions(portal).get(1, {}).get("author") == "box", 20, "the box's own config", lab)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            anna = sign_in(browser, portal, "anna")
            anna.goto(f"{portal.url}/settings")
            anna.locator('[data-configure="acme-hq"]').click()
            anna.wait_for_url("**/settings/extensions?site=acme-hq")
            assert anna.locator('tr[data-extension="101"]').count() == 1
            form = anna.locator("form[data-form=add-extension]")
            form.locator('input[name="number"]').fill("105")
            form.locator('input[name="name"]').fill("Ольга Петрова")
            saved_at = time.monotonic()
            form.get_by_role("button", name="Добавить").click()
            anna.wait_for_load_state()
            password = anna.locator('output[data-new-password="105"]').inner_text().strip()
            assert re.fullmatch(r"[A-Za-z0-9_-]{16}", password), password
            assert anna.locator('tr[data-extension="105"]').count() == 1
            assert not english_words(russian_text(anna)), sorted(english_words(russian_text(anna)))
            anna.screenshot(path=str(SHOTS / "extensions-ru.png"), full_page=True)

            # The box pulls it at once (its heartbeat is a minute away) and applies it: the new
            # phone registers with the password the page showed.
            wait_until(lambda: versions(portal)[2]["state"] == "applied", 15, "version 2 applied on the box", lab)
            applied = time.monotonic() - saved_at
            phone = lab.phone("105", password, TONES["102"])
            assert phone.reg_code == 200
            live = time.monotonic() - saved_at
            print(f"\nsaved -> applied on the box {applied:.1f} s; -> phone 105 registered {live:.1f} s "
                  f"(heartbeat interval 60 s)")
            assert versions(portal)[2]["author"] == "anna"
            assert versions(portal)[2]["change"] == {"do": "add", "number": "105", "name": "Ольга Петрова"}
            text = config.read_text()
            assert "inbound: {day: [{ring: [\"101\"]}]}" in text  # the rest of the file as it was
            assert '  - {number: "105", name: "Ольга Петрова", password: ' in text

            # The page says the box applied it, in the audit list too.
            anna.goto(f"{portal.url}/settings/extensions?site=acme-hq")
            assert anna.locator("[data-config-state]").get_attribute("data-config-state") == "applied"
            assert anna.locator('tr[data-version="2"]').get_attribute("data-state") == "applied"
            assert "добавлен номер 105 (Ольга Петрова)" in anna.locator('tr[data-version="2"]').inner_text()

            # A change the box's own checks refuse (101 answers the day's calls) is shown and not saved.
            anna.locator('tr[data-extension="101"]').get_by_role("button", name="Удалить").click()
            anna.wait_for_load_state()
            refusal = anna.locator("[data-box-errors]").inner_text()
            assert "inbound.day: not an extension: 101" in refusal and "Ничего не сохранено" in refusal
            assert "Сценарий входящих звонков звонит на 101, а такого добавочного нет." in refusal
            assert set(versions(portal)) == {1, 2}

            # Two admins at once: Boris's page was made from version 2, Anna saves first; Boris is
            # told who saved what, his change is not saved, and Anna's stays.
            boris = sign_in(browser, portal, "boris")
            boris.goto(f"{portal.url}/settings/extensions?site=acme-hq")
            anna.locator('tr[data-extension="105"] input[name="name"]').fill("Ольга Сергеевна")
            anna.locator('tr[data-extension="105"]').get_by_role("button", name="Переименовать").click()
            anna.wait_for_load_state()
            assert anna.locator("[data-saved]").get_attribute("data-saved") == "3"
            boris_form = boris.locator("form[data-form=add-extension]")
            boris_form.locator('input[name="number"]').fill("106")
            boris_form.locator('input[name="name"]').fill("Борис")
            boris_form.get_by_role("button", name="Добавить").click()
            boris.wait_for_load_state()
            conflict = boris.locator("[data-conflict]")
            assert conflict.locator('[data-saved-by="anna"]').count() == 1
            assert "номер 105 переименован: Ольга Сергеевна" in conflict.inner_text()
            assert boris.locator('tr[data-extension="106"]').count() == 0 and set(versions(portal)) == {1, 2, 3}
            assert boris.locator('form[data-form=add-extension] input[name="number"]').input_value() == "106"
            boris.screenshot(path=str(SHOTS / "extensions-conflict-ru.png"), full_page=True)

            # Any earlier version in one step: version 2 again, so 105 is "Ольга Петрова" again.
            anna.goto(f"{portal.url}/settings/extensions?site=acme-hq")
            anna.locator('[data-restore="2"]').click()
            anna.wait_for_load_state()
            assert anna.locator("[data-saved]").get_attribute("data-saved") == "4"
            wait_until(lambda: versions(portal)[4]["state"] == "applied", 15, "version 4 applied", lab)
            assert '{number: "105", name: "Ольга Петрова"' in config.read_text()
            fresh = anna.context.new_page()  # the pending page may be refreshing itself right now
            fresh.goto(f"{portal.url}/settings/extensions?site=acme-hq")
            assert password not in fresh.content()  # a password is shown once, after its change
            fresh.close()

            # Pickup switched off on the features page: 0 then only gives the "nothing to pick up"
            # tone, while 102 keeps ringing.
            anna.get_by_role("navigation", name="Конфигуратор").get_by_role("link", name="Функции").click()
            anna.wait_for_url("**/settings/features?site=acme-hq")
            assert anna.locator('input[name="pickup"]').is_checked()
            anna.locator('input[name="pickup"]').uncheck()
            anna.get_by_role("button", name="Сохранить").click()
            anna.wait_for_load_state()
            assert anna.locator("[data-saved]").get_attribute("data-saved") == "5"
            assert not english_words(russian_text(anna)), sorted(english_words(russian_text(anna)))
            anna.screenshot(path=str(SHOTS / "features-ru.png"), full_page=True)
            wait_until(lambda: versions(portal)[5]["state"] == "applied", 15, "version 5 applied", lab)
            assert "pickup: false" in config.read_text()
            # The dial plan page tests a number with the box's own dial plan code.
            anna.get_by_role("navigation", name="Конфигуратор").get_by_role("link", name="План набора").click()
            test = anna.locator("form[data-form=dialplan-test]")
            test.locator('input[name="number"]').fill("8 916 123-45-67")
            test.locator('select[name="from"]').select_option("102")
            test.get_by_role("button", name="Проверить").click()
            anna.wait_for_load_state()
            result = anna.locator("[data-dial-result]")
            assert (result.get_attribute("data-class"), result.get_attribute("data-sends")) == ("mobile", "+79161234567")
            assert "мобильные" in result.inner_text()
            assert not english_words(russian_text(anna)), sorted(english_words(russian_text(anna)))
            anna.screenshot(path=str(SHOTS / "dialplan-ru.png"), full_page=True)
            caller, ringing = lab.phone("101", "pw-101-secret", TONES["101"]), lab.phone("102", "pw-102-secret", TONES["102"])
            ringing.answer = "never"
            call = caller.dial("102")
            lab.wait_for(lambda: ringing.calls and call.saw(pj.PJSIP_INV_STATE_EARLY), 10, "102 to ring")
            pick = phone.dial("0")
            lab.wait_for(lambda: pick.state == pj.PJSIP_INV_STATE_DISCONNECTED, 8, "the pickup attempt to end")
            lab.poll(0.2)
            assert has_tone(pick.record_path, 950) and has_tone(pick.record_path, 1400), "the special information tone"
            assert call.state == pj.PJSIP_INV_STATE_EARLY and "pickup is switched off" in pbx.log_text()
            call.hangup_now()
            lab.hang_up_everything()

            # A viewer reads the same page without a form, and a posted form changes nothing.
            vera = sign_in(browser, portal, "vera")
            vera.goto(f"{portal.url}/settings/extensions")
            assert vera.locator('tr[data-extension="105"]').count() == 1
            assert vera.locator("form[data-form=add-extension]").count() == 0
            assert vera.locator('tr[data-extension="105"] form').count() == 0
            csrf = vera.locator('header input[name="csrf"]').get_attribute("value")
            posted = vera.request.post(f"{portal.url}/settings/extensions",
                                       form={"csrf": csrf, "base": "5", "number": "107", "name": "Чужой"})
            assert posted.status == 403 and set(versions(portal)) == {1, 2, 3, 4, 5}
            vera.goto(f"{portal.url}/settings/features")
            assert vera.locator('form[data-form=features] button[type="submit"]').count() == 0
            assert vera.locator('input[name="pickup"]').is_disabled()
            vera.screenshot(path=str(SHOTS / "extensions-viewer-ru.png"), full_page=True)
        finally:
            browser.close()


GREETING_HZ = 2900.0  # the office's own greeting: a tone the box's standard spoken one lacks


def test_an_admin_uploads_an_mp3_greeting_and_a_ring_group_and_a_trunk_caller_hears_them(office, lab, tmp_path):
    """Incoming calls and one extension's page in Russian: an MP3 greeting converted by the portal,
    fetched by the box by its hash; a wrong hour shown beside its field; the day's ring group
    changed; 102's recording switched off and a desk phone with a key; then a call from the trunk
    hears that greeting, rings the new group and is not recorded."""
    from playwright.sync_api import sync_playwright

    portal, pbx, config, provider_port = office
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert lacks_tone(ROOT / "appliance" / "sounds" / "greeting.wav", GREETING_HZ)
    mp3 = tmp_path / "приветствие.mp3"
    subprocess.run(["sox", "-n", "-r", "44100", "-c", "2", str(mp3), "synth", "2", "sine", str(GREETING_HZ),
                    "gain", "-8"], check=True)
    not_sound = tmp_path / "greeting.mp3"
    not_sound.write_text("#!/bin/sh\necho this is a script, not a sound\n")
    wait_until(lambda: versions(portal).get(1, {}).get("author") == "box", 20, "the box's own config", lab)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            anna = sign_in(browser, portal, "anna")
            anna.goto(f"{portal.url}/settings/extensions?site=acme-hq")
            anna.get_by_role("navigation", name="Конфигуратор").get_by_role("link", name="Входящие звонки").click()
            anna.wait_for_url("**/settings/incoming?site=acme-hq")
            upload = anna.locator("form[data-form=sound][data-slot=greeting]")
            upload.locator('input[name="sound"]').set_input_files(str(not_sound))
            upload.get_by_role("button", name="Загрузить").click()
            anna.wait_for_load_state()
            assert "Это не файл WAV, MP3 или OGG." in anna.locator("#greeting-error").inner_text()
            assert set(versions(portal)) == {1}

            upload = anna.locator("form[data-form=sound][data-slot=greeting]")
            upload.locator('input[name="sound"]').set_input_files(str(mp3))
            uploaded_at = time.monotonic()
            upload.get_by_role("button", name="Загрузить").click()
            anna.wait_for_load_state()
            assert anna.locator("[data-saved]").get_attribute("data-saved") == "2"
            row = anna.locator('tr[data-sound-slot="greeting"]')
            sha = row.get_attribute("data-sound")
            played = anna.request.get(portal.url + row.locator("audio").get_attribute("src"))
            assert played.status == 200 and played.headers["content-type"] == "audio/wav"
            assert hashlib.sha256(played.body()).hexdigest() == sha and played.body()[:4] == b"RIFF"
            assert "приветствие.mp3" in row.inner_text()
            wait_until(lambda: versions(portal)[2]["state"] == "applied", 15, "the greeting applied on the box", lab)
            print(f"\nMP3 uploaded -> converted, fetched by the box, verified and applied: "
                  f"{time.monotonic() - uploaded_at:.1f} s (heartbeat interval 60 s)")
            assert f'greeting: "sha256:{sha}"' in config.read_text()
            stored = config.parent / "var" / "assets" / f"{sha}.wav"
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha

            # A wrong hour is shown beside its field, in Russian, and nothing is saved.
            anna = fresh(anna)
            anna.goto(f"{portal.url}/settings/incoming?site=acme-hq")
            anna.locator('input[name="hours-mon"]').fill("9-18")
            anna.locator("form[data-form=incoming]").get_by_role("button", name="Сохранить").click()
            anna.wait_for_load_state()
            assert "Запишите часы как 09:00-18:00" in anna.locator("#hours-mon-error").inner_text()
            assert anna.locator('input[name="hours-mon"]').input_value() == "9-18" and set(versions(portal)) == {1, 2}

            # By day, 102 answers instead of 101; one second to dial an extension after the greeting.
            anna.locator('input[name="hours-mon"]').fill("")
            anna.locator('input[name="digit_timeout"]').fill("1")
            anna.locator('input[name="day-0-ring-101"]').uncheck()
            anna.locator('input[name="day-0-ring-102"]').check()
            anna.locator("form[data-form=incoming]").get_by_role("button", name="Сначала показать изменения").click()
            anna.wait_for_load_state()
            diff = anna.locator("[data-preview] pre").inner_text()  # reviewed first: nothing saved yet
            assert '-inbound: {day: [{ring: ["101"]}], greeting' in diff and "digit_timeout: 1}" in diff, diff
            assert '{ring: ["102"]}' in diff and set(versions(portal)) == {1, 2}
            anna.screenshot(path=str(SHOTS / "incoming-review-ru.png"), full_page=True)
            anna.locator("[data-confirm]").click()
            anna.wait_for_load_state()
            assert anna.locator("[data-saved]").get_attribute("data-saved") == "3"
            assert not english_words(russian_text(anna)), sorted(english_words(russian_text(anna)))
            anna.screenshot(path=str(SHOTS / "incoming-ru.png"), full_page=True)
            wait_until(lambda: versions(portal)[3]["state"] == "applied", 15, "the scenario applied on the box", lab)
            assert versions(portal)[2]["change"]["do"] == "sound"

            # 102's own page: its calls are not recorded, it calls only extensions, it has a Yealink
            # whose first key shows 101's line.
            anna.get_by_role("navigation", name="Конфигуратор").get_by_role("link", name="Добавочные").click()
            anna.locator('[data-edit-extension="102"]').click()
            anna.wait_for_url("**/settings/extensions/102?site=acme-hq")
            form = anna.locator('form[data-form=extension]')
            form.locator('input[name="recording"]').uncheck()
            form.locator('select[name="permissions"]').select_option("internal")
            form.locator('input[name="phone_mac"]').fill("80:5E:C0:12:34:56")
            form.locator('select[name="phone_model"]').select_option("yealink:T46U")
            form.get_by_role("button", name="Сохранить").click()
            anna.wait_for_load_state()
            assert anna.locator("[data-saved]").get_attribute("data-saved") == "4"
            wait_until(lambda: versions(portal)[4]["state"] == "applied", 15, "102's settings applied", lab)
            anna = fresh(anna)
            anna.goto(f"{portal.url}/settings/extensions/102?site=acme-hq")
            assert "(у этой модели их 27)" in anna.locator("caption").inner_text()
            anna.locator('select[name="key-0-type"]').select_option("blf")
            anna.locator('input[name="key-0-value"]').fill("101")
            anna.locator('input[name="key-0-label"]').fill("Ресепшн")
            anna.locator("form[data-form=extension]").get_by_role("button", name="Сохранить").click()
            anna.wait_for_load_state()
            assert anna.locator("[data-saved]").get_attribute("data-saved") == "5"
            assert anna.locator('input[name="key-0-value"]').input_value() == "101"
            assert not english_words(russian_text(anna)), sorted(english_words(russian_text(anna)))
            anna.screenshot(path=str(SHOTS / "extension-ru.png"), full_page=True)
            wait_until(lambda: versions(portal)[5]["state"] == "applied", 15, "102's phone key applied", lab)
            line = next(x for x in config.read_text().splitlines() if 'number: "102"' in x)
            assert "recording: false" in line and 'permissions: "internal"' in line and '"blf"' in line, line

            # A viewer hears the greeting but is offered no upload, and a posted one is refused.
            vera = sign_in(browser, portal, "vera")
            vera.goto(f"{portal.url}/settings/incoming")
            assert vera.locator("form[data-form=sound]").count() == 0
            assert vera.locator('tr[data-sound-slot="greeting"] audio').count() == 1
            csrf = vera.locator('header input[name="csrf"]').get_attribute("value")
            posted = vera.request.post(f"{portal.url}/settings/incoming/sound", multipart={
                "csrf": csrf, "base": "5", "slot": "greeting",
                "sound": {"name": "x.mp3", "mimeType": "audio/mpeg", "buffer": mp3.read_bytes()}})
            assert posted.status == 403 and set(versions(portal)) == {1, 2, 3, 4, 5}

            # The provider's operator changes the trunk; the office reads it without its password.
            portal.cli("add-user", "--user", "olga", "--password", PASSWORD, "--role", "operator")
            olga = sign_in(browser, portal, "olga", "**/fleet")
            olga.goto(f"{portal.url}/fleet/acme-hq/trunks")
            trunk = olga.locator('form[data-form=trunk][data-trunk="main"]')
            trunk.locator('input[name="caller_id"]').fill("+7 831 200-00-00")
            trunk.locator('input[name="password"]').fill("Pw-provider-1")
            trunk.locator('textarea[name="dids"]').fill(f"{DID}\n78312000001")
            trunk.get_by_role("button", name="Сохранить").click()
            olga.wait_for_load_state()
            assert olga.locator("[data-saved]").get_attribute("data-saved") == "6"
            assert "Pw-provider-1" not in olga.content()
            assert not english_words(russian_text(olga)), sorted(english_words(russian_text(olga)))
            olga.screenshot(path=str(SHOTS / "trunks-ru.png"), full_page=True)
            wait_until(lambda: versions(portal)[6]["state"] == "applied", 15, "the trunk applied on the box", lab)
            line = next(x for x in config.read_text().splitlines() if "name: main" in x)
            assert 'caller_id: "+78312000000"' in line and '"78312000001"' in line and "Pw-provider-1" in line
            anna = fresh(anna)
            anna.goto(f"{portal.url}/settings/trunks?site=acme-hq")
            assert anna.locator('form[data-form=trunk][data-trunk="main"] input[name="host"]').is_disabled()
            assert "Pw-provider-1" not in anna.content() and anna.locator("form[data-form=add-trunk]").count() == 0
            csrf = anna.locator('header input[name="csrf"]').get_attribute("value")
            posted = anna.request.post(f"{portal.url}/settings/dialling-area",
                                       form={"csrf": csrf, "base": "6", "site": "acme-hq", "country": "RU", "area_code": "831"})
            assert posted.status == 403 and set(versions(portal)) == {1, 2, 3, 4, 5, 6}

            # Where the provider allows it, the office's admin sets the dialling area herself.
            olga.goto(f"{portal.url}/fleet/acme-hq/trunks")
            olga.locator('form[data-form=office-trunks] input[name="office_edits_trunks"]').check()
            olga.locator("form[data-form=office-trunks]").get_by_role("button", name="Сохранить").click()
            olga.wait_for_load_state()
            assert olga.locator("[data-office-trunks-saved]").count() == 1
            anna.goto(f"{portal.url}/settings/trunks?site=acme-hq")
            anna.locator('form[data-form=dialling-area] input[name="area_code"]').fill("831")
            anna.locator("form[data-form=dialling-area]").get_by_role("button", name="Сохранить").click()
            anna.wait_for_load_state()
            assert anna.locator("[data-saved]").get_attribute("data-saved") == "7"
            assert versions(portal)[7]["author"] == "anna"
            wait_until(lambda: versions(portal)[7]["state"] == "applied", 15, "the dialling area applied", lab)
        finally:
            browser.close()

    answering = lab.phone("102", "pw-102-secret", TONES["102"])
    transport_config = pj.TransportConfig()
    transport_config.port, transport_config.boundAddress = provider_port, "127.0.0.1"
    transport = lab.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport_config)
    try:
        caller = OutsideCaller(lab, transport)
        lab.phones.append(caller)
        call = caller.dial(DID)
        lab.wait_for(lambda: answering.calls and answering.last_call.state == pj.PJSIP_INV_STATE_CONFIRMED, 20,
                     "102 to answer after the office's greeting")
        lab.poll(2.0)
        call.hangup_now()
        lab.wait_for(lambda: answering.last_call.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "hang-up")
        assert has_tone(call.record_path, GREETING_HZ), "the caller did not hear the uploaded greeting"
        assert has_tone(call.record_path, TONES["102"])
        record = pbx.wait_cdr(lambda r: r["direction"] == "inbound" and r["ended_at"])
        assert record["answered_by"] == "102" and not record["recording"]  # 102's calls are not recorded
    finally:
        lab.release_phones()
        lab.ep.transportClose(transport)
