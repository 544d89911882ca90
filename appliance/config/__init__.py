"""The office config: one YAML file drives the box, validated with every error reported as
FILE:LINE: message.

    schema.py    the dataclasses the rest of the box reads (standard library only)
    nodes.py     YAML read as nodes with line numbers; ConfigError, InvalidConfig
    fields.py    field rules declared once (kind, range, pattern) and the reader that applies them
    sections.py  one reader per section of the file
    checks.py    checks across sections that need no disk (the portal can run them)
    disk.py      checks against the box's disk: the files the config names
    loader.py    load(path) on the box, parse(text, path, on_box=False) anywhere
"""
from .loader import load, parse
from .sections import phone_models
from .nodes import ConfigError, InvalidConfig
from .schema import (EXTENSION_NUMBER, MAX_CONCURRENT_CALLS, DEFAULT_CONCURRENT_CALLS, RTP_PORTS_PER_CALL,
                     RTP_PORTS_SPARE, CALL_CLASSES, MAX_TRUNKS, TOP_LEVEL_KEYS, VENDORS, KEY_TYPES, PhoneKey,
                     Phone, PERMISSIONS, DEFAULT_PERMISSIONS, Extension, Trunk, SOUNDS, WEEKDAYS, Step,
                     Inbound, DialRule, Features, Dhcp, Provisioning, Network, OutsideCallLimit, Security,
                     Cloud, Config, ASSETS_DIR)

__all__ = [
    "ConfigError", "InvalidConfig", "load", "parse", "phone_models", "EXTENSION_NUMBER", "MAX_CONCURRENT_CALLS",
    "DEFAULT_CONCURRENT_CALLS", "RTP_PORTS_PER_CALL", "RTP_PORTS_SPARE", "CALL_CLASSES", "MAX_TRUNKS",
    "TOP_LEVEL_KEYS", "VENDORS", "KEY_TYPES", "PhoneKey", "Phone", "PERMISSIONS", "DEFAULT_PERMISSIONS",
    "Extension", "Trunk", "SOUNDS", "WEEKDAYS", "Step", "Inbound", "DialRule", "Features", "Dhcp",
    "Provisioning", "Network", "OutsideCallLimit", "Security", "Cloud", "Config", "ASSETS_DIR",
]
