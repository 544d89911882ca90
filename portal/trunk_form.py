"""The trunks page's forms as edits of the config: a provider's trunk (host, credentials,
registration, caller ID, number format, the office's numbers on it) and the site's dialling area
(country and area code, which the dial plan needs). A password is never shown: left empty, the
one the box has stays. Shapes are checked here, beside their fields; the box's validator judges
the rest."""
from __future__ import annotations

import re
from typing import Callable

from appliance.config import MAX_TRUNKS

from . import config_edit
from .config_edit import EditRefused
from .configs import change_said

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
SECRET = re.compile(r"[!#-%(-;=?-\[\]-~]{1,128}")  # printable ASCII without space, quotes, backslash, < > &
CALLER_ID = re.compile(r"\+[1-9][0-9]{6,14}")
DID = re.compile(r"\+?[0-9]{3,20}")


def trunk_values(fields: dict[str, str]) -> dict[str, object]:
    """A trunk's keys as the form says (EditRefused names the field that is wrong)."""
    host = fields.get("host", "").strip()
    if not HOST.fullmatch(host):
        raise EditRefused("host_shape", "host")
    port = fields.get("port", "").strip() or "5060"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise EditRefused("port_shape", "port")
    values: dict[str, object] = {"host": host, "port": int(port),
                                 "transport": "tcp" if fields.get("transport") == "tcp" else None,
                                 "register": fields.get("register") == "on"}
    username = fields.get("username", "").strip()
    if username and not SECRET.fullmatch(username):
        raise EditRefused("secret_shape", "username")
    values["username"] = username or None
    password = fields.get("password", "")
    if password:  # empty: the password the config has stays
        if not SECRET.fullmatch(password):
            raise EditRefused("secret_shape", "password")
        values["password"] = password
    caller_id = re.sub(r"[\s()-]", "", fields.get("caller_id", ""))
    if caller_id and not CALLER_ID.fullmatch(caller_id):
        raise EditRefused("caller_id_shape", "caller_id")
    values["caller_id"] = caller_id or None
    number_format = fields.get("number_format", "e164")
    values["number_format"] = number_format if number_format in ("national", "plain") else None
    dids = [re.sub(r"[()-]", "", d) for d in re.split(r"[\s,;]+", fields.get("dids", "").strip()) if d]
    if any(not DID.fullmatch(d) for d in dids):
        raise EditRefused("did_shape", "dids")
    values["dids"] = dids or None
    return values


def edit_trunk(fields: dict[str, str], name: str) -> tuple[Callable[[str], str], str]:
    values = trunk_values(fields)
    return (lambda text: config_edit.set_trunk(text, name, values)), change_said("trunk", name=name)


def add_trunk(fields: dict[str, str], count: int) -> tuple[Callable[[str], str], str]:
    name = fields.get("name", "").strip()
    if not NAME.fullmatch(name):
        raise EditRefused("trunk_name_shape", "name")
    if count >= MAX_TRUNKS:
        raise EditRefused("trunks_full", "name")
    values = trunk_values(fields)
    return (lambda text: config_edit.add_trunk(text, name, values)), change_said("trunk_add", name=name)


def remove_trunk(name: str) -> tuple[Callable[[str], str], str]:
    return (lambda text: config_edit.remove_trunk(text, name)), change_said("trunk_remove", name=name)


def edit_area(fields: dict[str, str], countries: tuple[str, ...]) -> tuple[Callable[[str], str], str]:
    country = fields.get("country", "")
    if country not in countries:
        raise EditRefused("country_unknown", "country")
    area = "".join(fields.get("area_code", "").split())
    if area and not re.fullmatch(r"[0-9]{1,5}", area):
        raise EditRefused("area_code_shape", "area_code")
    values = {"country": country, "area_code": area or None}
    return (lambda text: config_edit.set_section(text, "site", values)), change_said("area", name=f"{country} {area}")
