"""Phone firmware from the portal (issue 27), on PostgreSQL: an operator adds two versions of a
Yealink T46U's firmware and one of a Fanvil X4U's, pins one T46U version for the fleet and the
other for the site (the site's wins); the box fetches the pinned files into its cache in 4 MiB
steps, checked by SHA-256, and its templates point the phones at them; simulated phones of both
vendors fetch their firmware as theirs would (over HTTP and TFTP, byte for byte the uploaded
file); the site page shows the pins; an unpinned file leaves the box; and the cache serves after
the box restarts with the portal out of reach."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time

from conftest import free_port_block, start_pbx
from portal_lab import FAST_CLOUD, Portal, drop_database, enrolled_box, new_database
from test_portal_web import PASSWORD, signed_in

EXTENSIONS = ('  - {number: "101", name: "Anna", password: "pw-101-secret", '
              'phone: {mac: "80:5E:C0:11:22:33", vendor: yealink, model: T46U}}\n'
              '  - {number: "106", name: "Fedor", password: "pw-106-secret", '
              'phone: {mac: "0c383e778899", vendor: fanvil, model: X4U}}')


def curl(url: str, *args: str, check: bool = True) -> bytes | None:
    """The body, or None when the server said no (with check=False)."""
    out = subprocess.run(["curl", "-s", "-S", "--fail", "--max-time", "30", *args, url], capture_output=True, timeout=40)
    assert out.returncode == 0 or not check, out.stderr
    return out.stdout if out.returncode == 0 else None


def test_pinned_firmware_reaches_the_box_cache_and_the_phones(tmp_path):
    portal = Portal(tmp_path / "portal", new_database())
    portal.start()
    pbx = None
    files = {}
    for name, size in (("T46U-108.86.0.60.rom", 5 << 20), ("T46U-108.86.0.70.rom", 9 << 20 | 12345),
                       ("x4u-2.12.1.z", 3 << 20)):
        files[name] = tmp_path / name
        files[name].write_bytes(os.urandom(size))
    sha = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    try:
        for name, vendor, model, version in (("T46U-108.86.0.60.rom", "yealink", "T46U", "108.86.0.60"),
                                             ("T46U-108.86.0.70.rom", "yealink", "T46U", "108.86.0.70"),
                                             ("x4u-2.12.1.z", "fanvil", "X4U", "2.12.1")):
            added = portal.cli("firmware", "add", str(files[name]), "--vendor", vendor, "--model", model,
                               "--version", version)
            assert sha[name] in added.stdout
        again = portal.cli("firmware", "add", str(files["x4u-2.12.1.z"]), "--vendor", "fanvil", "--model", "X4U",
                           "--version", "2.12.1", check=False)
        assert again.returncode == 2 and "there already" in again.stderr
        ports = free_port_block(2)
        config = enrolled_box(tmp_path, portal, extra=FAST_CLOUD + f"\nprovisioning: {{tftp_port: {ports}, "
                              f"http_port: {ports + 1}, https_port: 0}}", extensions=EXTENSIONS)
        portal.cli("firmware", "pin", "--vendor", "yealink", "--model", "T46U", "--version", "108.86.0.60")
        portal.cli("firmware", "pin", "--vendor", "yealink", "--model", "T46U", "--version", "108.86.0.70",
                   "--site", "acme-hq")
        portal.cli("firmware", "pin", "--vendor", "fanvil", "--model", "X4U", "--version", "2.12.1")
        pinned_at = time.monotonic()
        pbx = start_pbx(config)
        pins_file = pbx.data_dir / "firmware-cache" / "pins.json"
        deadline = time.monotonic() + 60
        while not (pins_file.exists() and len(json.loads(pins_file.read_text())) == 2):
            assert time.monotonic() < deadline, (pbx.data_dir / "log" / "cloud.log").read_text()[-2000:]
            time.sleep(0.3)
        cached_after = time.monotonic() - pinned_at
        pins = json.loads(pins_file.read_text())
        assert pins["yealink/T46U"]["version"] == "108.86.0.70"  # the site's pin over the fleet's
        cloud_log = (pbx.data_dir / "log" / "cloud.log").read_text()
        assert "firmware yealink T46U 108.86.0.70 cached" in cloud_log

        http = f"http://127.0.0.1:{ports + 1}"
        # The files are served by the names the phones are told, over HTTP (a Yealink) and TFTP (a
        # Fanvil may); which phone is told, and when, is the upgrade waves' (the next test).
        yealink = curl(f"{http}/firmware/yealink-T46U-108.86.0.70.rom")
        assert hashlib.sha256(yealink).hexdigest() == sha["T46U-108.86.0.70.rom"]
        name = "fanvil-X4U-2.12.1.z"
        over_tftp = curl(f"tftp://127.0.0.1:{ports}/firmware/{name}")
        assert hashlib.sha256(over_tftp).hexdigest() == sha["x4u-2.12.1.z"]
        assert "firmware.url" not in curl(f"{http}/y000000000108.cfg").decode()  # never every phone of a model at once

        portal.cli("add-user", "--user", "olga", "--password", PASSWORD, "--role", "operator")
        olga, _ = signed_in(portal, "olga")
        page = olga.get(f"{portal.url}/fleet/acme-hq", timeout=10).text
        assert 'data-firmware-pin="yealink/T46U"' in page and "108.86.0.70" in page

        portal.cli("firmware", "unpin", "--vendor", "fanvil", "--model", "X4U")
        deadline = time.monotonic() + 20
        while (pbx.data_dir / "firmware-cache" / name).exists():
            assert time.monotonic() < deadline, "an unpinned file stayed on the box"
            time.sleep(0.3)
        assert curl(f"{http}/firmware/{name}", check=False) is None

        pbx.stop()
        portal.stop()  # the portal out of reach: the box's cache still serves after its restart
        pbx = start_pbx(config)
        assert hashlib.sha256(curl(f"{http}/firmware/yealink-T46U-108.86.0.70.rom")).hexdigest() == \
            sha["T46U-108.86.0.70.rom"]
        print(f"\ntwo pinned files ({(9 << 20 | 12345) + (3 << 20) >> 20} MB) cached {cached_after:.1f} s after the "
              "pins, the box's start included")
    finally:
        if pbx:
            pbx.stop()
        portal.stop()
        drop_database(portal.database_url)


def test_phones_upgrade_in_waves_and_a_phone_that_does_not_come_back_stops_the_site(tmp_path):
    """Two simulated Yealink T46U phones registered on 108.86.0.60 (SIPp, with the User-Agent a
    T46U sends); 108.86.0.70 pinned; one phone a wave: the first is told of the file in its own
    provisioning file, fetches it and registers again on the new version; then the second is told,
    and never comes back: after the deadline the site's upgrades stop and the portal raises an
    alarm; pinning again lets them go on."""
    from sipp import run_sipp

    portal = Portal(tmp_path / "portal", new_database())
    portal.start()
    pbx = None
    rom = tmp_path / "T46U-108.86.0.70.rom"
    rom.write_bytes(os.urandom(2 << 20))
    macs = {"101": "805ec0112233", "102": "805ec0445566"}
    old_ua, new_ua = "Yealink SIP-T46U 108.86.0.60 {mac}", "Yealink SIP-T46U 108.86.0.70 {mac}"
    try:
        portal.cli("firmware", "add", str(rom), "--vendor", "yealink", "--model", "T46U", "--version", "108.86.0.70")
        ports = free_port_block(2)
        extensions = "\n".join(f'  - {{number: "{n}", name: "Phone {n}", password: "pw-{n}-secret", '
                               f'phone: {{mac: "{mac}", vendor: yealink, model: T46U}}}}' for n, mac in macs.items())
        config = enrolled_box(tmp_path, portal, extensions=extensions, extra=FAST_CLOUD + (
            f"\nprovisioning: {{tftp_port: 0, http_port: {ports + 1}, https_port: 0, firmware_window: '00:00-24:00', "
            "firmware_wave: 1, firmware_deadline_seconds: 12}"))
        pbx = start_pbx(config)
        http = f"http://127.0.0.1:{ports + 1}"
        secrets = json.loads((pbx.data_dir / "device-credentials.json").read_text())

        def register(number: str, agent: str) -> None:
            done = run_sipp("register.xml", tmp_path, pbx.sip_port, service=number, user=number,
                            password=f"pw-{number}-secret", fill={"AGENT": agent.format(mac=macs[number])})
            assert done.returncode == 0, done.output

        def own_file(number: str) -> str:
            mac = macs[number]
            return curl(f"{http}/{mac}.cfg", "-u", f"{mac}:{secrets[mac]['http']}").decode()

        def state() -> dict:
            path = pbx.data_dir / "firmware-cache" / "upgrades.json"
            return json.loads(path.read_text()) if path.exists() else {"phones": {}, "halted": None}

        def wait(predicate, what: str, timeout: float = 40) -> None:
            deadline = time.monotonic() + timeout
            while not predicate():
                assert time.monotonic() < deadline, f"{what}: {state()}"
                time.sleep(0.3)

        for number in macs:
            register(number, old_ua)
        portal.cli("firmware", "pin", "--vendor", "yealink", "--model", "T46U", "--version", "108.86.0.70",
                   "--site", "acme-hq")
        wait(lambda: any(u["state"] == "upgrading" for u in state()["phones"].values()), "the first wave")
        first = next(mac for mac, u in state()["phones"].items() if u["state"] == "upgrading")
        first_number = next(n for n, m in macs.items() if m == first)
        second_number = next(n for n in macs if n != first_number)
        told = own_file(first_number)
        assert "static.firmware.url = " in told and "static.firmware.url" not in own_file(second_number)
        url = next(l for l in told.splitlines() if l.startswith("static.firmware.url")).split("=", 1)[1].strip()
        assert hashlib.sha256(curl(url)).hexdigest() == hashlib.sha256(rom.read_bytes()).hexdigest()
        register(first_number, new_ua)  # the phone rebooted on its new firmware
        wait(lambda: state()["phones"].get(first, {}).get("state") == "done", "the first phone done")
        wait(lambda: state()["phones"].get(macs[second_number], {}).get("state") == "upgrading", "the second wave")
        assert "static.firmware.url = " in own_file(second_number)
        stopped_at = time.monotonic()
        wait(lambda: state()["halted"] is not None, "the site's upgrades to stop")  # it never came back
        assert state()["phones"][macs[second_number]]["state"] == "failed"

        portal.cli("add-user", "--user", "olga", "--password", PASSWORD, "--role", "operator")
        olga, _ = signed_in(portal, "olga")
        deadline = time.monotonic() + 20
        while "phone upgrades stopped" not in (page := olga.get(f"{portal.url}/fleet/acme-hq", timeout=10).text):
            assert time.monotonic() < deadline, "no alarm on the site's page"
            time.sleep(0.5)
        assert f"phone {macs[second_number]} (extension {second_number})" in page

        portal.cli("firmware", "pin", "--vendor", "yealink", "--model", "T46U", "--version", "108.86.0.70",
                   "--site", "acme-hq")  # the operator looked, and goes on
        wait(lambda: state()["halted"] is None, "the upgrades to go on")
        print(f"\nwaves of 1: the second phone's upgrade stopped the site {time.monotonic() - stopped_at:.1f} s "
              "before the operator pinned again (deadline 12 s)")
    finally:
        if pbx:
            pbx.stop()
        portal.stop()
        drop_database(portal.database_url)
