"""Toll-fraud limits on calls out over the trunks, per extension and for the whole site
(`security.outside_calls`): concurrent calls, calls in the last hour, talk minutes today.

A call over a limit is refused before it reaches a trunk, the log says why, and the trip is kept
in DATA_DIR/toll-alarm.json for `edgepbx status` and the portal's fleet alarms. Every call with
a leg out over a trunk counts towards the concurrency limits: a call placed by a phone, an
outside caller forwarded out by the inbound scenario, a transfer to an outside number.
"""
from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from ..cdr import CdrStore, now
from ..config import Config, OutsideCallLimit
from ..files import read_state_json, write_state_json
from .table import CallTable

log = logging.getLogger(__name__)
ALARM_FILE = "toll-alarm.json"
ALARM_SHOWN_FOR = timedelta(hours=24)


def over_limit(limit: OutsideCallLimit, live: int, calls_last_hour: int, seconds_today: int) -> str | None:
    """Which of `limit` one more call out would break, in words; None when it may go."""
    if limit.concurrent and live >= limit.concurrent:
        return f"{live} calls out at once (limit {limit.concurrent})"
    if limit.calls_per_hour and calls_last_hour >= limit.calls_per_hour:
        return f"{calls_last_hour} calls out in the last hour (limit {limit.calls_per_hour})"
    if limit.minutes_per_day and seconds_today >= limit.minutes_per_day * 60:
        return f"{seconds_today // 60} minutes out today (limit {limit.minutes_per_day})"
    return None


class OutsideCallLimits:
    def __init__(self, cfg: Config, store: CdrStore, table: CallTable):
        self.cfg, self.store, self.table = cfg, store, table

    def refusal(self, extension: str | None, asking: object = None) -> str | None:
        """Why one more call out now may not go (None: it may): `extension` places it (None: an
        outside caller forwarded out, counted for the site only); `asking`, the call that wants to
        go out, is not counted as one already up. Trips raise the alarm."""
        security = self.cfg.security
        moment = datetime.now().astimezone()
        hour_ago = moment - timedelta(hours=1)
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        live = self.table.calls_out(except_call=asking)
        scopes = [("the site", security.per_site, None, len(live))]
        if extension is not None:
            scopes.insert(0, ("extension " + extension, security.per_extension, extension,
                              sum(call.src == extension for call in live)))
        for scope, limit, who, up in scopes:
            try:
                calls, seconds = self.store.outside_usage(who, hour_ago, midnight)
            except sqlite3.Error as exc:  # a locked or broken database must not open the gate
                log.error("outside-call limits: cannot read the call records (%s); refusing the call", exc)
                return "the call records cannot be read to check the limits"
            reason = over_limit(limit, up, calls, seconds)
            if reason:
                reason = f"{scope}: {reason}"
                log.error("TOLL ALARM: call out refused, %s", reason)
                try:
                    write_state_json(self.cfg.data_dir / ALARM_FILE, {"at": now(), "reason": reason})
                except OSError as exc:  # a full disk: the call is still refused, the log keeps the alarm
                    log.error("toll alarm not kept for edgepbx status: %s", exc)
                return reason
        return None


def recent_toll_alarm(data_dir: Path) -> dict | None:
    """The last limit trip if it is under a day old ({"at", "reason"}), for status and heartbeats."""
    alarm = read_state_json(data_dir / ALARM_FILE)
    try:
        when = datetime.fromisoformat(alarm["at"])
    except (KeyError, TypeError, ValueError):
        return None
    return alarm if datetime.now().astimezone() - when < ALARM_SHOWN_FOR else None
