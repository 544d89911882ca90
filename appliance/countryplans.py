"""The countries' dial plans: appliance/dialplans/<COUNTRY>.yaml (data, not code), read once each.
Below both the config loader (which checks site.country against them) and the dial plan."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

PLANS = Path(__file__).with_name("dialplans")
COUNTRIES = tuple(sorted(p.stem for p in PLANS.glob("*.yaml")))


@dataclass(frozen=True)
class CountryRule:
    name: str
    pattern: re.Pattern
    number: str
    klass: str


@cache
def country_rules(country: str, area_code: str) -> tuple[str, tuple[CountryRule, ...]]:
    data = yaml.safe_load((PLANS / f"{country}.yaml").read_text())
    city_rest = max(0, int(data.get("local_digits", 10)) - len(area_code) - 1)
    rules = []
    for rule in data["rules"]:
        if "@city_rest@" in rule["pattern"] and not area_code:
            continue  # short city numbers need site.area_code
        pattern = rule["pattern"].replace("@city_rest@", str(city_rest))
        rules.append(CountryRule(rule["name"], re.compile(pattern), rule["number"], rule["class"]))
    return str(data["country_code"]), tuple(rules)
