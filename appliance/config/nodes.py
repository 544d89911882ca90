"""Reading YAML with line numbers: PyYAML's node tree (not the loaded dict), so each error
carries the line of the offending key or value, duplicate keys are caught (PyYAML would silently
keep the last), and scalar values keep their original text ("0101" stays "0101", not octal 65).
Errors are collected, not raised, so an installer sees every one at once."""
from __future__ import annotations

import re
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Fields = dict[str, tuple[Node, Node]]  # key -> (key node, value node)
# No value of an office config is more than one line: a line break or another control character
# in one would start a new line in a file generated from it (a phone's config, Kamailio's).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class ConfigError:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class InvalidConfig(Exception):
    """Raised with every error found, not just the first, so an installer fixes them in one go."""

    def __init__(self, errors: list[ConfigError]):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def compose(text: str, shown: str) -> Node:
    """The YAML node tree of a config's text; InvalidConfig on a syntax error or an empty file."""
    try:
        root = yaml.compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise InvalidConfig([ConfigError(shown, line, f"YAML syntax error: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise InvalidConfig([ConfigError(shown, 1, f"YAML error: {exc}")]) from None
    if root is None:
        raise InvalidConfig([ConfigError(shown, 1, "config is empty")])
    return root


class Reader:
    """Typed accessors over YAML nodes that record errors instead of raising."""

    def __init__(self, path: str):
        self.path = path
        self.errors: list[ConfigError] = []

    def error(self, node: Node, message: str) -> None:
        self.errors.append(ConfigError(self.path, node.start_mark.line + 1, message))

    def mapping(self, node: Node, allowed: set[str], where: str) -> Fields:
        """Returns key -> (key node, value node); reports unknown and duplicate keys."""
        if not isinstance(node, MappingNode):
            self.error(node, f"{where} must be a mapping of keys to values")
            return {}
        out: Fields = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key is None:
                self.error(key_node, f"{where}: keys must be plain names")
            elif key not in allowed:
                self.error(key_node, f"{where}: unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")
            elif key in out:
                self.error(key_node, f"{where}: duplicate key '{key}' (first on line {out[key][0].start_mark.line + 1})")
            else:
                out[key] = (key_node, value_node)
        return out

    def text(self, node: Node, where: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.error(node, f"{where} must be a text value")
            return None
        if CONTROL.search(node.value):
            self.error(node, f"{where} must be one line of printable text (no line breaks or control characters)")
            return None
        return node.value

    def integer(self, node: Node, where: str, low: int, high: int) -> int | None:
        raw = node.value if isinstance(node, ScalarNode) else None
        if raw is None or not re.fullmatch(r"[0-9]+", str(raw)):
            self.error(node, f"{where} must be a whole number between {low} and {high}")
            return None
        value = int(raw)
        if not low <= value <= high:
            self.error(node, f"{where} must be between {low} and {high}, not {value}")
            return None
        return value

    def boolean(self, node: Node, where: str) -> bool | None:
        raw = node.value.lower() if isinstance(node, ScalarNode) else None
        if raw in ("true", "yes", "on"):
            return True
        if raw in ("false", "no", "off"):
            return False
        self.error(node, f"{where} must be true or false")
        return None

    def sequence(self, node: Node, where: str) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.error(node, f"{where} must be a list")
            return []
        return list(node.value)
