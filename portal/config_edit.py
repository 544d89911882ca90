"""What the configurator's forms do to an office config: small edits of the YAML text that keep
every comment, key order and quoting of the rest of the file (ruamel.yaml's round trip), so an
operator who also edits the text finds it as they left it.

Each edit takes the text and returns the new text; it refuses (EditRefused, with an i18n key and
the field it is about) what cannot be done at all, and leaves every other check to the box's own
validator, which the caller runs on the result (portal/configs.py)."""
from __future__ import annotations

import io
import re
import secrets
from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

EXTENSION_NUMBER = re.compile(r"[0-9]{2,6}")
MAX_NAME = 64


@dataclass
class EditRefused(Exception):
    """`key` names the i18n text the page shows beside `field` (a form input's name)."""
    key: str
    field: str = ""


BLOCK_KEY = re.compile(r"^( *)[^\s#-][^#]*:\s*(#.*)?$")
BLOCK_ITEM = re.compile(r"^( *)- ")


def _indent(text: str) -> tuple[int, int]:
    """How far the file indents a list under its key (`sequence`, `offset` in ruamel's terms):
    ruamel writes every list one way, so it is told the file's own way (`  - ` by default)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for before, line in zip(lines, lines[1:]):
        key, item = BLOCK_KEY.match(before), BLOCK_ITEM.match(line)
        if key and item and len(item.group(1)) >= len(key.group(1)):
            offset = len(item.group(1)) - len(key.group(1))
            return offset + 2, offset
    return 4, 2


def _yaml(text: str = "") -> YAML:
    yaml = YAML()  # round trip: comments, order, flow or block style and quotes are kept
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the office wrote on one
    yaml.brace_single_entry_mapping_in_flow_sequence = True  # [{ring: [...]}], not the terse [ring: [...]]
    sequence, offset = _indent(text)
    yaml.indent(mapping=2, sequence=sequence, offset=offset)
    return yaml


def _load(text: str) -> CommentedMap:
    try:
        doc = _yaml().load(text)
    except YAMLError:
        raise EditRefused("config_not_yaml") from None
    if not isinstance(doc, CommentedMap):
        raise EditRefused("config_not_yaml")
    return doc


def _dump(doc: CommentedMap, text: str, key: str = "extensions") -> str:
    """The text with only `key`'s lines written anew: every other line stays byte for byte as it
    was (ruamel's round trip keeps meaning, but writes some flow styles its own way)."""
    part = CommentedMap([(key, doc[key])])
    out = io.StringIO()
    _yaml(text).dump(part, out)
    lines = text.splitlines(keepends=True)
    starts = sorted(where[0] for k, where in doc.lc.data.items() if k != key)  # each key's first line
    if key not in doc.lc.data:  # a key the text did not have: added at its end
        return "".join(lines) + ("" if not lines or lines[-1].endswith("\n") else "\n") + out.getvalue()
    start = doc.lc.data[key][0]
    end = next((line for line in starts if line > start), len(lines))
    return "".join(lines[:start]) + out.getvalue() + "".join(lines[end:])


def new_password() -> str:
    """A SIP password for a phone: 96 random bits, in characters every phone's keypad and config
    file take (the box's validator refuses quotes, spaces and markup)."""
    return secrets.token_urlsafe(12)


def _list(doc: CommentedMap, key: str, refusal: str) -> CommentedSeq:
    """The config's list `key` (extensions, trunks), made when missing; refused when not a list."""
    found = doc.get(key)
    if found is None:
        found = doc[key] = CommentedSeq()
    if not isinstance(found, CommentedSeq):
        raise EditRefused(refusal)
    return found


def _extensions(doc: CommentedMap) -> CommentedSeq:
    return _list(doc, "extensions", "config_extensions_not_list")


def _trunks(doc: CommentedMap) -> CommentedSeq:
    return _list(doc, "trunks", "config_section_not_mapping")


def _item(items: CommentedSeq, field: str, value: str, refusal: str) -> CommentedMap:
    """The entry of a list whose `field` is `value` (an extension's number, a trunk's name)."""
    for item in items:
        if isinstance(item, CommentedMap) and str(item.get(field)) == value:
            return item
    raise EditRefused(refusal, field)


def _find(doc: CommentedMap, number: str) -> CommentedMap:
    return _item(_extensions(doc), "number", number, "extension_unknown")


def _set_keys(entry: CommentedMap, values: dict[str, object]) -> None:
    """Each value written on one line (`_flow`); None removes the key (the box's default applies)."""
    for key, value in values.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = _flow(value)


def clean_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise EditRefused("name_needed", "name")
    if len(name) > MAX_NAME:
        raise EditRefused("name_too_long", "name")
    return name


def add_extension(text: str, number: str, name: str, password: str) -> str:
    """The office's new extension, written like the ones before it (flow `{...}` or block)."""
    number = number.strip()
    if not EXTENSION_NUMBER.fullmatch(number):
        raise EditRefused("number_shape", "number")
    doc = _load(text)
    extensions = _extensions(doc)
    if any(isinstance(e, CommentedMap) and str(e.get("number")) == number for e in extensions):
        raise EditRefused("number_taken", "number")
    entry = CommentedMap([("number", DoubleQuotedScalarString(number)), ("name", DoubleQuotedScalarString(clean_name(name))),
                          ("password", password)])
    before = next((e for e in reversed(extensions) if isinstance(e, CommentedMap)), None)
    if before is not None and before.fa.flow_style():
        entry.fa.set_flow_style()
    extensions.append(entry)
    return _dump(doc, text)


def rename_extension(text: str, number: str, name: str) -> str:
    doc = _load(text)
    _find(doc, number)["name"] = DoubleQuotedScalarString(clean_name(name))
    return _dump(doc, text)


def set_password(text: str, number: str, password: str) -> str:
    doc = _load(text)
    _find(doc, number)["password"] = password
    return _dump(doc, text)


def remove_extension(text: str, number: str) -> str:
    doc = _load(text)
    extensions = _extensions(doc)
    extensions.remove(_find(doc, number))
    return _dump(doc, text)


def set_section(text: str, key: str, values: dict[str, object]) -> str:
    """Sets keys of a mapping section (`features`, `recording`, `inbound`) as the form says, leaving
    its other keys and its style as they are; None removes a key (the box's default applies). Text
    is written quoted, so a code like `0` stays the text "0"; lists and mappings on one line."""
    doc = _load(text)
    section = doc.get(key)
    if section is None:
        section = doc[key] = CommentedMap()
        section.fa.set_flow_style()
    if not isinstance(section, CommentedMap):
        raise EditRefused("config_section_not_mapping")
    _set_keys(section, values)
    return _dump(doc, text, key)


def _flow(value: object) -> object:
    """Lists and mappings written on one line (`[{ring: ["101"], timeout: 20}]`), text quoted."""
    if isinstance(value, dict):
        out = CommentedMap((k, _flow(v)) for k, v in value.items())
        out.fa.set_flow_style()
        return out
    if isinstance(value, list):
        seq = CommentedSeq(_flow(v) for v in value)
        seq.fa.set_flow_style()
        return seq
    return DoubleQuotedScalarString(value) if isinstance(value, str) else value


def section(text: str, key: str) -> dict:
    """A mapping section as plain data (what a form shows); {} when the file has none."""
    found = _load(text).get(key)
    return _plain(found) if isinstance(found, CommentedMap) else {}


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def set_extension(text: str, number: str, values: dict[str, object]) -> str:
    """Sets keys of one extension (its name, permissions, pickup group, recording, phone) as the
    extension page says; None removes a key (the box's default applies)."""
    doc = _load(text)
    _set_keys(_find(doc, number), values)
    return _dump(doc, text)


def _trunk(doc: CommentedMap, name: str) -> CommentedMap:
    return _item(_trunks(doc), "name", name, "trunk_gone")


def set_trunk(text: str, name: str, values: dict[str, object]) -> str:
    """Sets keys of trunk `name`; None removes a key; a key left out (a password not retyped) stays."""
    doc = _load(text)
    _set_keys(_trunk(doc, name), values)
    return _dump(doc, text, "trunks")


def add_trunk(text: str, name: str, values: dict[str, object]) -> str:
    doc = _load(text)
    trunks = _trunks(doc)
    if any(isinstance(t, CommentedMap) and str(t.get("name")) == name for t in trunks):
        raise EditRefused("trunk_name_taken", "name")
    trunks.append(_flow({"name": name} | {k: v for k, v in values.items() if v is not None}))  # one line
    return _dump(doc, text, "trunks")


def remove_trunk(text: str, name: str) -> str:
    doc = _load(text)
    _trunks(doc).remove(_trunk(doc, name))
    return _dump(doc, text, "trunks")
