"""One phone per vendor for the provisioning tests, with the file names its firmware requests."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PhoneCase:
    vendor: str
    number: str
    mac: str          # as an installer might type it
    model: str
    device_file: str  # the per-MAC file the phone requests
    common_file: str  # a common file it requests


PHONES = [
    PhoneCase("yealink", "101", "80:5E:C0:11:22:33", "T46U", "805ec0112233.cfg", "y000000000108.cfg"),
    PhoneCase("grandstream", "102", "000b82-aabbcc", "GXP2170", "cfg000b82aabbcc.xml", "cfg.xml"),
    PhoneCase("polycom", "103", "0004F2A1B2C3", "VVX411", "0004f2a1b2c3-phone.cfg", "site.cfg"),
    PhoneCase("cisco", "104", "5006.ab11.2233", "CP-8841-3PCC", "spa5006ab112233.xml", "cp-8841-3pcc.xml"),
    PhoneCase("snom", "105", "00-04-13-44-55-66", "D785", "snomD785-000413445566.htm", "snomD785.htm"),
    PhoneCase("fanvil", "106", "0c383e778899", "X4U", "0c383e778899.cfg", "f0x4uhw1.100.cfg"),
]


def phones_yaml() -> str:
    return "\n".join(
        f'  - {{number: "{c.number}", name: "Phone {c.number}", password: "pw-{c.number}-secret", '
        f'phone: {{mac: "{c.mac}", vendor: {c.vendor}, model: {c.model}}}}}' for c in PHONES)
