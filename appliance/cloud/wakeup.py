"""The box's open line to the portal: one request held open (`GET /api/v1/wait`) that the portal
answers as soon as it has something for this box (a saved config, a call-back, a phone action),
so the agent's next heartbeat collects it within a second or two instead of at its interval.

A thread of its own with its own connection: the agent's loop keeps sending call records and
recordings meanwhile. An older portal without the route (404) is asked again only hourly."""
from __future__ import annotations

import logging
import random
import threading
from typing import Callable

from . import answers
from .client import PortalClient, PortalRefused, PortalUnreachable, PortalUrlRefused, Trust
from .link import CloudLink

log = logging.getLogger("edgepbx.cloud")

WAIT_SECONDS = 45  # the portal answers "nothing" after 40-50 s: under common proxies' 60 s idle limit
AFTER_WAKE_SECONDS = 2.0  # the heartbeat collects the work meanwhile; the next wait then starts from it
OLD_PORTAL_SECONDS = 3600.0


class WakeUp(threading.Thread):
    def __init__(self, known_version: Callable[[], int | None]):
        super().__init__(name="cloud-wakeup", daemon=True)
        self.known_version = known_version
        self.target: tuple[CloudLink, Trust] | None = None  # set by the agent when it is linked
        self.woken = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        client: PortalClient | None = None
        current: tuple[CloudLink, Trust] | None = None
        while not self.stopping.is_set():
            target = self.target
            if target is None:
                self.stopping.wait(1.0)
                continue
            if target != current or client is None:
                if client:
                    client.close()
                try:
                    client = PortalClient(target[0].portal_url, target[0].credential, timeout=WAIT_SECONDS + 15,
                                          trust=target[1])
                except PortalUrlRefused:  # the agent says why
                    client, current = None, target
                    self.stopping.wait(5.0)
                    continue
                current = target
            self.stopping.wait(self.hold(client))
        if client:
            client.close()

    def hold(self, client: PortalClient) -> float:
        """One held request; returns how long to pause before the next."""
        version = self.known_version()
        seconds = random.randint(WAIT_SECONDS - 5, WAIT_SECONDS + 5)  # a fleet that came back at once drifts apart
        query = f"?seconds={seconds}" + (f"&config_version={version}" if version else "")
        try:
            if answers.wake(client.request("GET", "/api/v1/wait" + query)):
                self.woken.set()
                return AFTER_WAKE_SECONDS
            return 0.0
        except PortalRefused as exc:
            if exc.status == 404:
                log.info("the portal cannot wake this box (no /api/v1/wait); configs come with heartbeats")
                return OLD_PORTAL_SECONDS
            return 5.0  # 401 and the rest: the agent's own requests say so
        except PortalUnreachable:
            return random.uniform(2.0, 5.0)
