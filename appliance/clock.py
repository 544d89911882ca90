"""The box keeps the office's time: every edgepbx process (and the services the supervisor
starts, which inherit it) runs with TZ set to the config's `site.timezone`, so call records,
logs, `edgepbx cdr list` and the status say the office's local time with its UTC offset, whatever
zone the machine itself is in (the image's is UTC)."""
from __future__ import annotations

import os
import time


def use_site_clock(timezone: str) -> None:
    """Local time in this process (and its children) becomes `timezone` (an IANA name the config
    has checked)."""
    if os.environ.get("TZ") != timezone:
        os.environ["TZ"] = timezone
        time.tzset()
