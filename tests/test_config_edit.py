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
        "night-0-ring-105": "on", "day-0-ring-999": "on"}), numbers)
    text = edit(DEMO)
    assert text.startswith(DEMO.split("\nextensions:")[0])
    cfg = parse(text, Path("config"), on_box=False)
    assert cfg.inbound.digit_timeout == 4
    assert cfg.inbound.hours == {"mon": ("09:00", "18:00"), "fri": ("09:00", "17:00")}
    assert cfg.inbound.holidays == {"2027-01-01", "2027-01-07"}
    assert [(s.kind, s.targets, s.timeout) for s in cfg.inbound.day] == [
        ("ring", ["101", "102"], 15), ("ring", ["104"], 30), ("external", ["+79161234567"], 30)]
    assert [s.targets for s in cfg.inbound.night] == [["105"]]
    view = incoming.read(text)  # the page shows what it saved
    assert view["day"][0] == {"ring": ["101", "102"], "strategy": "all", "timeout": "15"}
    assert view["day_forward"] == "+79161234567" and view["hours"]["fri"] == "09:00-17:00"
    # Nobody ticked and no hours: the keys go, and the box's defaults apply again.
    cleared, _ = incoming.edit_from_form(incoming_form(), numbers)
    cfg = parse(cleared(text), Path("config"), on_box=False)
    assert cfg.inbound.day is None and cfg.inbound.hours is None and not cfg.inbound.holidays


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
