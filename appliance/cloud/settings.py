"""The box's running settings as the customer's portal page shows them: who has which extension
and phone, pickup groups, the inbound scenario, the dial plan and the trunks' names.

Nothing secret leaves the box this way: no SIP or trunk password, no trunk user name or host.
"""
from __future__ import annotations

from ..config import Config, Step
from ..countryplans import country_rules


def _steps(steps: list[Step] | None) -> list[dict] | None:
    if steps is None:
        return None
    return [{"kind": s.kind, "targets": list(s.targets), "timeout": s.timeout} for s in steps]


def settings_summary(cfg: Config) -> dict:
    inbound = cfg.inbound
    groups: dict[str, list[str]] = {}
    for ext in cfg.extensions:
        groups.setdefault(ext.pickup_group, []).append(ext.number)
    _country_code, country = country_rules(cfg.country, cfg.area_code)
    return {
        "site": cfg.site_name, "timezone": cfg.timezone, "country": cfg.country, "area_code": cfg.area_code,
        "extensions": [{"number": e.number, "name": e.name, "permissions": e.permissions,
                        "pickup_group": e.pickup_group,
                        "phone": {"mac": e.phone.mac, "vendor": e.phone.vendor, "model": e.phone.model} if e.phone else None}
                       for e in cfg.extensions],
        "pickup_groups": groups,
        "features": {"pickup": cfg.features.pickup, "pickup_code": cfg.features.pickup_code,
                     "directed_pickup_prefix": cfg.features.directed_pickup_prefix, "transfer_key": cfg.features.transfer_key},
        "inbound": {"hours": {day: list(span) for day, span in inbound.hours.items()} if inbound.hours else None,
                    "holidays": sorted(inbound.holidays), "digit_timeout": inbound.digit_timeout,
                    "day": _steps(inbound.day), "night": _steps(inbound.night)},
        "dialplan": [{"pattern": r.pattern, "class": r.class_, "trunks": list(r.trunks)} for r in cfg.dial_rules]
                    + [{"pattern": r.pattern.pattern, "class": r.klass, "name": r.name} for r in country],
        "trunks": [{"name": t.name, "register": t.register, "dids": list(t.dids)} for t in cfg.trunks],
        "recording": cfg.recording_enabled, "no_answer_timeout": cfg.no_answer_timeout,
    }
