"""Check-character algorithms of the Chinese identifiers a licence carries.

Pure functions, no I/O. Sources: ``../shared/reference/elicence-facts.md`` §2 and §4.

* GB/T 36904 licence identifier: ISO/IEC 7064 MOD 37,36 over
  type code + issuer code + serial + version (no root OID, no dots).
* GB 11643 citizen ID: ISO 7064 MOD 11-2.
* GB 32100 unified social credit code (USCC) and its embedded organisation code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LICENCE_ID_ROOT = "1.2.156.3005.2"
_ALNUM36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VAL36 = {c: i for i, c in enumerate(_ALNUM36)}


# --- ISO/IEC 7064 MOD 37,36 -----------------------------------------------------------
def mod37_36_check(data: str) -> str:
    """Return the check character for ``data`` (characters 0-9A-Z)."""
    p = 36
    for ch in data.upper():
        v = _VAL36.get(ch)
        if v is None:
            raise ValueError(f"character {ch!r} not allowed in MOD 37,36 data")
        s = p + v
        r = s % 36 or 36
        p = (2 * r) % 37
    return _ALNUM36[(37 - p) % 36]


def mod37_36_valid(data_with_check: str) -> bool:
    if len(data_with_check) < 2:
        return False
    try:
        return mod37_36_check(data_with_check[:-1]) == data_with_check[-1].upper()
    except ValueError:
        return False


# --- GB/T 36904 licence identifier ----------------------------------------------------
_ID_RE = re.compile(
    r"^1\.2\.156\.3005\.2\.(?P<type>[0-9A-Z]{21})\.(?P<issuer>[0-9A-Z]{18})\."
    r"(?P<serial>[0-9A-Za-z]{1,32})\.(?P<version>\d{3})\.(?P<check>[0-9A-Z])$"
)


@dataclass(frozen=True, slots=True)
class LicenceIdentifier:
    type_code: str
    issuer_code: str
    serial: str
    version: str
    check: str

    def __str__(self) -> str:
        return ".".join((LICENCE_ID_ROOT, self.type_code, self.issuer_code, self.serial, self.version, self.check))


def parse_licence_identifier(text: str) -> LicenceIdentifier:
    """Parse and validate a GB/T 36904 identifier; raise ValueError explaining what is wrong."""
    m = _ID_RE.match(text)
    if not m:
        raise ValueError("identifier does not have the six GB/T 36904 parts")
    body = m["type"] + m["issuer"] + m["serial"].upper() + m["version"]
    expected = mod37_36_check(body)
    if expected != m["check"]:
        raise ValueError(f"check character {m['check']} is wrong (expected {expected})")
    return LicenceIdentifier(m["type"], m["issuer"], m["serial"], m["version"], m["check"])


def make_licence_identifier(type_code: str, issuer_code: str, serial: str, version: str = "001") -> str:
    check = mod37_36_check(type_code + issuer_code + serial.upper() + version)
    return ".".join((LICENCE_ID_ROOT, type_code, issuer_code, serial, version, check))


# --- GB 11643 citizen ID: MOD 11-2 ----------------------------------------------------
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_CITIZEN_RE = re.compile(r"^\d{6}(\d{4})(\d{2})(\d{2})\d{3}[0-9X]$")


def citizen_id_check(first17: str) -> str:
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def citizen_id_valid(code: str) -> bool:
    code = code.upper()
    m = _CITIZEN_RE.match(code)
    if not m:
        return False
    y, mo, d = int(m[1]), int(m[2]), int(m[3])
    if not (1 <= mo <= 12 and 1 <= d <= 31 and 1900 <= y <= 2100):
        return False
    return citizen_id_check(code[:17]) == code[17]


# --- GB 32100 USCC --------------------------------------------------------------------
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VAL = {c: i for i, c in enumerate(USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

#: Early pilot codes that fail the GB 32100 check yet are legal (facts §4). The list is
#: data an operator extends; none is known to this project yet, so it starts empty.
USCC_ALLOW_LIST: frozenset[str] = frozenset()


def uscc_check(first17: str) -> str:
    total = sum(_USCC_VAL[c] * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def org_code_check(first8: str) -> str:
    total = sum(_VAL36[c] * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    v = 11 - total % 11
    return "X" if v == 10 else "0" if v == 11 else str(v)


def uscc_valid(code: str, allow_list: frozenset[str] = USCC_ALLOW_LIST) -> bool:
    code = code.upper()
    if code in allow_list:
        return True
    if len(code) != 18 or any(c not in _USCC_VAL for c in code):
        return False
    return uscc_check(code[:17]) == code[17]


def uscc_division(code: str) -> str:
    """GB/T 2260 division code of registration: characters 3-8 of a USCC."""
    return code[2:8]


def make_uscc(dept: str, category: str, division: str, org8: str) -> str:
    """Build a check-valid synthetic USCC (the org code gets its own check character)."""
    org9 = org8 + org_code_check(org8)
    first17 = dept + category + division + org9
    return first17 + uscc_check(first17)


# --- holder codes -------------------------------------------------------------------
#: 持证主体代码类型代码 (facts §3)
HOLDER_CODE_TYPES: dict[str, str] = {
    "001": "统一社会信用代码",
    "099": "其他法人或其他组织有效证件代码",
    "111": "公民身份号码",
    "114": "中国人民解放军军官证",
    "115": "中国人民武装警察警官证",
    "118": "士兵证",
    "119": "军队学员证",
    "120": "军队文职干部证",
    "122": "军队离退休干部证",
    "411": "外交护照",
    "412": "公务护照",
    "413": "因公普通护照",
    "414": "普通护照",
    "511": "台湾居民来往大陆通行证",
    "516": "港澳居民来往内地通行证",
    "999": "其他自然人有效证件代码",
}


def holder_code_valid(code_type: str, code: str) -> bool:
    """Check a holder code by its type. Types without a published check rule only need
    to be non-empty printable text."""
    if code_type == "111":
        return citizen_id_valid(code)
    if code_type == "001":
        return uscc_valid(code)
    return code_type in HOLDER_CODE_TYPES and 1 <= len(code) <= 64 and code.isprintable()


def mask_holder_code(code: str) -> str:
    """Mask an ID number for human display: ``3305**********123X``."""
    if len(code) <= 8:
        return code[:1] + "*" * (len(code) - 1)
    return code[:4] + "*" * (len(code) - 8) + code[-4:]
