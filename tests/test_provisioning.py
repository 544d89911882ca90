"""Phone provisioning served by the running appliance, fetched with real clients: curl over TFTP,
HTTP and HTTPS, and tftp-hpa."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time

import pytest

from conftest import EDGEPBX, ROOT, free_port_block, start_pbx, write_office
from provisioning_cases import PHONES, phones_yaml

FIRMWARE_SIZE = 6 * 1024 * 1024


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    directory = tmp_path_factory.mktemp("prov")
    firmware = directory / "firmware"
    firmware.mkdir()
    (firmware / "T46U.rom").write_bytes(os.urandom(FIRMWARE_SIZE))
    (firmware / "sip.ld").write_bytes(os.urandom(256 * 1024))  # Poly VVX
    base = free_port_block(40)
    extra = (f"provisioning: {{tftp_port: {base + 30}, http_port: {base + 31}, https_port: {base + 32}, "
             f"firmware_dir: ./firmware}}")
    pbx = start_pbx(write_office(directory, extra=extra, extensions=phones_yaml()))
    pbx.tftp, pbx.http, pbx.https = base + 30, base + 31, base + 32
    pbx.firmware = firmware / "T46U.rom"
    wait_http(pbx.http)
    yield pbx
    pbx.stop()


def wait_http(port: int, host: str = "127.0.0.1") -> None:
    end = time.monotonic() + 15
    while time.monotonic() < end:
        if curl(f"http://{host}:{port}/none").returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError("provisioning HTTP server did not come up")


def curl(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-s", "-S", "--max-time", "20", *args, url], capture_output=True, timeout=30)


def http_status(url: str, *args: str) -> int:
    out = curl(url, "-o", "/dev/null", "-w", "%{http_code}", *args)
    return int(out.stdout or 0)


def password_of(pbx, number: str) -> str:
    out = subprocess.run(EDGEPBX + ["extensions", "--config", str(pbx.config), "--json"], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return next(e["password"] for e in json.loads(out.stdout) if e["number"] == number)


@pytest.mark.parametrize("case", PHONES, ids=[c.vendor for c in PHONES])
def test_each_vendor_gets_its_files_by_their_own_names_over_tftp(office, case):
    result = curl(f"tftp://127.0.0.1:{office.tftp}/{case.device_file}", "--tftp-blksize", "1024")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert password_of(office, case.number) in text
    colleague = "102" if case.number != "102" else "101"
    assert colleague in text.replace(case.number, "")  # a colleague's BLF key
    common = curl(f"tftp://127.0.0.1:{office.tftp}/{case.common_file}")
    assert common.returncode == 0 and common.stdout
    assert password_of(office, case.number).encode() not in common.stdout  # common files hold no secrets


def test_tftp_hpa_client_fetches_a_per_mac_file(office, tmp_path):
    target = tmp_path / "got.cfg"
    result = subprocess.run(["tftp", "127.0.0.1", str(office.tftp), "-m", "binary", "-c", "get",
                             "805ec0112233.cfg", str(target)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and target.exists(), result.stdout + result.stderr
    assert "account.1.dtmf.type = 1" in target.read_text()


def test_firmware_over_tftp_with_blksize_and_tsize_arrives_intact(office, tmp_path):
    target = tmp_path / "fw.rom"
    started = time.monotonic()
    result = curl(f"tftp://127.0.0.1:{office.tftp}/firmware/T46U.rom", "--tftp-blksize", "1428", "-o", str(target))
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(office.firmware.read_bytes()).digest()
    assert took < 20


def test_unknown_mac_gets_not_found_and_no_secrets(office):
    result = curl(f"tftp://127.0.0.1:{office.tftp}/805ec0999999.cfg")
    assert result.returncode == 68  # curl: TFTP file not found
    assert http_status(f"http://127.0.0.1:{office.http}/805ec0999999.cfg") == 404
    assert http_status(f"http://127.0.0.1:{office.http}/../../etc/passwd", "--path-as-is") == 404


def test_http_and_https_serve_the_same_files(office):
    over_tftp = curl(f"tftp://127.0.0.1:{office.tftp}/cfg000b82aabbcc.xml").stdout
    over_http = curl(f"http://127.0.0.1:{office.http}/cfg000b82aabbcc.xml").stdout
    over_https = curl(f"https://127.0.0.1:{office.https}/cfg000b82aabbcc.xml", "-k").stdout
    assert over_tftp == over_http == over_https and b"<P34>" in over_http


def test_http_credentials_are_checked_per_device(office):
    secrets_file = office.data_dir / "device-credentials.json"
    secrets = json.loads(secrets_file.read_text())
    mac = "805ec0112233"
    url = f"http://127.0.0.1:{office.http}/{mac}.cfg"
    assert http_status(url, "-u", f"{mac}:{secrets[mac]['http']}") == 200
    assert http_status(url, "-u", f"{mac}:wrong") == 401
    assert http_status(url, "-u", f"805ec0aaaaaa:{secrets[mac]['http']}") == 401  # another device's name
    assert secrets_file.stat().st_mode & 0o077 == 0


def test_devices_shows_the_last_fetch(office):
    curl(f"http://127.0.0.1:{office.http}/0c383e778899.cfg", "-A", "Fanvil X4U 2.4.1")
    out = subprocess.run(EDGEPBX + ["devices", "--config", str(office.config), "--json"], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    rows = {r["mac"]: r for r in json.loads(out.stdout)}
    fanvil = rows["0c383e778899"]
    assert fanvil["vendor"] == "fanvil" and fanvil["model"] == "X4U" and fanvil["extension"] == "106"
    assert fanvil["last_fetch"]["protocol"] == "http" and fanvil["last_fetch"]["file"] == "/0c383e778899.cfg"
    assert fanvil["registered"] is False


def test_devices_shows_which_phones_are_registered_and_their_user_agent(office, tmp_path):
    from sipp import run_sipp

    result = run_sipp("register.xml", tmp_path, office.sip_port, service="101", user="101", password="pw-101-secret")
    assert result.returncode == 0, result.output
    out = subprocess.run(EDGEPBX + ["devices", "--config", str(office.config), "--json"], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    rows = {r["mac"]: r for r in json.loads(out.stdout)}
    assert rows["805ec0112233"]["registered"] is True
    assert rows["805ec0112233"]["user_agent"] == "SIPp register test"
    assert rows["000b82aabbcc"]["registered"] is False


def test_the_common_file_points_at_firmware_only_when_the_firmware_folder_has_it(office):
    with_firmware = curl(f"http://127.0.0.1:{office.http}/y000000000108.cfg").stdout.decode()   # T46U: has a .rom
    without = curl(f"http://127.0.0.1:{office.http}/y000000000096.cfg").stdout.decode()         # T54W: none
    assert f"static.firmware.url = http://127.0.0.1:{office.http}/firmware/T46U.rom" in with_firmware
    assert "firmware.url" not in without


def test_a_poly_phone_finds_its_firmware_where_its_master_file_says(office):
    """A Poly phone reads APP_FILE_PATH from its master file and fetches it from the same server
    (relative to the master file's folder): the path must be where the box serves the file."""
    mac = "0004f2a1b2c3"
    secret = json.loads((office.data_dir / "device-credentials.json").read_text())[mac]["http"]
    for over, master in (("http", curl(f"http://127.0.0.1:{office.http}/{mac}.cfg", "-u", f"{mac}:{secret}")),
                         ("tftp", curl(f"tftp://127.0.0.1:{office.tftp}/{mac}.cfg"))):
        path = re.search(r'APP_FILE_PATH="([^"]+)"', master.stdout.decode()).group(1)
        assert path == "firmware/sip.ld", (over, path)
        port = office.http if over == "http" else office.tftp
        fetched = curl(f"{over}://127.0.0.1:{port}/{path}").stdout
        assert fetched == (office.firmware.parent / "sip.ld").read_bytes(), over


def test_a_yealink_gets_the_keys_of_the_firmware_family_it_reports(office):
    """Yealink renamed keys between firmware families (firmware_templates/README.md): the file
    follows the version in the phone's User-Agent, and a TFTP fetch (no User-Agent) the last one
    it reported; `edgepbx devices` shows the firmware."""
    mac = "805ec0112233"
    secret = json.loads((office.data_dir / "device-credentials.json").read_text())[mac]["http"]

    def fetched(agent: str | None = None, over: str = "http") -> str:
        if over == "tftp":
            return curl(f"tftp://127.0.0.1:{office.tftp}/{mac}.cfg").stdout.decode()
        return curl(f"http://127.0.0.1:{office.http}/{mac}.cfg", "-u", f"{mac}:{secret}", "-A", agent).stdout.decode()

    def reported() -> str | None:
        out = subprocess.run(EDGEPBX + ["devices", "--config", str(office.config), "--json"], capture_output=True,
                             text=True, check=True, cwd=ROOT)
        return {r["mac"]: r for r in json.loads(out.stdout)}[mac]["firmware"]

    old = fetched("Yealink SIP-T46U 108.73.0.50 80:5e:c0:11:22:33")
    assert "firmware family v73" in old and "\naccount.1.transport = 0" in old and "static." not in old
    assert "firmware family v73" in fetched(over="tftp")  # what it said last time
    assert reported() == "108.73.0.50"
    new = fetched("Yealink SIP-T46U 108.86.0.70 80:5e:c0:11:22:33")
    assert "firmware family v80" in new and "\nstatic.security.user_password = admin:" in new
    assert "firmware family v80" in fetched(over="tftp") and reported() == "108.86.0.70"


def test_a_client_asking_for_many_unknown_files_is_refused_for_a_while(office):
    for i in range(30):
        curl(f"http://127.0.0.1:{office.http}/scan{i}.cfg", "--interface", "127.0.0.9")
    assert http_status(f"http://127.0.0.1:{office.http}/805ec0112233.cfg", "--interface", "127.0.0.9") == 429
    assert http_status(f"http://127.0.0.1:{office.http}/805ec0112233.cfg") == 200  # others are not affected
    assert "refusing it for a while" in office.log_text()


def test_auto_enrolment_when_switched_on_gives_an_unknown_phone_the_next_free_extension(tmp_path):
    base = free_port_block(40)
    extensions = ('  - {number: "101", name: "Reception", password: "pw-101-secret", '
                  'phone: {mac: "805ec0112233", vendor: yealink, model: T46U}}\n'
                  '  - {number: "102", name: "Spare one", password: "pw-102-secret"}\n'
                  '  - {number: "103", name: "Spare two", password: "pw-103-secret"}')
    pbx = start_pbx(write_office(tmp_path, extensions=extensions, extra=(
        f"provisioning: {{tftp_port: 0, http_port: {base + 31}, https_port: 0, auto_enrol: true, "
        f"discovery: false, pnp: false}}")))
    try:
        wait_http(base + 31)
        first = curl(f"http://127.0.0.1:{base + 31}/805ec0aaaaaa.cfg")
        assert first.returncode == 0 and b"account.1.user_name = 102" in first.stdout
        assert b"pw-102-secret" in first.stdout
        # A second stranger right after gets nothing: one enrolment per 30 s.
        assert http_status(f"http://127.0.0.1:{base + 31}/805ec0bbbbbb.cfg") == 404
        out = subprocess.run(EDGEPBX + ["devices", "--config", str(pbx.config), "--json"], capture_output=True,
                             text=True, check=True, cwd=ROOT)
        row = next(r for r in json.loads(out.stdout) if r["mac"] == "805ec0aaaaaa")
        assert row["extension"] == "102" and row["enrolled"] is True
        assert "auto-enrolled yealink" in pbx.log_text()
    finally:
        pbx.stop()
