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


def curl(url: str, *args: str) -> bytes:
    out = subprocess.run(["curl", "-s", "-S", "--fail", "--max-time", "30", *args, url], capture_output=True, timeout=40)
    assert out.returncode == 0, out.stderr
    return out.stdout


def firmware_url(text: str, key: str) -> str:
    line = next(l for l in text.splitlines() if l.startswith(key))
    return line.split(":", 1)[1].strip() if key.startswith("Firmware Url") else line.split("=", 1)[1].strip()


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
        yealink_common = curl(f"{http}/y000000000108.cfg").decode()
        url = firmware_url(yealink_common, "static.firmware.url")
        assert url.endswith("/firmware/yealink-T46U-108.86.0.70.rom")
        assert hashlib.sha256(curl(url)).hexdigest() == sha["T46U-108.86.0.70.rom"]  # as a Yealink fetches it
        fanvil_common = curl(f"{http}/f0x4uhw1.100.cfg").decode()
        fanvil_url = firmware_url(fanvil_common, "Firmware Url")
        name = fanvil_url.rsplit("/", 1)[1]
        over_tftp = curl(f"tftp://127.0.0.1:{ports}/firmware/{name}")  # a Fanvil may use TFTP
        assert hashlib.sha256(over_tftp).hexdigest() == sha["x4u-2.12.1.z"]

        portal.cli("add-user", "--user", "olga", "--password", PASSWORD, "--role", "operator")
        olga, _ = signed_in(portal, "olga")
        page = olga.get(f"{portal.url}/fleet/acme-hq", timeout=10).text
        assert 'data-firmware-pin="yealink/T46U"' in page and "108.86.0.70" in page

        portal.cli("firmware", "unpin", "--vendor", "fanvil", "--model", "X4U")
        deadline = time.monotonic() + 20
        while (pbx.data_dir / "firmware-cache" / name).exists():
            assert time.monotonic() < deadline, "an unpinned file stayed on the box"
            time.sleep(0.3)
        assert "Firmware Url" not in curl(f"{http}/f0x4uhw1.100.cfg").decode()

        pbx.stop()
        portal.stop()  # the portal out of reach: the box's cache still serves after its restart
        pbx = start_pbx(config)
        url = firmware_url(curl(f"{http}/y000000000108.cfg").decode(), "static.firmware.url")
        assert hashlib.sha256(curl(url)).hexdigest() == sha["T46U-108.86.0.70.rom"]
        print(f"\ntwo pinned files ({(9 << 20 | 12345) + (3 << 20) >> 20} MB) cached {cached_after:.1f} s after the "
              "pins, the box's start included")
    finally:
        if pbx:
            pbx.stop()
        portal.stop()
        drop_database(portal.database_url)
