"""The configurator's edits of the office's YAML: the rest of the file stays as the office wrote it,
and what a person types into a name field cannot become YAML structure (read back with the box's
own parser)."""
from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import parse
from portal import config_edit
from portal.config_edit import EditRefused

ROOT = Path(__file__).resolve().parent.parent
DEMO = (ROOT / "appliance" / "demo-office.yaml").read_text()


def extensions(text: str) -> dict[str, tuple[str, str | None]]:
    cfg = parse(text, Path("config"), on_box=False)
    return {e.number: (e.name, e.password) for e in cfg.extensions}


def test_adding_renaming_and_removing_changes_only_the_extension_lines():
    added = config_edit.add_extension(DEMO, "150", "Ольга  Петрова", "Zq9-secret_pass1")
    before, after = DEMO.splitlines(), added.splitlines()
    assert after[:len(before)] == before  # every line, comments included, byte for byte
    assert after[len(before):] == ['  - {number: "150", name: "Ольга Петрова", password: Zq9-secret_pass1}']
    assert extensions(added)["150"] == ("Ольга Петрова", "Zq9-secret_pass1")
    renamed = config_edit.rename_extension(added, "150", "Olga")
    assert extensions(renamed)["150"] == ("Olga", "Zq9-secret_pass1")
    assert config_edit.set_password(renamed, "150", "another-pass-1") != renamed
    assert config_edit.remove_extension(renamed, "150") == DEMO


def test_a_flow_style_scenario_after_the_extensions_is_left_as_written():
    text = ('site: {name: x}\ndata_dir: /tmp/x\nextensions:\n  - {number: "101", name: A}\n'
            '# the day\'s calls\ninbound: {day: [{ring: ["101"]}]}\n')
    added = config_edit.add_extension(text, "102", "B", "pw-102-secret")
    assert added.endswith('# the day\'s calls\ninbound: {day: [{ring: ["101"]}]}\n')
    assert set(extensions(added)) == {"101", "102"}


@pytest.mark.parametrize("name", ['a"b', "x: y", "# not a comment", "{number: '999'}", "line\nbreak: 1", "\\u0000",
                                  "- item", "&anchor *alias", "ТОО «Ромашка»", "'quoted'"])
def test_whatever_is_typed_as_a_name_stays_that_name(name):
    added = config_edit.add_extension(DEMO, "150", name, "pw-150-secret")
    assert extensions(added)["150"][0] == " ".join(name.split())
    assert set(extensions(added)) == set(extensions(DEMO)) | {"150"}  # and nothing else appeared


def test_what_cannot_be_done_is_refused_with_the_field_it_is_about():
    for number in ("1", "1234567", "12a", ""):
        with pytest.raises(EditRefused) as refused:
            config_edit.add_extension(DEMO, number, "X", "pw-secret-1")
        assert (refused.value.key, refused.value.field) == ("number_shape", "number")
    with pytest.raises(EditRefused) as taken:
        config_edit.add_extension(DEMO, "101", "X", "pw-secret-1")
    assert (taken.value.key, taken.value.field) == ("number_taken", "number")
    with pytest.raises(EditRefused) as blank:
        config_edit.add_extension(DEMO, "150", "   ", "pw-secret-1")
    assert blank.value.field == "name"
    with pytest.raises(EditRefused) as unknown:
        config_edit.rename_extension(DEMO, "999", "X")
    assert unknown.value.key == "extension_unknown"
    with pytest.raises(EditRefused) as not_yaml:
        config_edit.add_extension("[1, 2", "150", "X", "pw-secret-1")
    assert not_yaml.value.key == "config_not_yaml"


def test_passwords_are_random_and_acceptable_to_the_box():
    made = {config_edit.new_password() for _ in range(200)}
    assert len(made) == 200 and all(len(p) == 16 for p in made)
    text = DEMO
    for i, password in enumerate(sorted(made)[:20]):
        text = config_edit.add_extension(text, f"2{i:02d}", f"P{i}", password)
    assert {extensions(text)[f"2{i:02d}"][1] for i in range(20)} == set(sorted(made)[:20])


def incoming_form(**fields: str) -> dict[str, str]:
    return {"digit_timeout": "4"} | fields


def test_the_incoming_calls_form_writes_hours_holidays_and_ring_groups_the_box_reads():
    """Ticked extensions become ring groups in order, an outside number ends the scenario, hours
    and holidays are written as the box reads them; the lines before stay as they were."""
    from portal import incoming

    numbers = ["101", "102", "103", "104", "105"]
    edit, _ = incoming.edit_from_form(incoming_form(**{
        "hours-mon": "09:00-18:00", "hours-fri": " 09:00 - 17:00 ", "holidays": "2027-01-07\n2027-01-01, 2027-01-07",
        "day-0-ring-101": "on", "day-0-ring-102": "on", "day-0-timeout": "15",
        "day-2-ring-104": "on", "day-2-strategy": "order", "day-forward": "+7 (916) 123-45-67",
        "night-0-ring-105": "on", "day-0-ring-999": "on", "menu-2-ring-103": "on", "menu-2-ring-104": "on",
        "menu-2-strategy": "order", "number-78312000001-ring-103": "on"}), numbers, ("78312000001",))
    text = edit(DEMO)
    assert text.startswith(DEMO.split("\nextensions:")[0])
    cfg = parse(text, Path("config"), on_box=False)
    assert cfg.inbound.digit_timeout == 4
    assert cfg.inbound.hours == {"mon": ("09:00", "18:00"), "fri": ("09:00", "17:00")}
    assert cfg.inbound.holidays == {"2027-01-01", "2027-01-07"}
    assert [(s.kind, s.targets, s.timeout) for s in cfg.inbound.day] == [
        ("ring", ["101", "102"], 15), ("ring", ["104"], 30), ("external", ["+79161234567"], 30)]
    assert [s.targets for s in cfg.inbound.night] == [["105"]]
    assert {d: [s.targets for s in steps] for d, steps in cfg.inbound.menu.items()} == {"2": [["103"], ["104"]]}
    assert {n: [s.targets for s in steps] for n, steps in cfg.inbound.numbers.items()} == {"78312000001": [["103"]]}
    view = incoming.read(text)  # the page shows what it saved
    assert view["day"][0] == {"ring": ["101", "102"], "strategy": "all", "timeout": "15"}
    assert view["day_forward"] == "+79161234567" and view["hours"]["fri"] == "09:00-17:00"
    assert view["menu"]["2"] == {"ring": ["103", "104"], "strategy": "order", "timeout": ""}
    assert incoming.with_dids(view, ["+78312000000"]) == {"78312000000": {"ring": [], "strategy": "all", "timeout": ""},
                                                          "78312000001": {"ring": ["103"], "strategy": "all", "timeout": ""}}
    # Nobody ticked and no hours: the keys go, and the box's defaults apply again.
    cleared, _ = incoming.edit_from_form(incoming_form(), numbers)
    cfg = parse(cleared(text), Path("config"), on_box=False)
    assert cfg.inbound.day is None and cfg.inbound.hours is None and not cfg.inbound.holidays and not cfg.inbound.menu


@pytest.mark.parametrize("fields, field", [
    ({"digit_timeout": "0"}, "digit_timeout"),
    ({"hours-tue": "18:00-09:00"}, "hours-tue"),
    ({"hours-wed": "9-18"}, "hours-wed"),
    ({"holidays": "2027-02-30"}, "holidays"),
    ({"day-1-ring-101": "on", "day-1-timeout": "-5"}, "day-1-timeout"),
    ({"night-forward": "101; rm -rf"}, "night-forward"),
    ({"day-forward": '"}, {ring: [101]'}, "day-forward"),
])
def test_a_wrong_incoming_field_is_refused_with_its_name(fields, field):
    from portal import incoming

    with pytest.raises(EditRefused) as refused:
        incoming.edit_from_form(incoming_form(**fields), ["101"])
    assert refused.value.field == field


def test_the_extension_page_writes_permissions_pickup_group_recording_and_a_phone_with_keys():
    from portal import extension_form

    edit, _ = extension_form.edit_from_form({
        "name": " Склад  ", "permissions": "international", "pickup_group": "store", "phone_mac": "80-5e-c0-11-22-33",
        "phone_model": "yealink:T46U", "key-0-type": "blf", "key-0-value": "101", "key-0-label": "Ресепшн",
        "key-1-type": "", "key-2-type": "pickup"}, "105")
    text = edit(DEMO)
    before, after = DEMO.splitlines(), text.splitlines()
    assert after[:-1] == before[:-1]  # only 105's own line changes
    cfg = parse(text, Path("config"), on_box=False)
    e = cfg.extension("105")
    assert (e.name, e.permissions, e.pickup_group, e.record) == ("Склад", "international", "store", False)
    assert (e.phone.mac, e.phone.vendor, e.phone.model) == ("805ec0112233", "yealink", "T46U")
    assert [(k.type, k.value, k.label) for k in e.phone.keys] == [("blf", "101", "Ресепшн"), ("pickup", "", "pickup")]
    # Defaults again: recording on, the office's group, no phone: those keys leave the line.
    again, _ = extension_form.edit_from_form({"name": "Склад", "permissions": "long_distance", "recording": "on",
                                              "pickup_group": "office"}, "105")
    assert again(text).splitlines()[-1] == '  - {number: "105", name: "Склад", permissions: "long_distance"}'


@pytest.mark.parametrize("fields, field", [
    ({"permissions": "everything"}, "permissions"),
    ({"pickup_group": "a b"}, "pickup_group"),
    ({"phone_mac": "80:5e:c0:11:22"}, "phone_mac"),
    ({"phone_mac": "805ec0112233", "phone_model": "yealink:T99"}, "phone_model"),
    ({"phone_mac": "805ec0112233", "phone_model": "yealink:T46U", "key-3-type": "blf"}, "key-3-value"),
    ({"phone_mac": "805ec0112233", "phone_model": "yealink:T46U", "key-0-type": "speed_dial", "key-0-value": "1; x"},
     "key-0-value"),
    ({"phone_mac": "805ec0112233", "phone_model": "yealink:T46U", "key-0-type": "reboot"}, "key-0-type"),
])
def test_a_wrong_extension_field_is_refused_with_its_name(fields, field):
    from portal import extension_form

    with pytest.raises(EditRefused) as refused:
        extension_form.edit_from_form({"name": "X", "permissions": "internal"} | fields, "105")
    assert refused.value.field == field


def test_the_trunks_page_adds_changes_and_removes_a_trunk_and_keeps_an_untyped_password():
    from portal import trunk_form

    add, _ = trunk_form.add_trunk({"name": "main", "host": "sip.provider.example", "port": "5060", "register": "on",
                                   "username": "8312000000", "password": "Pw-1!x", "caller_id": "+7 831 200-00-00",
                                   "dids": "78312000000\n78312000001"}, 0)
    text = add(DEMO)
    assert text.startswith(DEMO)  # the new trunk is added at the end; nothing before it changes
    changed, _ = trunk_form.edit_trunk({"host": "sip2.provider.example", "port": "5080", "transport": "tcp",
                                        "username": "8312000000", "password": "", "number_format": "national",
                                        "dids": "78312000000"}, "main")
    cfg = parse(changed(text), Path("config"), on_box=False)
    (trunk,) = cfg.trunks
    assert (trunk.host, trunk.port, trunk.transport, trunk.register, trunk.number_format) == (
        "sip2.provider.example", 5080, "tcp", False, "national")
    assert trunk.password == "Pw-1!x" and trunk.caller_id == "" and trunk.dids == ["78312000000"]
    area, _ = trunk_form.edit_area({"country": "RU", "area_code": " 831 "}, ("RU",))
    assert parse(area(text), Path("config"), on_box=False).area_code == "831"
    removed, _ = trunk_form.remove_trunk("main")
    assert parse(removed(text), Path("config"), on_box=False).trunks == []


@pytest.mark.parametrize("fields, field", [
    ({"host": "sip.example\"; rm"}, "host"),
    ({"port": "70000"}, "port"),
    ({"password": "with space"}, "password"),
    ({"username": "o'brien"}, "username"),
    ({"caller_id": "8312000000"}, "caller_id"),
    ({"dids": "7831200000x"}, "dids"),
    ({"name": "a b"}, "name"),
])
def test_a_wrong_trunk_field_is_refused_with_its_name(fields, field):
    from portal import trunk_form

    with pytest.raises(EditRefused) as refused:
        trunk_form.add_trunk({"name": "main", "host": "sip.example"} | fields, 0)
    assert refused.value.field == field


def test_the_boxs_refusals_a_form_can_cause_are_said_in_the_readers_language():
    """What the box's validator says when a form's change breaks the file, read from the box's own
    message for each case, in Russian; the numbers and names stay as typed."""
    from portal import boxwords, config_edit
    from portal.configs import validation_errors
    from portal.i18n import WORDS

    scenario = DEMO + 'inbound: {day: [{ring: ["104"]}]}\n'
    cases = [
        (config_edit.remove_extension(scenario, "104"), "Сценарий входящих звонков звонит на 104, а такого добавочного нет."),
        (config_edit.set_section(DEMO, "features", {"pickup_code": "0000#0"}), "Код: от 1 до 4 знаков из 0-9 * #."),
        (config_edit.set_section(DEMO, "features", {"transfer_key": "*"}),
         "Клавиша перевода не может совпадать с клавишей отмены перевода (*)."),
    ]
    for text, russian in cases:
        (error,) = validation_errors(text)
        assert str(boxwords.said(error, WORDS["ru"])).replace('<span translate="no">', "").replace("</span>", "") \
            == russian, error
    assert boxwords.said("config:3: something new the portal has not heard of", WORDS["ru"]) is None
