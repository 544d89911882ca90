"""The extension page's form as an edit of the config: name, outbound permission, pickup group,
recording, and the desk phone (MAC, model from the vendors' catalogue) with its keys. Shapes are
checked here, so the page says what is wrong beside the field in its language; the box's own
validator judges the rest (a MAC another extension has, more keys than the model has)."""
from __future__ import annotations

import re
from typing import Callable

from appliance.config import KEY_TYPES, PERMISSIONS, phone_models

from . import config_edit
from .config_edit import EditRefused
from .configs import change_said

MAX_KEYS = 60  # the largest model's keys (Fanvil X6U); each row of the form is one key
PICKUP_GROUP = re.compile(r"[A-Za-z0-9_-]{1,32}")
KEY_VALUE = re.compile(r"[0-9*#+]{0,24}")


def models() -> list[tuple[str, str, int]]:
    """(vendor, model, keys) of every phone the box can provision, for the page's list."""
    return [(vendor, model, keys) for vendor, found in sorted(phone_models().items()) for model, keys in found.items()]


def edit_from_form(fields: dict[str, str], number: str) -> tuple[Callable[[str], str], str]:
    permissions = fields.get("permissions", "")
    if permissions not in PERMISSIONS:
        raise EditRefused("permissions_unknown", "permissions")
    group = fields.get("pickup_group", "").strip()
    if group and not PICKUP_GROUP.fullmatch(group):
        raise EditRefused("pickup_group_shape", "pickup_group")
    recording = fields.get("recording") == "on"
    values: dict[str, object] = {
        "name": config_edit.clean_name(fields.get("name", "")), "permissions": permissions,
        "pickup_group": None if group in ("", "office") else group,
        "recording": None if recording else False, "phone": _phone(fields)}
    summary = change_said("extension", number=number, name=values["name"])
    return (lambda text: config_edit.set_extension(text, number, values)), summary


def _phone(fields: dict[str, str]) -> dict | None:
    mac = re.sub(r"[\s:.-]", "", fields.get("phone_mac", "")).lower()
    if not mac:
        return None
    if not re.fullmatch(r"[0-9a-f]{12}", mac):
        raise EditRefused("mac_shape", "phone_mac")
    vendor, _, model = fields.get("phone_model", "").partition(":")
    if model not in phone_models().get(vendor, {}):
        raise EditRefused("model_unknown", "phone_model")
    keys = []
    for row in range(MAX_KEYS):
        kind = fields.get(f"key-{row}-type", "")
        if not kind:
            continue
        if kind not in KEY_TYPES:
            raise EditRefused("key_type_unknown", f"key-{row}-type")
        value = "".join(fields.get(f"key-{row}-value", "").split())
        if not KEY_VALUE.fullmatch(value) or (kind in ("blf", "speed_dial") and not value):
            raise EditRefused("key_value_shape", f"key-{row}-value")
        label = " ".join(fields.get(f"key-{row}-label", "").split())[:32]
        keys.append({"type": kind} | ({"value": value} if value else {}) | ({"label": label} if label else {}))
    phone: dict[str, object] = {"mac": ":".join(mac[i:i + 2] for i in range(0, 12, 2)).upper(), "vendor": vendor,
                                "model": model}
    if keys:
        phone["keys"] = keys
    return phone
