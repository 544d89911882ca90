"""The dial plan of the memo (Russian numbering), office rules and permissions, through the real
`edgepbx dialplan test` command."""
from __future__ import annotations

import json
import subprocess

import pytest

from appliance.dialplan import format_for_trunk
from conftest import EDGEPBX, ROOT

OFFICE = """\
site: {name: "NN office", country: RU, area_code: "831"}
data_dir: ./var
trunks:
  - {name: main, host: 127.0.0.1, port: 5099, username: "8312000000", password: trunk-pass-1, caller_id: "+78312000000"}
  - {name: backup, host: 127.0.0.2, register: false, number_format: national}
  - {name: cheap-intl, host: 127.0.0.3, register: false}
dialplan:
  rules:
    - {pattern: '^8109(\\d+)$', number: '+9{1}', class: denied}
    - {pattern: '^810(\\d{6,15})$', number: '+{1}', class: international, trunks: [cheap-intl, main]}
extensions:
  - {number: "101", name: "Reception", permissions: international}
  - {number: "102", name: "Sales", permissions: city}
  - {number: "106", name: "Warehouse"}
  - {number: "103", name: "Intern", permissions: internal}
  - {number: "105", name: "Hotline buyer", permissions: premium}
"""


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    path = tmp_path_factory.mktemp("dialplan") / "office.yaml"
    path.write_text(OFFICE)
    return path


def route(office, number: str, caller: str | None = None) -> dict:
    args = EDGEPBX + ["dialplan", "test", "--config", str(office), number, "--json"]
    if caller:
        args += ["--from", caller]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout)


@pytest.mark.parametrize("dialled, klass, number, trunks", [
    ("101", "internal", "101", []),                                  # extensions win
    ("0", "feature", "0", []), ("0#", "feature", "0", []),           # pickup, with or without #
    ("**102", "feature", "**102", []),                               # directed pickup
    ("89101234567", "mobile", "+79101234567", ["main", "backup", "cheap-intl"]),   # memo: mobile
    ("4160161", "local", "+78314160161", ["main", "backup", "cheap-intl"]),        # memo: city, short form
    ("2211832", "local", "+78312211832", ["main", "backup", "cheap-intl"]),
    ("88312123456", "national", "+78312123456", ["main", "backup", "cheap-intl"]), # memo: 8 + area code
    ("84951234567#", "national", "+74951234567", ["main", "backup", "cheap-intl"]),
    ("81049301234567", "international", "+49301234567", ["cheap-intl", "main"]),   # memo: 8 10 + country (office rule)
    ("+74951234567", "national", "+74951234567", ["main", "backup", "cheap-intl"]),  # typed in full
    ("79101234567", "mobile", "+79101234567", ["main", "backup", "cheap-intl"]),
    ("88091234567", "premium", "+78091234567", ["main", "backup", "cheap-intl"]),  # paid-service numbers
    ("+78091234567", "premium", "+78091234567", ["main", "backup", "cheap-intl"]),
    ("112", "emergency", "112", ["main", "backup", "cheap-intl"]),
    ("104", "emergency", "104", ["main", "backup", "cheap-intl"]),   # 101-103 are extensions here, 104 is not
    ("810912345678", "denied", "+912345678", []),                    # an office rule blocks +9...
    ("12", "denied", "12", []),
])
def test_memo_numbers_are_classified_rewritten_and_routed(office, dialled, klass, number, trunks):
    got = route(office, dialled)
    assert (got["class"], got["number"], got["trunks"]) == (klass, number, trunks), got


@pytest.mark.parametrize("caller, dialled, allowed", [
    ("102", "4160161", True), ("102", "89101234567", False), ("102", "112", True),
    ("103", "4160161", False), ("103", "101", True), ("103", "0", True), ("103", "112", True),
    ("101", "81049301234567", True),
    # the default (long_distance): the whole country and mobiles, nothing abroad
    ("106", "89101234567", True), ("106", "88312123456", True), ("106", "81049301234567", False),
    ("101", "88091234567", False), ("105", "88091234567", True),  # premium rate: off unless allowed
])
def test_permissions_deny_classes_but_never_emergency(office, caller, dialled, allowed):
    got = route(office, dialled, caller)
    assert (got["class"] != "denied") == allowed, got
    if not allowed:
        assert got["trunks"] == [] and "may call" in got["reason"]


@pytest.mark.parametrize("fmt, expected", [("e164", "+78312123456"), ("national", "88312123456"),
                                           ("plain", "78312123456")])
def test_numbers_go_to_each_trunk_in_the_format_it_wants(fmt, expected):
    assert format_for_trunk("+78312123456", fmt, "7") == expected
    assert format_for_trunk("112", fmt, "7") == "112"


def test_short_city_numbers_need_an_area_code(tmp_path):
    path = tmp_path / "office.yaml"
    path.write_text(OFFICE.replace(', area_code: "831"', ""))
    assert route(path, "4160161")["class"] == "denied"
    assert route(path, "89101234567")["class"] == "mobile"


@pytest.mark.parametrize("broken, words", [
    (OFFICE.replace("country: RU", "country: XX"), "no dial plan for 'XX'"),
    (OFFICE.replace('area_code: "831"', 'area_code: "8x1"'), "site.area_code must be 1 to 5 digits"),
    (OFFICE.replace("trunks: [cheap-intl, main]", "trunks: [cheap-intl, nowhere]"), "unknown trunk(s): nowhere"),
    (OFFICE.replace("class: international, trunks", "class: interplanetary, trunks"), "dial rule class must be"),
    (OFFICE.replace("permissions: city", "permissions: galaxy"), "permissions must be one of"),
    (OFFICE.replace("number_format: national", "number_format: roman"), "number_format must be one of"),
    (OFFICE.replace('caller_id: "+78312000000"', 'caller_id: "8312000000"'), "caller_id must be E.164"),
])
def test_dialplan_config_errors_name_the_line(tmp_path, broken, words):
    path = tmp_path / "office.yaml"
    path.write_text(broken)
    result = subprocess.run(EDGEPBX + ["check", "--config", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and words in result.stderr and f"{path}:" in result.stderr, result.stderr
