"""The installer's serial menu, driven through a pty pair as a real serial line (the menu opens the
pty's far end with pyserial at 115200 8N1, as it opens /dev/ttyUSB0 on a box)."""
from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import time

import pytest

from conftest import ROOT, write_office
from portal_lab import FAST_CLOUD, AgentProcess, close_portal, enroll, seed_calls, start_portal


class SerialLine:
    def __init__(self, master: int):
        self.master = master
        self.seen = ""

    def expect(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} never came on the line; it said:\n{self.seen[-1500:]}")
            if select.select([self.master], [], [], left)[0]:
                self.seen += os.read(self.master, 4096).decode(errors="replace")
        before, _, self.seen = self.seen.partition(text)
        return before + text

    def type(self, line: str) -> None:
        for ch in line + "\r":  # one key at a time, as a person types
            os.write(self.master, ch.encode())
            time.sleep(0.005)


@pytest.fixture
def menu(tmp_path):
    office = write_office(tmp_path, "cloud: {allow_http: true}")  # the test's portal is plain http on loopback
    network_file = tmp_path / "net" / "20-lan.network"
    rebooted, restarted = tmp_path / "rebooted", tmp_path / "restarted"
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "console", "--config", str(office),
                             "--device", os.ttyname(slave), "--network-file", str(network_file),
                             "--reboot-command", f"touch {rebooted}", "--restart-command", f"touch {restarted}"],
                            cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    line = SerialLine(master)
    yield line, office, network_file, rebooted, restarted
    proc.kill()
    proc.wait()
    os.close(master)
    os.close(slave)


def test_the_serial_menu_shows_status_sets_a_static_address_and_enrols(menu, tmp_path):
    line, office, network_file, _, _ = menu
    line.expect("cloud: not enrolled")
    line.expect("choose 1-6: ")
    line.type("2")
    line.expect("DHCP, s = static address: ")
    line.type("s")
    line.type("192.168.7.20/24")
    line.type("10.9.9.9")  # a gateway outside the network: refused
    line.type("192.168.7.1")
    line.expect("not changed: give the prefix")
    assert not network_file.exists()
    line.type("2")
    line.type("s")
    line.type("192.168.7.20/24")
    line.type("192.168.7.1")
    line.type("192.168.7.1")
    line.expect("applies at the next reboot")
    assert "Address=192.168.7.20/24" in network_file.read_text() and "Gateway=192.168.7.1" in network_file.read_text()

    portal = start_portal(tmp_path, "sqlite")
    try:
        code = portal.add_site("Acme", "acme-hq")
        line.type("3")
        line.type(portal.url)
        line.type("WRONG-CODE-0000-0000")
        line.expect("not enrolled: unknown or expired enrolment code")
        line.type("3")
        line.type(portal.url)
        line.type(code)
        line.expect("enrolled as site acme-hq")
        line.type("1")
        line.expect(f"cloud: enrolled as site acme-hq at {portal.url}")
    finally:
        close_portal(portal)


def test_a_factory_reset_needs_the_word_reset_then_keeps_nothing(menu):
    line, office, network_file, rebooted, _ = menu
    data_dir = office.parent / "var"
    line.expect("choose 1-6: ")
    seed_calls(data_dir, 2, recording_seconds=1)  # call records and recordings of the office
    line.type("5")
    line.type("reset")  # not the word
    line.expect("nothing deleted")
    assert (data_dir / "cdr.sqlite").exists() and office.exists() and not rebooted.exists()
    line.type("5")
    line.type("RESET")
    line.expect("factory reset done")
    deadline = time.monotonic() + 5
    while not rebooted.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rebooted.exists() and not office.exists() and list(data_dir.iterdir()) == []


def backed_up_box(tmp_path, portal):
    """A box enrolled as acme-hq whose agent has put its first backup on the portal."""
    (tmp_path / "dead").mkdir()
    dead = write_office(tmp_path / "dead", FAST_CLOUD, extensions='  - {number: "201", name: "Dasha"}\n'
                                                                 '  - {number: "202", name: "Egor"}')
    assert enroll(dead, portal, portal.add_site("Acme", "acme-hq")).returncode == 0
    subprocess.run([sys.executable, "-m", "appliance.cli", "extensions", "--config", str(dead)], cwd=ROOT,
                   check=True, capture_output=True)  # the box's generated passwords, as `run` makes them
    agent = AgentProcess(dead).start()
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "dead" / "var" / "backup-state.json").exists():
            assert time.monotonic() < deadline, agent.text()
            time.sleep(0.2)
    finally:
        agent.kill()
    return dead


def restore_on_the_line(line, portal) -> None:
    line.expect("choose 1-6: ")
    line.type("6")
    line.type(portal.url)
    line.type(portal.add_site("Acme", "acme-hq"))
    for step in ("enrolled as site acme-hq", "downloading", "opening it with the site's key", "restoring",
                 "restored 2 extensions"):
        line.expect(step)


def test_restore_from_the_portal_shows_each_step_and_restarts_into_the_dead_box_office(menu, tmp_path):
    line, office, _, rebooted, restarted = menu
    portal = start_portal(tmp_path, "sqlite")
    try:
        dead = backed_up_box(tmp_path, portal)
        restore_on_the_line(line, portal)  # the dead box was at this machine's own address: nothing to ask
        line.expect("the phone system runs the restored office")
        assert restarted.exists() and not rebooted.exists() and office.read_text() == dead.read_text()
        assert (office.parent / "var" / "credentials.json").read_text() == \
            (tmp_path / "dead" / "var" / "credentials.json").read_text()
    finally:
        close_portal(portal)


def test_a_replacement_takes_the_dead_box_address_only_when_the_installer_agrees(menu, tmp_path):
    """The dead box's last backup says it was at 192.168.7.20/24, another address than this
    box's: made as the box makes one, on another LAN (its own credential and site key)."""
    from appliance.backup import collect, seal
    from appliance.cloud.client import PortalClient, Trust
    from appliance.config import load

    line, office, network_file, rebooted, restarted = menu
    portal = start_portal(tmp_path, "sqlite")
    try:
        dead = backed_up_box(tmp_path, portal)
        link = json.loads((tmp_path / "dead" / "var" / "cloud.json").read_text())
        contents = collect(load(dead))
        contents.network = {"address": "192.168.7.20/24", "gateway": "192.168.7.1", "dns": "192.168.7.1"}
        client = PortalClient(portal.url, link["credential"], trust=Trust(allow_http=True))
        client.request("PUT", "/api/v1/backup?extensions=2", seal(contents, key=base64.b64decode(link["backup_key"])))
        client.close()

        restore_on_the_line(line, portal)
        line.expect("the phones know the dead box at 192.168.7.20/24 (gateway 192.168.7.1)")
        line.type("y")
        line.expect("rebooting to start the office at the dead box's address")
        deadline = time.monotonic() + 5
        while not rebooted.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rebooted.exists() and not restarted.exists()
        assert "Address=192.168.7.20/24\nGateway=192.168.7.1\nDNS=192.168.7.1" in network_file.read_text()
    finally:
        close_portal(portal)
