"""The installer's serial menu (`edgepbx console --device /dev/ttyUSB0`): status, network, cloud
enrolment, reboot, factory reset and restoring a dead box's backup from the portal, over the board's UART or a USB-serial adapter at 115200 8N1.

Plain text, one key per choice, so any terminal (screen, minicom, PuTTY) works; nothing is
changed without a confirmation, and a factory reset asks for the word RESET.
"""
from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import serial

from .config import Config

MENU = """
edgepbx setup menu
  1  status
  2  network (DHCP or a static address)
  3  link to the cloud portal (enrolment code)
  4  reboot
  5  factory reset
  6  restore from the portal (this box replaces a dead one)
choose 1-6: """


@dataclass
class Box:
    """What the menu acts on; on the image the defaults, in tests paths of the test's own."""
    cfg: Config
    network_file: Path           # systemd-networkd file for the LAN port
    reboot_command: list[str]
    restart_command: list[str]   # starts the phone system again (after a restore)


def lan_address() -> str | None:
    """The address this box uses to reach the outside (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
        except OSError:
            return None


class Console:
    def __init__(self, port: serial.Serial, box: Box):
        self.port, self.box = port, box

    def write(self, text: str) -> None:
        self.port.write(text.replace("\n", "\r\n").encode())

    def ask(self, prompt: str) -> str | None:
        """A line typed by the installer (echoed, backspace works); None if the line went quiet."""
        self.write(prompt)
        typed = bytearray()
        while True:
            byte = self.port.read(1)
            if not byte:
                return None
            if byte in (b"\r", b"\n"):
                self.write("\n")
                return typed.decode(errors="replace").strip()
            if byte in (b"\x7f", b"\x08"):
                if typed:
                    typed.pop()
                    self.write("\b \b")
                continue
            if byte.isascii() and byte.decode().isprintable():
                typed += byte
                self.port.write(byte)

    def run(self) -> None:
        self.write("\n" + self.status_text())
        while True:
            choice = self.ask(MENU)
            if choice is None:
                continue
            action = {"1": self.status, "2": self.network, "3": self.enrol, "4": self.reboot,
                      "5": self.factory_reset, "6": self.restore}.get(choice)
            if action is None:
                self.write("choose a number from 1 to 6\n")
            else:
                action()

    # --- the choices ------------------------------------------------------------------------
    def status_text(self) -> str:
        from .cloud.status import cloud_status

        try:
            cloud = cloud_status(self.box.cfg)
        except Exception as exc:  # noqa: BLE001 - a damaged data partition must not take the menu down
            return f"edgepbx: LAN address {lan_address() or 'none'}; status unavailable: {exc}\n"
        link = (f"enrolled as site {cloud['site']} at {cloud['portal_url']}, last sync {cloud['last_sync_at'] or 'never'}"
                if cloud["enrolled"] else "not enrolled")
        return (f"edgepbx: LAN address {lan_address() or 'none'}; SIP on {self.box.cfg.network.bind}:"
                f"{self.box.cfg.network.sip_port}; {len(self.box.cfg.extensions)} extensions; cloud: {link}\n")

    def status(self) -> None:
        self.write(self.status_text())

    def network(self) -> None:
        mode = self.ask("network: d = DHCP, s = static address: ")
        if mode == "d":
            text = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n\n[DHCPv4]\nClientIdentifier=mac\n"
        elif mode == "s":
            address = self.ask("address with prefix (e.g. 192.168.1.10/24): ") or ""
            gateway = self.ask("gateway (e.g. 192.168.1.1): ") or ""
            dns = self.ask("DNS server (e.g. 192.168.1.1): ") or ""
            try:
                interface = ipaddress.ip_interface(address)
                ipaddress.ip_address(gateway)
                ipaddress.ip_address(dns)
            except ValueError as exc:
                self.write(f"not changed: {exc}\n")
                return
            if "/" not in address or ipaddress.ip_address(gateway) not in interface.network:
                self.write("not changed: give the prefix (/24) and a gateway inside that network\n")
                return
            text = static_network(str(interface), gateway, dns)
        else:
            self.write("not changed\n")
            return
        self.save_network(text)
        self.write(f"saved {self.box.network_file}; it applies at the next reboot (menu 4)\n")

    def save_network(self, text: str) -> None:
        self.box.network_file.parent.mkdir(parents=True, exist_ok=True)
        self.box.network_file.write_text(text)

    def enrol(self, restore: bool | None = None) -> None:
        """Links the box with a code; a replacement code on a first-boot box (or choice 6) also
        brings back the dead box's office from its newest backup, each step shown as it goes."""
        from .backup import BackupRefused
        from .cloud.client import PortalRefused, PortalUnreachable
        from .cloud.link import enroll

        url = self.ask("portal address (e.g. https://portal.example.com): ")
        code = self.ask("enrolment code (XXXX-XXXX-XXXX-XXXX): ")
        if not url or not code:
            self.write("not enrolled\n")
            return
        try:
            link, restored = enroll(self.box.cfg, url, code, say=lambda line: self.write(f"  {line}\n"), restore=restore)
        except (ValueError, PortalRefused, PortalUnreachable, BackupRefused) as exc:
            self.write(f"not enrolled: {getattr(exc, 'message', exc)}\n")
            return
        self.write(f"enrolled as site {link.site}; the box syncs to {link.portal_url}\n")
        if restored is not None:
            self.box.cfg = restored.config
            self.write(f"restored {len(restored.config.extensions)} extensions and the phones' credentials\n")
            if self.take_old_address(restored.network):
                self.write("rebooting to start the office at the dead box's address\n")
                subprocess.run(self.box.reboot_command, check=False)
                return
            self.write("starting the office's phone system\n")
            done = subprocess.run(self.box.restart_command, check=False)
            self.write("the phone system runs the restored office\n" if done.returncode == 0 else
                       f"the phone system did not restart (exit {done.returncode}): reboot the box (choice 4)\n")
        elif restore:
            self.write("the site has no backup on the portal: nothing restored\n")

    def take_old_address(self, old: dict[str, str]) -> bool:
        """The phones were set up for the dead box's address: offer it (the installer knows
        whether the dead box could come back and clash)."""
        address = old.get("address", "")
        if not address or address.split("/")[0] == lan_address():
            return False
        try:
            static = static_network(str(ipaddress.ip_interface(address)), str(ipaddress.ip_address(old["gateway"])),
                                    str(ipaddress.ip_address(old.get("dns") or old["gateway"])))
        except (KeyError, ValueError):
            return False
        self.write(f"the phones know the dead box at {address} (gateway {old['gateway']}); this box is at "
                   f"{lan_address() or 'no address'}.\n")
        if self.ask("take the dead box's address (unplug the dead box for good)? (y/n): ") != "y":
            self.write("address kept: give this box the dead one's DHCP reservation, or set it with choice 2\n")
            return False
        self.save_network(static)
        self.write(f"saved {self.box.network_file}: {address}, gateway {old['gateway']}\n")
        return True

    def restore(self) -> None:
        self.write("a replacement code from the portal (the site's page) brings back the dead box's extensions,\n"
                   "passwords, TLS identity and phones' credentials; this box's own office config is replaced.\n")
        self.enrol(restore=True)

    def reboot(self) -> None:
        if self.ask("reboot now? (y/n): ") == "y":
            self.write("rebooting\n")
            subprocess.run(self.box.reboot_command, check=False)

    def factory_reset(self) -> None:
        self.write("factory reset deletes the office config, every call record and recording, the cloud link\n"
                   "and the phones' passwords. Type RESET to go on, anything else to keep everything.\n")
        if self.ask("> ") != "RESET":
            self.write("nothing deleted\n")
            return
        data_dir = self.box.cfg.data_dir
        for entry in list(data_dir.iterdir()) if data_dir.exists() else []:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        self.box.cfg.path.unlink(missing_ok=True)
        self.box.network_file.unlink(missing_ok=True)
        self.write("factory reset done; rebooting to a first boot\n")
        subprocess.run(self.box.reboot_command, check=False)


def static_network(interface: str, gateway: str, dns: str) -> str:
    """The systemd-networkd file for a static LAN address."""
    return f"[Match]\nName=en* eth*\n\n[Network]\nAddress={interface}\nGateway={gateway}\nDNS={dns}\n"


def run(cfg: Config, device: str, network_file: Path, reboot_command: list[str], restart_command: list[str]) -> None:
    port = serial.Serial(device, 115200, timeout=60)
    Console(port, Box(cfg, network_file, reboot_command, restart_command)).run()
