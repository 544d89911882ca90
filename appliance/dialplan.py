"""The office dial plan: what a dialled string is, what number goes out, over which trunks.

Order: extensions, then feature codes (pickup), then the office's own rules (config `dialplan.rules`),
then the country's rules (appliance/dialplans/<COUNTRY>.yaml, data, not code). An extension's
`permissions` may deny a class; emergency calls are never denied.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .config import Config
from .countryplans import country_rules

# What each permission level allows, on top of internal calls and feature codes.
ALLOWED = {
    "internal": set(),
    "city": {"local"},
    "long_distance": {"local", "national", "mobile"},
    "international": {"local", "national", "mobile", "international"},
    "premium": {"local", "national", "mobile", "international", "premium"},  # paid-service numbers too
}


@dataclass
class Route:
    dialled: str
    klass: str            # internal, feature, emergency, local, national, mobile, international, premium, denied
    number: str           # what is sent: the extension, the code, or E.164 with + for external numbers
    trunks: list[str] = field(default_factory=list)
    rule: str = ""
    reason: str = ""      # why denied

    def as_dict(self) -> dict:
        return {"dialled": self.dialled, "class": self.klass, "number": self.number, "trunks": self.trunks,
                "rule": self.rule, **({"reason": self.reason} if self.reason else {})}


def format_for_trunk(e164: str, number_format: str, country_code: str) -> str:
    """The number as a provider wants it: +78312345678 (e164), 88312345678 (national), 78312345678 (plain)."""
    if not e164.startswith("+"):
        return e164  # emergency and the like go as dialled
    if number_format == "plain":
        return e164[1:]
    if number_format == "national" and e164.startswith("+" + country_code):
        return "8" + e164[1 + len(country_code):]
    if number_format == "national":
        return "810" + e164[1:]
    return e164


class DialPlan:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.extensions = {e.number: e for e in cfg.extensions}
        self.country_code, self.rules = country_rules(cfg.country, cfg.area_code)
        self.all_trunks = [t.name for t in cfg.trunks]

    def route(self, dialled: str, caller: str | None = None) -> Route:
        digits = re.sub(r"[\s\-()]", "", dialled)
        if digits.endswith("#") and len(digits) > 1:
            digits = digits[:-1]  # "#" only means "send now"
        features = self.cfg.features
        if digits in self.extensions:
            return Route(dialled, "internal", digits, rule="extension")
        if digits == features.pickup_code:
            return Route(dialled, "feature", digits, rule="pickup")
        prefix = features.directed_pickup_prefix
        if digits.startswith(prefix) and digits[len(prefix):] in self.extensions:
            return Route(dialled, "feature", digits, rule="directed pickup")
        route = self._external(dialled, digits)
        if route is None:
            return Route(dialled, "denied", digits, reason="no rule matches this number")
        ext = self.extensions.get(caller or "")
        if ext is not None and route.klass != "emergency" and route.klass not in ALLOWED[ext.permissions]:
            return Route(dialled, "denied", route.number, rule=route.rule,
                         reason=f"extension {ext.number} may call {ext.permissions.replace('_', ' ')} numbers only")
        return route

    def _external(self, dialled: str, digits: str) -> Route | None:
        for rule in self.cfg.dial_rules:
            found = re.fullmatch(rule.pattern, digits)
            if found:
                number = rule.number.format(found.group(0), *found.groups(), area_code=self.cfg.area_code)
                trunks = rule.trunks or ([] if rule.class_ == "denied" else self.all_trunks)
                return Route(dialled, rule.class_, number, trunks, rule=f"office rule (line {rule.line})")
        for rule in self.rules:
            found = rule.pattern.fullmatch(digits)
            if found:
                number = rule.number.format(found.group(0), *found.groups(), area_code=self.cfg.area_code)
                return Route(dialled, rule.klass, number, list(self.all_trunks), rule=rule.name)
        return None
