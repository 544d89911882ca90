"""Field rules declared once: a section lists its simple keys with their kind and range (or
pattern), and `read_fields` reads, checks and stores them, with the key's line on any error.
Keys that need more (addresses, lists, references to other sections) have their own readers in
sections.py."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Callable, Union

from yaml.nodes import Node

from .nodes import Fields, Reader


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    attr: str | None = None  # the attribute it sets, when not the key's own name

    def read(self, r: Reader, node: Node, label: str) -> int | None:
        return r.integer(node, label, self.low, self.high)


@dataclass(frozen=True)
class Bool:
    attr: str | None = None

    def read(self, r: Reader, node: Node, label: str) -> bool | None:
        return r.boolean(node, label)


@dataclass(frozen=True)
class Text:
    attr: str | None = None

    def read(self, r: Reader, node: Node, label: str) -> str | None:
        return r.text(node, label)


@dataclass(frozen=True)
class Code:
    """Text that must match `pattern`, described as `shape` in the error."""
    pattern: str
    shape: str
    attr: str | None = None

    def read(self, r: Reader, node: Node, label: str) -> str | None:
        code = r.text(node, label)
        if code is not None and not re.fullmatch(self.pattern, code):
            r.error(node, f"{label} must be {self.shape}")
            return None
        return code


HOST_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
# What would end a value early in the files made from it: quotes (Kamailio's cfg, XML attributes,
# SIP), a backslash, XML's markup characters, and white space.
SECRET_FORBIDDEN = set("\"'\\<>&") | {" "}


@dataclass(frozen=True)
class Host:
    """A host name (RFC 1123) or an IP address: what goes into SIP URIs, Kamailio's cfg and the
    box's certificate. `optional`: "" stands for the default."""
    attr: str | None = None
    optional: bool = False

    def read(self, r: Reader, node: Node, label: str) -> str | None:
        value = r.text(node, label)
        if value is None or is_host(value) or (self.optional and value == ""):
            return value
        r.error(node, f"{label} must be a host name or an IP address, not '{value}'")
        return None


def is_host(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(HOST_NAME.fullmatch(value))


@dataclass(frozen=True)
class Secret:
    """A password or user name: printable ASCII without quotes, backslash, <, >, & or spaces."""
    attr: str | None = None

    def read(self, r: Reader, node: Node, label: str) -> str | None:
        value = r.text(node, label)
        if value is None:
            return None
        if not value.isascii() or not value.isprintable() or SECRET_FORBIDDEN & set(value):
            r.error(node, f"{label} may hold letters, digits and punctuation other than quotes, backslash, "
                          "<, >, & and spaces")
            return None
        return value


Rule = Union[Int, Bool, Text, Code, Host, Secret]


def dotted(where: str) -> Callable[[str], str]:
    """Labels like `network.sip_port`."""
    return lambda key: f"{where}.{key}"


def read_fields(r: Reader, found: Fields, target: object, rules: dict[str, Rule],
                label: Callable[[str], str]) -> None:
    """Reads each key of `rules` that `found` has, in the rules' order, into `target`."""
    for key, rule in rules.items():
        if key in found:
            value = rule.read(r, found[key][1], label(key))
            if value is not None:
                setattr(target, rule.attr or key, value)


@dataclass(frozen=True)
class FileRef:
    """A file the config names (a greeting, music on hold, a certificate): the path as resolved
    against the config's folder, checked on the box itself by disk.py."""
    node: Node
    label: str          # e.g. "inbound.greeting"
    path: object        # pathlib.Path
    kind: str           # "wav" or "pem"
    target: object
    attr: str
    sha256: str | None = None  # a sound the portal sent: the file must have exactly this content
