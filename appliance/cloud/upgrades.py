"""Upgrading the office's phones to the firmware the portal pinned (issue 27), the box's side:
only inside `provisioning.firmware_window` (the site's time), `firmware_wave` phones at a time;
a phone of the wave is told of the file (its provisioning file gains the firmware key:
appliance/firmware_cache.may_upgrade) and asked to re-fetch at once (SIP NOTIFY check-sync); it
is done when it registers or fetches again reporting the pinned version, and when it has not
within `firmware_deadline_seconds` the site's upgrades stop (the heartbeat says so, and the
portal raises an alarm) until the operator pins again.

A phone that never reported a version (no User-Agent with one) is not upgraded: the box could
not tell that it came back on the new firmware."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from ..config import Config
from ..files import write_private_json
from ..firmware_cache import UPGRADES_FILE, cache_dir, pinned, upgrades
from .phones import notify_event, send_notify

log = logging.getLogger("edgepbx.cloud")


def in_window(window: str, moment: datetime) -> bool:
    """Whether the site's clock reads inside "HH:MM-HH:MM" (which may cross midnight)."""
    start, end = window.split("-")
    now = moment.strftime("%H:%M")
    return start <= now < end if start <= end else (now >= start or now < end)


class PhoneUpgrades:
    def __init__(self, cfg: Config):
        self.cfg = cfg

    def _save(self, state: dict) -> None:
        cache_dir(self.cfg.data_dir).mkdir(parents=True, exist_ok=True)
        write_private_json(cache_dir(self.cfg.data_dir) / UPGRADES_FILE, state)

    def tick(self, phones: list[dict], now: datetime | None = None) -> dict:
        """One look (each agent round): phones of the wave that came back, or did not in time;
        the next wave inside the window. Returns what the heartbeat reports."""
        now = now or datetime.now().astimezone()
        prov = self.cfg.provisioning
        pins = pinned(self.cfg.data_dir)
        state = upgrades(self.cfg.data_dir)
        changed = False
        halted = state.get("halted")
        if halted and (pins.get(halted["model"], {}).get("pinned_at"), pins.get(halted["model"], {}).get("version")) \
                != (halted["pinned_at"], halted["version"]):
            log.info("phone upgrades go on: %s was pinned again", halted["model"])
            state["halted"], halted, changed = None, None, True
            state["phones"] = {mac: u for mac, u in state["phones"].items() if u["state"] != "failed"}  # tried again
        by_mac = {p["mac"]: p for p in phones if p.get("mac")}
        for mac, upgrade in state["phones"].items():
            if upgrade["state"] != "upgrading":
                continue
            phone = by_mac.get(mac, {})
            if phone.get("firmware") == upgrade["target"]:
                upgrade["state"], changed = "done", True
                log.info("phone %s (extension %s) runs firmware %s", mac, phone.get("extension"), upgrade["target"])
            elif now - datetime.fromisoformat(upgrade["since"]) > timedelta(seconds=prov.firmware_deadline_seconds):
                upgrade["state"], changed = "failed", True
                key = f"{phone.get('vendor')}/{phone.get('model')}"
                state["halted"] = halted = {"model": key, "mac": mac, "extension": phone.get("extension"),
                                            "version": upgrade["target"], "pinned_at": pins.get(key, {}).get("pinned_at"),
                                            "at": now.isoformat(timespec="seconds")}
                log.error("ALARM phone %s (extension %s) did not come back on firmware %s within %d s: the site's "
                          "phone upgrades stop until the firmware is pinned again", mac, phone.get("extension"),
                          upgrade["target"], prov.firmware_deadline_seconds)
        if not halted and in_window(prov.firmware_window, now):
            busy = sum(1 for u in state["phones"].values() if u["state"] == "upgrading")
            for phone in phones:
                if busy >= prov.firmware_wave:
                    break
                pin = pins.get(f"{phone.get('vendor')}/{phone.get('model')}")
                before = state["phones"].get(phone.get("mac") or "", {})
                if not pin or not phone.get("extension") or not phone.get("firmware") \
                        or phone["firmware"] == pin["version"] or before.get("target") == pin["version"]:
                    continue
                state["phones"][phone["mac"]] = {"target": pin["version"], "state": "upgrading",
                                                 "since": now.isoformat(timespec="seconds"), "from": phone["firmware"]}
                busy, changed = busy + 1, True
                log.info("phone %s (extension %s): firmware %s -> %s", phone["mac"], phone["extension"],
                         phone["firmware"], pin["version"])
                event = notify_event(phone.get("vendor"), "resync")
                threading.Thread(target=send_notify, args=(self.cfg, phone["extension"], event), daemon=True).start()
        if changed:
            self._save(state)
        counts = {s: sum(1 for u in state["phones"].values() if u["state"] == s) for s in ("upgrading", "done", "failed")}
        return dict(counts, halted=state.get("halted"))
