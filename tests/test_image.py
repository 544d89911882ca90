"""The x86 appliance image, built from Debian 12 packages (image/build.sh, cached while its inputs
are unchanged) and booted the way a mini-PC boots it: UEFI (OVMF) under QEMU's software emulation
(KVM does not work on these machines), serial console, the box's SIP port forwarded. Then its A/B
updates (image/bundle.sh, RAUC, GRUB): a broken update rolls back by itself, a power cut during an
install leaves the box on its old slot with clean data, a good update boots slot B and stays.

The tests run in order on one VM (each boot costs about a minute of emulation)."""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT
from image_builds import figure
from image_vm import Vm
from json_lines import JsonLines
from sipp import free_udp_port

BOOT_LIMIT_SECONDS = 300  # the bound for "edgepbx ready" on the console
OUT = ROOT / "build" / "image"
BOX = "/opt/edgepbx/venv/bin/edgepbx"
OFFICE = "--config /data/office.yaml"


def run(*command: str, timeout: float = 1800) -> str:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """The image, its update bundle, and a bundle of the same system whose appliance cannot start
    (its command line module replaced by one that exits), signed by the same key."""
    run("image/bundle.sh", "x86")  # builds (or reuses) the image first
    work = tmp_path_factory.mktemp("bundles")
    run("rauc", "extract", "--keyring=/var/cache/edgepbx/signing/development.cert.pem",
        str(OUT / "edgepbx-x86.raucb"), str(work / "content"))
    broken = work / "rootfs.ext4"
    shutil.move(work / "content" / "rootfs.ext4", broken)
    (work / "cli.py").write_text("raise SystemExit('edgepbx: this build is broken on purpose (rollback test)')\n")
    edit = subprocess.run(["debugfs", "-w", "-R", f"write {work / 'cli.py'} /opt/edgepbx/app/appliance/cli.py.new",
                           str(broken)], capture_output=True, text=True)
    assert edit.returncode == 0, edit.stderr
    for request in ("rm /opt/edgepbx/app/appliance/cli.py",
                    "ln /opt/edgepbx/app/appliance/cli.py.new /opt/edgepbx/app/appliance/cli.py",
                    "unlink /opt/edgepbx/app/appliance/cli.py.new",
                    "rm /opt/edgepbx/app/appliance/__pycache__/cli.cpython-311.pyc"):
        subprocess.run(["debugfs", "-w", "-R", request, str(broken)], capture_output=True, check=True)
    run("image/bundle.sh", "x86", "--rootfs", str(broken), "--output", str(work / "broken.raucb"),
        "--version", "0.0.0+broken")
    served = tmp_path_factory.mktemp("served")
    shutil.copy(OUT / "edgepbx-x86.raucb", served / "good.raucb")
    shutil.copy(work / "broken.raucb", served / "broken.raucb")
    return served


@pytest.fixture(scope="module")
def bundle_server(bundles):
    """The bundles over HTTP on the host's loopback: http://10.0.2.2:PORT/ from inside the VM."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(bundles))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://10.0.2.2:{server.server_port}"
    server.shutdown()


KEYRING = "/var/cache/edgepbx/signing/development.cert.pem"


@pytest.fixture(scope="module")
def fleet(bundles, tmp_path_factory):
    """The provider's portal on the host (PostgreSQL, alarms told through aiosmtpd and a webhook
    receiver), with the good and the broken bundle as releases; the box reaches it at 10.0.2.2."""
    from test_alarms import HOOK_SECRET, alarm_portal

    with alarm_portal(tmp_path_factory.mktemp("portal")) as (portal, inbox, hooks):
        versions = {name: portal.cli("release", "add", str(bundles / f"{name}.raucb"), "--keyring", KEYRING)
                    .stdout.strip().splitlines()[-1] for name in ("good", "broken")}
        portal.cli("add-contact", "--email", "noc@provider.example", "--severity", "critical")
        portal.cli("add-contact", "--webhook", f"http://127.0.0.1:{hooks.server_address[1]}/hook", "--secret", HOOK_SECRET)
        yield portal, inbox, hooks, versions


@pytest.fixture(scope="module")
def enrolled(box, fleet):
    """The booted box enrolled to the portal as site vm-office, its agent beating every 3 s."""
    portal = fleet[0]
    code = portal.add_site("Acme", "vm-office")
    box.check("echo 'cloud: {heartbeat_seconds: 3, retry_max_seconds: 3, allow_http: true}' >> /data/office.yaml")
    box.check(f"runuser -u edgepbx -- {BOX} enroll {OFFICE} http://10.0.2.2:{portal.port} {code}", timeout=120)
    box.check("systemctl restart edgepbx.service", timeout=180)
    wait_until(lambda: site_row(portal).get("slot") == "A", 240, "the box's first heartbeat")
    return fleet


def site_row(portal) -> dict:
    return next((s for s in json.loads(portal.cli("sites", "--json").stdout) if s["site"] == "vm-office"), {})


def rollout_status(portal) -> dict:
    return json.loads(portal.cli("rollout", "status", "--json").stdout)[0]


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


def window_around_now(zone: str) -> str:
    """A maintenance window that is open now on the office's clock."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo(zone))
    return f"{now - timedelta(minutes=30):%H:%M}-{now + timedelta(hours=3):%H:%M}"


@pytest.fixture(scope="module")
def box(bundles, tmp_path_factory):
    work = tmp_path_factory.mktemp("box")
    vm = Vm(card_with_image(work), work, free_udp_port(), cpus=1)  # the first boot as the command line
    vm.start()
    yield vm
    vm.power_cut()


def card_with_image(work) -> Path:
    """A copy of the image on a disk 1 GiB bigger than the image, as on a real card: the data
    partition grows into it on first boot. (Left at the image's 256 MB, the data partition is under
    the recordings' low-water mark, and an unenrolled box prunes its oldest recordings for space.)"""
    disk = work / "disk.img"
    shutil.copyfile(OUT / "edgepbx-x86.img", disk)
    with open(disk, "r+b") as fh:
        fh.truncate(disk.stat().st_size + (1 << 30))
    return disk


def boot_to_ready(vm: Vm) -> float:
    vm.wait_for(r"edgepbx ready", BOOT_LIMIT_SECONDS)
    return time.monotonic() - vm.started_at


def test_the_x86_image_boots_under_uefi_to_edgepbx_ready_and_answers_sip(box):
    assert (OUT / "edgepbx-x86.img.xz.sha256").exists()
    figure(f"x86 image: {(OUT / 'edgepbx-x86.img.xz').stat().st_size / 1e6:.0f} MB xz, bundle "
           f"{(OUT / 'edgepbx-x86.raucb').stat().st_size / 1e6:.0f} MB")
    figure(f"x86: edgepbx ready {boot_to_ready(box):.0f} s after QEMU started")
    from appliance.sipprobe import options_ping
    assert options_ping("127.0.0.1", box.sip_port, timeout=5.0) == 200  # Kamailio on the box, through the forward
    text = box.text()
    assert "edgepbx: booting slot A" in text
    assert "edgepbx: LAN address 10.0.2.15; cloud: not enrolled" in text
    grown = [line for line in text.splitlines() if "edgepbx first boot: data partition" in line]
    assert grown and "1.2G" in grown[0], grown  # 256 MB + the 1 GiB added
    assert "register phones to 10.0.2.15:5060" in text  # the box's own address, no extensions yet
    for _attempt in range(2):  # under emulation the UART once dropped a byte of the answer: ask again
        status = serial_menu_status(box.menu_socket)
        if "edgepbx: LAN address 10.0.2.15;" in status and "cloud: not enrolled" in status:
            break
    assert "edgepbx: LAN address 10.0.2.15;" in status and "cloud: not enrolled" in status, status
    box.wait_for(r"edgepbx: slot A confirmed good", 120)
    assert box.check("systemctl --failed --no-legend --plain").strip() == ""  # every unit of the read-only root starts
    assert_unprivileged_on_the_lan_only(box, "10.0.2.15")
    box.cpus = 2  # the later boots (the next power-on) on two virtual CPUs: faster under emulation


def assert_unprivileged_on_the_lan_only(vm: Vm, lan: str) -> None:
    """The box's processes run as its own user with no capability beyond binding low ports and
    listening for DHCP (CAP_NET_BIND_SERVICE, CAP_NET_RAW), and listen on the LAN address only
    (PnP's multicast group aside)."""
    # (minbase has no ps: the processes straight from /proc)
    users = vm.check("for d in /proc/[0-9]*; do case \"$(cat $d/cmdline 2>/dev/null | tr '\\0' ' ')\" in "
                     "*kamailio*|*appliance.cli*|*'edgepbx run'*) stat -c %U $d;; esac; done | sort -u")
    assert users.split() == ["edgepbx"], users
    caps = vm.check("for d in /proc/[0-9]*; do [ \"$(stat -c %U $d 2>/dev/null)\" = edgepbx ] && "
                    "sed -n 's/^CapEff:[[:space:]]*//p' $d/status; done | sort -u")
    allowed = (1 << 10) | (1 << 13)  # CAP_NET_BIND_SERVICE, CAP_NET_RAW
    assert caps.split() and all(int(c, 16) & ~allowed == 0 for c in caps.split()), caps
    sockets = vm.check("ss -H -lntup | grep -E 'kamailio|python'")
    local = [line.split()[4] for line in sockets.splitlines() if line.strip()]
    assert local and all(a.rsplit(":", 1)[0] in (lan, "224.0.1.75") for a in local), sockets


SEED_OFFICE_DATA = """runuser -u edgepbx -- /opt/edgepbx/venv/bin/python - <<'EOF'
from pathlib import Path
from appliance.cdr import CdrStore
store = CdrStore(Path('/data/var/cdr.sqlite'))
call = store.start(direction='internal', src='101', dst='102')
store.answered(call, 'recordings/seed.wav')
store.ended(call, 'answered')
Path('/data/var/recordings').mkdir(exist_ok=True)
Path('/data/var/recordings/seed.wav').write_bytes(b'RIFF' + bytes(range(256)) * 64)
EOF"""
DATA_FINGERPRINT = (f"sha256sum /data/office.yaml /data/var/recordings/seed.wav; "
                    f"runuser -u edgepbx -- {BOX} cdr list {OFFICE} --json | sha256sum")


def power_cycle(vm: Vm, expect_slot: str) -> None:
    """Power off and on: the slot confirmed good boots again."""
    vm.power_cut()
    vm.start()
    boot_to_ready(vm)
    assert f"edgepbx: booting slot {expect_slot}" in vm.text()
    vm.wait_for(rf"edgepbx: slot {expect_slot} confirmed good", 120)


def booted_slot(vm: Vm) -> str:
    return vm.check("rauc status --output-format=shell | sed -n 's/^RAUC_SYSTEM_BOOTED_BOOTNAME=//p'").strip().strip("'")


OPEN_CALL = """runuser -u edgepbx -- /opt/edgepbx/venv/bin/python -c "
from pathlib import Path; from appliance.cdr import CdrStore
CdrStore(Path('/data/var/cdr.sqlite')).start(direction='inbound', src='+74951234567', dst='100')" """
END_OPEN_CALLS = """runuser -u edgepbx -- /opt/edgepbx/venv/bin/python -c "
import sqlite3; db = sqlite3.connect('/data/var/cdr.sqlite'); db.execute(\\"DELETE FROM cdr WHERE ended_at IS NULL\\"); db.commit()" """


def test_a_rollout_waits_for_the_call_then_a_broken_release_rolls_back_and_halts_with_an_alarm(
        box, bundle_server, enrolled):
    """The portal's rollout to the enrolled box: fetched, held while a call is up, installed by
    the root unit when it ends; the broken slot fails its self-test and the box goes back to slot
    A, says so, and the rollout halts with an alarm by e-mail and webhook. (`edgepbx update` on
    site refuses too while the call is up.)"""
    portal, inbox, hooks, versions = enrolled
    box.check(SEED_OFFICE_DATA)
    before = box.check(DATA_FINGERPRINT)
    box.check(OPEN_CALL)  # a call still up (a call record not ended)
    code, refused = box.run(f"{BOX} update {OFFICE} {bundle_server}/broken.raucb")
    assert code == 1 and "1 call(s) up" in refused, refused
    since = box.mark()
    started = time.monotonic()
    portal.cli("rollout", "start", "--release", versions["broken"], "--sites", "vm-office",
               "--window", window_around_now("Europe/Moscow"))
    wait_until(lambda: rollout_status(portal)["sites"][0]["state"] == "ready", 600, "the bundle fetched")
    figure(f"x86: rollout: {time.monotonic() - started:.0f} s from start to the "
           f"bundle fetched and checked on the box")
    time.sleep(8)  # two heartbeats: still held by the call
    assert rollout_status(portal)["sites"][0]["state"] == "ready"
    assert "installing box software" not in box.text(since)
    box.check(END_OPEN_CALLS)
    box.wait_for(rf"edgepbx: installing box software {re.escape(versions['broken'])} into slot B", 120, since)
    box.wait_for(r"edgepbx: booting slot B", 600, since)
    box.wait_for(r"edgepbx: slot B failed its self-test.*edgepbx: marking slot B bad and going back to slot A", 400, since)
    box.wait_for(r"edgepbx: booting slot A.*edgepbx ready", 400, since)
    wait_until(lambda: rollout_status(portal)["state"] == "halted", 240, "the rollout to halt")
    figure(f"x86: broken release: rollout start to halted, the box back on slot A, in {time.monotonic() - started:.0f} s")
    shown = rollout_status(portal)
    assert shown["sites"][0]["state"] == "failed" and "vm-office" in shown["reason"], shown
    wait_until(lambda: any("vm-office" in s and "rollout" in s for s in inbox.subjects()), 60, "the alarm's e-mail")
    wait_until(lambda: any(e["key"] == "rollout_halted" and e["site"] == "vm-office" for e in hooks.events()), 60,
               "the alarm's webhook")
    box.wait_for(r"edgepbx: slot A confirmed good", 120, since)
    assert booted_slot(box) == "A"  # (the next test's power cut boots it once more)
    assert box.check(DATA_FINGERPRINT) == before
    portal.cli("rollout", "abort")


def test_a_power_cut_while_a_bundle_installs_leaves_slot_a_and_clean_data(box, bundle_server):
    _, since = box.begin(f"{BOX} update --no-reboot {OFFICE} {bundle_server}/good.raucb")
    box.wait_for(r"Copying image to rootfs", 300, since)  # RAUC is writing slot B
    time.sleep(5)
    box.power_cut()
    assert_data_partition_clean(box.disk)
    box.start()
    boot_to_ready(box)
    assert "edgepbx: booting slot A" in box.text()
    box.wait_for(r"edgepbx: slot A confirmed good", 120)
    integrity = box.check("runuser -u edgepbx -- /opt/edgepbx/venv/bin/python -c \"import sqlite3; "
                          "print(sqlite3.connect('/data/var/cdr.sqlite').execute('PRAGMA integrity_check').fetchone()[0])\"")
    assert integrity.strip() == "ok"


def test_a_rollout_boots_slot_b_confirms_it_keeps_the_office_data_and_the_portal_sees_it(box, enrolled):
    portal, _, _, versions = enrolled
    before = box.check(DATA_FINGERPRINT)
    since = box.mark()
    started = time.monotonic()
    portal.cli("rollout", "start", "--release", versions["good"], "--sites", "vm-office")
    box.wait_for(r"edgepbx: booting slot B.*edgepbx ready.*edgepbx: slot B confirmed good", 900, since)
    wait_until(lambda: rollout_status(portal)["state"] == "done", 120, "the rollout to be done")
    figure(f"x86: rollout: fetch, install, reboot, slot B confirmed and the portal told in {time.monotonic() - started:.0f} s")
    assert site_row(portal)["version"] == versions["good"] and site_row(portal)["slot"] == "B"
    power_cycle(box, expect_slot="B")
    assert booted_slot(box) == "B"
    assert box.check(DATA_FINGERPRINT) == before
    from appliance.sipprobe import options_ping
    assert options_ping("127.0.0.1", box.sip_port, timeout=5.0) == 200


def assert_data_partition_clean(disk) -> None:
    """After a power cut: the data partition, its journal replayed as mounting does, has no errors."""
    data = disk.parent / "data-after-cut.ext4"
    start, sectors = partition(disk, "data")
    subprocess.run(["dd", f"if={disk}", f"of={data}", "bs=4M", "iflag=skip_bytes,count_bytes",
                    f"skip={start * 512}", f"count={sectors * 512}", "conv=sparse", "status=none"], check=True)
    subprocess.run(["e2fsck", "-E", "journal_only", "-y", str(data)], capture_output=True)
    fsck = subprocess.run(["e2fsck", "-fn", str(data)], capture_output=True, text=True)
    data.unlink()
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


@pytest.fixture
def office_lan(tmp_path):
    """The office LAN: a network namespace of the test's own with the tap device the VM plugs into
    (10.77.0.1 on the host side) and dnsmasq as the office router's DHCP server with one address to
    give (10.77.0.50): a box that asked with a new identity after a reboot would get none."""
    ns = f"edgepbx-img-{os.getpid()}"
    for command in (["netns", "add", ns], ["-n", ns, "link", "set", "lo", "up"],
                    ["-n", ns, "tuntap", "add", "dev", "tap0", "mode", "tap"],
                    ["-n", ns, "addr", "add", "10.77.0.1/24", "dev", "tap0"], ["-n", ns, "link", "set", "tap0", "up"]):
        subprocess.run(["ip", *command], check=True, capture_output=True)
    dhcp = subprocess.Popen(["ip", "netns", "exec", ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
                             "--interface=tap0", "--bind-dynamic", "--dhcp-range=10.77.0.50,10.77.0.50,12h",
                             f"--dhcp-leasefile={tmp_path / 'leases'}", "--pid-file="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield ns
    dhcp.kill()
    dhcp.wait()
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class PhonesProcess:
    """tests/vm_phones.py in the office LAN's namespace; its JSON reports read line by line."""

    def __init__(self, ns: str, passwords: dict, workdir):
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(ROOT / "tests" / "vm_phones.py"),
                                      "10.77.0.50", "10.77.0.1", passwords["101"], passwords["102"], str(workdir)],
                                     stdout=subprocess.PIPE, stderr=open(workdir / "phones.log", "w"), text=True)
        self.reports = JsonLines(self.proc, str(workdir / "phones.log"))

    def next_report(self, timeout: float) -> dict:
        return self.reports.next(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


EXTENSIONS = """
extensions:
  - {number: "101", name: "Reception"}
  - {number: "102", name: "Director"}
"""


def test_phones_on_the_office_lan_call_through_the_booted_box_and_a_power_cut_mid_call_keeps_the_records(
        box, office_lan, tmp_path):
    box.power_cut()  # the update tests are done: their VM's CPU goes to this one
    disk = card_with_image(tmp_path)
    vm = Vm(disk, tmp_path, netns=office_lan)
    vm.start()
    phones = None
    try:
        boot_to_ready(vm)
        assert "edgepbx: LAN address 10.77.0.50" in vm.text()
        since = vm.mark()
        vm.check(f"cat >> /data/office.yaml <<'EOF'{EXTENSIONS}EOF\nsystemctl restart edgepbx")
        vm.wait_for(r"edgepbx ready", 180, since)
        listed = vm.check(f"runuser -u edgepbx -- {BOX} extensions {OFFICE} --json")
        passwords = {e["number"]: e["password"] for e in json.loads(listed[listed.index("["):])}
        phones = PhonesProcess(office_lan, passwords, tmp_path)
        assert phones.next_report(30) == {"started": True}
        # under emulation the box may still be starting its provisioning servers: allow for it
        assert phones.next_report(120) == {"registered": {"101": 200, "102": 200}}
        first = phones.next_report(90)
        assert first == {"call": 1, "heard_by_101": True, "heard_by_102": True}, first
        cdrs = box_cdrs(vm)
        assert cdrs[0]["src"] == "101" and cdrs[0]["dst"] == "102" and cdrs[0]["disposition"] == "answered"
        assert cdrs[0]["recording"], cdrs[0]
        assert phones.next_report(60) == {"call": 2, "up": True}
        time.sleep(8)  # longer than the feature server's recording flush period (5 s)
        vm.power_cut()  # mid-call, mid-recording
        phones.kill()
        assert_data_partition_clean(disk)
        vm.start()
        boot_to_ready(vm)
        assert "edgepbx: LAN address 10.77.0.50" in vm.text()  # the same address after the power cut
        vm.wait_for(r"edgepbx: slot A confirmed good", 120)  # (and the console quiet again)
        after = box_cdrs(vm)
        assert len(after) == 2 and all(r["ended_at"] for r in after), after  # the cut call closed at start
        integrity = vm.check("runuser -u edgepbx -- /opt/edgepbx/venv/bin/python -c \"import sqlite3; "
                             "print(sqlite3.connect('/data/var/cdr.sqlite').execute('PRAGMA integrity_check').fetchone()[0])\"")
        assert integrity.strip() == "ok", integrity
        # The cut call's recording: on the disk, its header repaired at start, with the seconds
        # recorded before the power cut (the feature server flushes every 5 s; 8 s passed); then
        # encoded as Opus by the agent (appliance/opus.py), so it is read back through opusdec.
        cut = next(r for r in after if r["disposition"] == "failed")
        assert cut["recording"], cut
        deadline = time.monotonic() + 180
        while not cut["recording"].endswith(".opus") and time.monotonic() < deadline:
            time.sleep(3)
            cut = next(r for r in box_cdrs(vm) if r["id"] == cut["id"])
        assert cut["recording"].endswith(".opus"), cut
        vm.check(f"opusdec --quiet --rate 16000 '{cut['recording']}' /tmp/cut.wav && chmod 644 /tmp/cut.wav")
        seconds = vm.check("runuser -u edgepbx -- /opt/edgepbx/venv/bin/python -c \"import wave; "
                           "w = wave.open('/tmp/cut.wav'); print(w.getnframes() / w.getframerate())\"")
        kept = float(seconds.strip().splitlines()[-1])
        figure(f"x86: a power cut 8 s into a recorded call kept {kept:.1f} s of its recording (repaired at start, "
               f"then encoded as Opus)")
        assert kept >= 3.0, seconds
    finally:
        if phones:
            phones.kill()
        vm.power_cut()


def box_cdrs(vm: Vm) -> list[dict]:
    """The box's call records, newest first, listed on its serial console."""
    listed = vm.check(f"runuser -u edgepbx -- {BOX} cdr list {OFFICE} --json")
    return json.JSONDecoder().raw_decode(listed[listed.index("["):])[0]  # console lines may follow


def partition(disk, name: str) -> tuple[int, int]:
    """(start, size) in 512-byte sectors of a GPT partition of a disk image, by its name."""
    import re
    table = subprocess.run(["sfdisk", "-d", str(disk)], capture_output=True, text=True, check=True).stdout
    found = re.search(rf'start=\s*(\d+), size=\s*(\d+),.*name="{name}"', table)
    assert found, table
    return int(found.group(1)), int(found.group(2))


def serial_menu_status(path) -> str:
    """Chooses 1 (status) on the menu's serial line; returns what it answered."""
    import socket

    with socket.socket(socket.AF_UNIX) as line:
        line.connect(str(path))
        line.settimeout(1.0)
        deadline = time.monotonic() + 60

        def read_until(marker: bytes, poke: bytes | None = None) -> bytes:
            seen = b""
            while marker not in seen and time.monotonic() < deadline:
                if poke:
                    line.sendall(poke)  # the menu drew itself before anyone listened: ask again
                try:
                    seen += line.recv(4096)
                except socket.timeout:
                    pass
            return seen

        read_until(b"choose 1-6", poke=b"\r")
        line.sendall(b"1\r")
        return "status: " + read_until(b"cloud:").decode(errors="replace").split("1\r\n", 1)[-1].strip() + \
            read_until(b"\n").decode(errors="replace")
