"""A dead box replaced with one code and no phone touched (issue 24), on PostgreSQL: the box
backs itself up to the portal on its own, its data folder is deleted, a new box with a first-boot
config is enrolled with a replacement code and started, and the old office comes back: the pjsua2
phones register with the passwords the dead box generated and call each other with audio, the
simulated Yealink / Grandstream / Snom fetches pass with their old per-device credentials, the
old box's credential gets 401, and a dump of the portal's database holds none of those secrets.
An operator's download of a backup, re-encrypted with a passphrase, restores offline too."""
from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pjsua2 as pj

from audio import has_tone
from conftest import EDGEPBX, ROOT, TONES, free_port_block, start_pbx, write_office
from portal_lab import FAST_CLOUD, Portal, drop_database, enroll, new_database
from test_portal_web import PASSWORD, signed_in

# Three simulated desk phones (the provisioning tests' fetches) and two pjsua2 phones whose
# passwords the box generates (no `password:` in the config: only the box knows them).
DESK = [("103", "yealink", "80:5E:C0:11:22:33", "T46U", "805ec0112233", "805ec0112233.cfg"),
        ("104", "grandstream", "000b82-aabbcc", "GXP2170", "000b82aabbcc", "cfg000b82aabbcc.xml"),
        ("105", "snom", "00-04-13-44-55-66", "D785", "000413445566", "snomD785-000413445566.htm")]
TRUNK_PASSWORD = "trunk-Secret-7731"


def extensions_yaml() -> str:
    return "\n".join(['  - {number: "101", name: "Anna"}', '  - {number: "102", name: "Boris"}'] + [
        f'  - {{number: "{n}", name: "Desk {n}", phone: {{mac: "{mac}", vendor: {v}, model: {m}}}}}'
        for n, v, mac, m, _, _ in DESK])


def passwords_of(config) -> dict[str, str]:
    out = subprocess.run(EDGEPBX + ["extensions", "--json", "--config", str(config)], capture_output=True, text=True,
                         cwd=ROOT, timeout=30, check=True)
    return {e["number"]: e["password"] for e in json.loads(out.stdout)}


def fetch(port: int, name: str, user: str, password: str) -> tuple[int, bytes]:
    out = subprocess.run(["curl", "-s", "-S", "--max-time", "10", "-u", f"{user}:{password}", "-w", "\n%{http_code}",
                          f"http://127.0.0.1:{port}/{name}"], capture_output=True, timeout=20)
    body, _, code = out.stdout.rpartition(b"\n")
    return int(code or 0), body


def wait_fetch_ok(port: int, name: str, user: str, password: str) -> bytes:
    end = time.monotonic() + 20
    while time.monotonic() < end:
        code, body = fetch(port, name, user, password)
        if code == 200:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{name} not served to {user} within 20 s (last {code})")


def backup_state(data_dir) -> dict:
    path = data_dir / "backup-state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def wait_backup(data_dir, newer_than: int | None, timeout: float = 15.0) -> tuple[dict, float]:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = backup_state(data_dir)
        if state.get("id") and state["id"] != newer_than:
            return state, time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"no new backup within {timeout} s: {backup_state(data_dir)}")


def talk_with_audio(lab, a, b) -> None:
    call = a.dial(b.number)
    lab.wait_for(lambda: call.state == pj.PJSIP_INV_STATE_CONFIRMED, 10, f"{b.number} to answer")
    lab.poll(3.0)
    theirs = b.last_call
    call.hangup_now()
    lab.wait_for(lambda: theirs.state == pj.PJSIP_INV_STATE_DISCONNECTED, 5, "the call to end")
    assert has_tone(call.record_path, TONES[b.number]) and has_tone(theirs.record_path, TONES[a.number])


def portal_status(portal, credential: str) -> int:
    request = urllib.request.Request(f"{portal.url}/api/v1/config", headers={"Authorization": f"Bearer {credential}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_dead_box_is_replaced_with_one_code_and_no_phone_touched(tmp_path, lab):
    portal = Portal(tmp_path / "portal", new_database())
    portal.start()
    pbx = None
    try:
        http_port = free_port_block(2)
        office = (f"{FAST_CLOUD}\nprovisioning: {{tftp_port: 0, http_port: {http_port}, https_port: 0}}\n"
                  f"trunks:\n  - {{name: main, host: 127.0.0.1, port: 5999, username: '8312000000', "
                  f"password: '{TRUNK_PASSWORD}', register: false}}")
        (tmp_path / "old").mkdir()
        config = write_office(tmp_path / "old", office, extensions=extensions_yaml())
        assert enroll(config, portal, portal.add_site("Acme", "acme-hq")).returncode == 0
        started = time.monotonic()
        pbx = start_pbx(config)
        first, _ = wait_backup(pbx.data_dir, None, timeout=30)
        first_after = time.monotonic() - started  # from the box's start, its services' start included
        passwords = passwords_of(config)
        device = json.loads((pbx.data_dir / "device-credentials.json").read_text())
        lab.port = pbx.sip_port
        a, b = lab.phone("101", passwords["101"], TONES["101"]), lab.phone("102", passwords["102"], TONES["102"])
        assert a.reg_code == 200 and b.reg_code == 200
        files = {mac: wait_fetch_ok(http_port, name, mac, device[mac]["http"]) for _, _, _, _, mac, name in DESK}
        lab.release_phones()
        del a, b  # freed now: a pjsua2 account freed later would take the reused account id with it

        # A change on site (an installer renames an extension): backed up again within seconds.
        config.write_text(config.read_text().replace('name: "Anna"', 'name: "Anna K."'))
        changed, change_after = wait_backup(pbx.data_dir, first["id"])
        old_credential = json.loads((pbx.data_dir / "cloud.json").read_text())["credential"]
        pbx.stop()
        pbx = None
        shutil.rmtree(tmp_path / "old")  # the card is dead

        new = tmp_path / "new"
        new.mkdir()
        first_boot = new / "office.yaml"
        first_boot.write_text('site: {name: "edgepbx"}\ndata_dir: ./var\ncloud: {allow_http: true}\nextensions: []\n')
        replaced_at = time.monotonic()
        enrolled = enroll(first_boot, portal, portal.add_site("Acme", "acme-hq"))
        assert enrolled.returncode == 0, enrolled.stderr
        assert "restored 5 extensions" in enrolled.stdout, enrolled.stdout
        assert portal_status(portal, old_credential) == 401  # a stolen old box reads no config any more
        assert passwords_of(first_boot) == passwords
        assert 'name: "Anna K."' in first_boot.read_text()  # the newest backup, with the on-site change

        pbx = start_pbx(first_boot)
        lab.port = pbx.sip_port
        a, b = lab.phone("101", passwords["101"], TONES["101"]), lab.phone("102", passwords["102"], TONES["102"])
        assert a.reg_code == 200 and b.reg_code == 200  # the phones were not touched
        talk_with_audio(lab, a, b)
        first_call = time.monotonic() - replaced_at
        for number, _, _, _, mac, name in DESK:
            served = wait_fetch_ok(http_port, name, mac, device[mac]["http"])  # its old credentials
            assert passwords[number].encode() in served and served.replace(b"Anna K.", b"Anna") == files[mac]
        lab.release_phones()
        # The replacement does not send the portal's newest backup back as a new one.
        time.sleep(3)
        assert backup_state(pbx.data_dir)["id"] == changed["id"]

        dump = subprocess.run(["pg_dump", "--data-only", portal.database_url], capture_output=True, timeout=60)
        assert dump.returncode == 0, dump.stderr
        secrets = list(passwords.values()) + [d["http"] for d in device.values()] + [d["admin"] for d in device.values()]
        for secret in secrets + [TRUNK_PASSWORD, "PRIVATE KEY"]:
            assert secret.encode() not in dump.stdout, "a secret in clear in the portal's database"

        # An operator takes a backup away for a box with no internet, under a passphrase.
        portal.cli("add-user", "--user", "olga", "--password", PASSWORD, "--role", "operator")
        browser, _ = signed_in(portal, "olga")
        page = browser.get(f"{portal.url}/fleet/acme-hq", timeout=10).text
        assert f'data-backup="{changed["id"]}"' in page and f'data-backup="{first["id"]}"' in page
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        short = browser.post(f"{portal.url}/fleet/acme-hq/backups/{changed['id']}",
                             data={"csrf": csrf, "passphrase": "short"}, timeout=10)
        assert short.status_code == 422 and "at least 10 characters" in short.text
        taken = browser.post(f"{portal.url}/fleet/acme-hq/backups/{changed['id']}",
                             data={"csrf": csrf, "passphrase": "a long usb passphrase"}, timeout=10)
        assert taken.status_code == 200 and "attachment" in taken.headers["content-disposition"]
        usb = tmp_path / "usb.edgepbx-backup"
        usb.write_bytes(taken.content)
        offline = tmp_path / "offline"
        offline.mkdir()
        (offline / "office.yaml").write_text('site: {name: "edgepbx"}\ndata_dir: ./var\nextensions: []\n')
        put = subprocess.run(EDGEPBX + ["restore", "--config", str(offline / "office.yaml"), str(usb)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin", "EDGEPBX_BACKUP_PASSPHRASE": "a long usb passphrase"})
        assert put.returncode == 0, put.stderr
        assert passwords_of(offline / "office.yaml") == passwords
        print(f"\nfirst backup {first_after:.1f} s after the box's start; after a change {change_after:.1f} s; "
              f"replacement: enrol to the first call with audio {first_call:.1f} s")
    finally:
        lab.release_phones()
        if pbx:
            pbx.stop()
        portal.stop()
        drop_database(portal.database_url)
