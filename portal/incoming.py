"""What the incoming-calls page shows and saves: the greetings and music, how long the box waits
for a dialled extension, the office's hours and holidays, and who rings by day and at night (ring
groups one after another, each all at once or in order, then an outside number when nobody
answers). Read from the config's own text, so a scenario written by hand is shown as written;
the form's shapes are checked here (so the page says what is wrong beside the field, in its
language), the rest by the box's own validator."""
from __future__ import annotations

import re
from datetime import date
from typing import Callable

from . import config_edit
from .config_edit import EditRefused
from .configs import change_said

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SCENARIOS = ("day", "night")
MENU_DIGITS = tuple("1234567890")  # "press 1 for sales": one ring group per digit on the page
MAX_STEPS = 6  # ring groups a scenario may have on the page (a longer one is edited as text)
HOURS = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d")
OUTSIDE_NUMBER = re.compile(r"\+?[0-9]{3,20}")


def sound_section(slot: str) -> str:
    """The config section a sound slot lives in (music on hold is a feature of transfers)."""
    return "features" if slot == "music_on_hold" else "inbound"


def read(text: str) -> dict:
    """The page's view of the config: each sound's name as written, the scenario as rows."""
    inbound = config_edit.section(text, "inbound")
    features = config_edit.section(text, "features")
    hours = inbound.get("hours") if isinstance(inbound.get("hours"), dict) else {}
    holidays = inbound.get("holidays") if isinstance(inbound.get("holidays"), list) else []
    view = {"sounds": {"greeting": inbound.get("greeting"), "night_greeting": inbound.get("night_greeting"),
                       "music_on_hold": features.get("music_on_hold")},
            "digit_timeout": inbound.get("digit_timeout", 5),
            "hours": {day: str(hours.get(day, "")) for day in WEEKDAYS},
            "holidays": "\n".join(str(h) for h in holidays)}
    for which in SCENARIOS:
        view[which], view[which + "_forward"] = _rows(inbound.get(which))
        view[which + "_set"] = which in inbound
    menu = inbound.get("menu") if isinstance(inbound.get("menu"), dict) else {}
    view["menu"] = {digit: _first_row(menu.get(digit)) for digit in MENU_DIGITS}
    own = inbound.get("numbers") if isinstance(inbound.get("numbers"), dict) else {}
    view["numbers"] = {str(number).lstrip("+"): _first_row(steps) for number, steps in own.items()}
    return view


def _first_row(steps: object) -> dict:
    """A menu digit's or a number's group as the page shows it: its first ring group."""
    return (_rows(steps)[0] or [{"ring": [], "strategy": "all", "timeout": ""}])[0]


def with_dids(view: dict, dids: list[str]) -> dict:
    """The numbers the page offers a scenario for: the trunks' DIDs, and any the config names."""
    rows = {did.lstrip("+"): _first_row(None) for did in dids}
    return rows | view.get("numbers", {})


def _rows(steps: object) -> tuple[list[dict], str]:
    rows, forward = [], ""
    for step in steps if isinstance(steps, list) else []:
        if not isinstance(step, dict):
            continue
        if "forward_external" in step:
            forward = str(step["forward_external"])
            continue
        members = step.get("ring", step.get("forward"))
        members = [str(m) for m in members] if isinstance(members, list) else [str(members)]
        rows.append({"ring": members, "strategy": str(step.get("strategy", "all")),
                     "timeout": str(step.get("timeout", ""))})
    return rows, forward


def edit_from_form(fields: dict[str, str], numbers: list[str], dids: tuple[str, ...] = ()) \
        -> tuple[Callable[[str], str], str]:
    """The scenario form as an edit of the config (EditRefused names the field that is wrong)."""
    try:
        digit_timeout = int(fields.get("digit_timeout", "").strip())
    except ValueError:
        raise EditRefused("digit_timeout_shape", "digit_timeout") from None
    if not 1 <= digit_timeout <= 60:
        raise EditRefused("digit_timeout_shape", "digit_timeout")
    hours = {}
    for day in WEEKDAYS:
        span = "".join(fields.get(f"hours-{day}", "").split())
        if span and (not HOURS.fullmatch(span) or span[:5] >= span[6:]):
            raise EditRefused("hours_shape", f"hours-{day}")
        if span:
            hours[day] = span
    holidays = []
    for word in re.split(r"[\s,;]+", fields.get("holidays", "").strip()):
        if word:
            try:
                holidays.append(date.fromisoformat(word).isoformat())
            except ValueError:
                raise EditRefused("holiday_shape", "holidays") from None
    values: dict[str, object] = {"digit_timeout": digit_timeout, "hours": hours or None,
                                 "holidays": sorted(set(holidays)) or None}
    for which in SCENARIOS:
        values[which] = _steps(fields, which, numbers) or None
    values["menu"] = _groups(fields, "menu", MENU_DIGITS, numbers) or None
    values["numbers"] = _groups(fields, "number", tuple(d.lstrip("+") for d in dids), numbers) or None
    summary = change_said("incoming", hours=len(hours), holidays=len(set(holidays)))
    return (lambda text: config_edit.set_section(text, "inbound", values)), summary


def _groups(fields: dict[str, str], prefix: str, keys: tuple[str, ...], numbers: list[str]) -> dict[str, list[dict]]:
    """A menu digit's or a dialled number's one ring group (`menu-1-ring-102`, `number-7831…-ring-103`)."""
    out = {}
    for key in keys:
        members = [n for n in numbers if fields.get(f"{prefix}-{key}-ring-{n}") == "on"]
        if members:
            order = {"strategy": "order"} if fields.get(f"{prefix}-{key}-strategy") == "order" else {}
            out[key] = [{"ring": members} | order]
    return out


def _steps(fields: dict[str, str], which: str, numbers: list[str]) -> list[dict]:
    steps: list[dict] = []
    for row in range(MAX_STEPS):
        members = [n for n in numbers if fields.get(f"{which}-{row}-ring-{n}") == "on"]
        if not members:
            continue
        step: dict[str, object] = {"ring": members}
        if fields.get(f"{which}-{row}-strategy") == "order":
            step["strategy"] = "order"
        timeout = fields.get(f"{which}-{row}-timeout", "").strip()
        if timeout:
            if not timeout.isdigit() or not 1 <= int(timeout) <= 600:
                raise EditRefused("ring_timeout_shape", f"{which}-{row}-timeout")
            step["timeout"] = int(timeout)
        steps.append(step)
    forward = re.sub(r"[\s()-]", "", fields.get(f"{which}-forward", ""))
    if forward:
        if not OUTSIDE_NUMBER.fullmatch(forward):
            raise EditRefused("forward_shape", f"{which}-forward")
        steps.append({"forward_external": forward})
    return steps
