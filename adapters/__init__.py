"""Format families: one small module per wire format, all driven by region specs.

``FAMILIES`` maps a family name (as written in ``specs/regions/*.toml``) to its
implementation; :func:`detect` picks the family of presented bytes.
"""

from __future__ import annotations

from .base import Envelope, Family, KeyRef, Limits, SigningKey
from .jws import JwsFamily
from .ofd_seal import OfdSealFamily
from .sm2_json import Sm2JsonFamily
from .sm2_xml import Sm2XmlFamily

FAMILIES: dict[str, Family] = {f.name: f for f in (JwsFamily(), Sm2JsonFamily(), Sm2XmlFamily(), OfdSealFamily())}


def detect(data: bytes) -> Family | None:
    for family in FAMILIES.values():
        if family.sniff(data):
            return family
    return None


__all__ = ["Envelope", "FAMILIES", "Family", "KeyRef", "Limits", "SigningKey", "detect"]
