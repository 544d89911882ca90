"""Field rules declared once: a section lists its simple keys with their kind and range (or
pattern), and `read_fields` reads, checks and stores them, with the key's line on any error.
Keys that need more (addresses, lists, references to other sections) have their own readers in
sections.py."""
from __future__ import annotations

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


Rule = Union[Int, Bool, Text, Code]


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
