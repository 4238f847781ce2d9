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
from functools import lru_cache
from operator import mul

LICENCE_ID_ROOT = "1.2.156.3005.2"
_ALNUM36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_VAL36 = {c: i for i, c in enumerate(_ALNUM36)}


# --- ISO/IEC 7064 MOD 37,36 -----------------------------------------------------------
# The recurrence p' = (2 * ((p + v) mod 36 or 36)) mod 37 depends only on (p, character), so
# it is tabulated once: one dict lookup per character instead of arithmetic. The state after
# a prefix is memoised, since every licence of one issuer and type shares its first 39
# characters (type code + issuer code) -- the verify path then walks only the serial.
_STEP: dict[tuple[int, str], int] = {}
for _p in range(1, 37):
    for _c, _v in _VAL36.items():
        _r = (_p + _v) % 36 or 36
        _STEP[(_p, _c)] = (2 * _r) % 37
        _STEP[(_p, _c.lower())] = _STEP[(_p, _c)]


#: the same table as one dict per state (character -> next state): no tuple key per character
_ROWS: list[dict[str, int]] = [{}] + [{c: n for (q, c), n in _STEP.items() if q == p} for p in range(1, 37)]


def _mod37_state(data: str, p: int = 36) -> int:
    rows = _ROWS
    try:
        for ch in data:
            p = rows[p][ch]
    except KeyError:
        raise ValueError(f"character not allowed in MOD 37,36 data: {data!r}") from None
    return p


@lru_cache(maxsize=4096)
def _prefix_state(prefix: str) -> int:
    return _mod37_state(prefix)


def mod37_36_check(data: str, prefix_len: int = 0) -> str:
    """Return the check character for ``data`` (characters 0-9A-Z). ``prefix_len`` marks a
    leading part shared by many identifiers, whose state is memoised."""
    p = _prefix_state(data[:prefix_len]) if prefix_len else 36
    return _ALNUM36[(37 - _mod37_state(data[prefix_len:], p)) % 36]


def mod37_36_valid(data_with_check: str) -> bool:
    if len(data_with_check) < 2:
        return False
    try:
        return mod37_36_check(data_with_check[:-1]) == data_with_check[-1].upper()
    except ValueError:
        return False


# --- GB/T 36904 licence identifier ----------------------------------------------------
#: ``\Z``, never ``$``: ``$`` also matches before a final newline, and "…001.F\n" is not an identifier
_ID_RE = re.compile(
    r"^1\.2\.156\.3005\.2\.(?P<type>[0-9A-Z]{21})\.(?P<issuer>[0-9A-Z]{18})\."
    r"(?P<serial>[0-9A-Za-z]{1,32})\.(?P<version>[0-9]{3})\.(?P<check>[0-9A-Z])\Z"
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
    type_code, issuer, serial, version, check = m.groups()
    p = _mod37_state(serial.upper() + version, _prefix_state(type_code + issuer))
    expected = _ALNUM36[(37 - p) % 36]
    if expected != check:
        raise ValueError(f"check character {check} is wrong (expected {expected})")
    return LicenceIdentifier(type_code, issuer, serial, version, check)


_TYPE_CODE_RE = re.compile(r"[0-9A-Z]{21}")
_ISSUER_CODE_RE = re.compile(r"[0-9A-Z]{18}")
#: the version is three ASCII digits: ``\d`` would also match other scripts' digits ("٠٠١"), which the
#: MOD 37,36 alphabet does not hold (a ValueError where a non-matching identifier is due)
_ID_TAIL_RE = re.compile(r"(?P<serial>[0-9A-Za-z]{1,32})\.(?P<version>[0-9]{3})\.(?P<check>[0-9A-Z])\Z")


@lru_cache(maxsize=4096)
def _id_prefix(type_code: str, issuer_code: str) -> tuple[str, int] | None:
    """(the identifier text up to the serial, MOD 37,36 state after type + issuer code), or
    None when the two codes cannot be an identifier's parts."""
    if not (_TYPE_CODE_RE.fullmatch(type_code) and _ISSUER_CODE_RE.fullmatch(issuer_code)):
        return None
    return f"{LICENCE_ID_ROOT}.{type_code}.{issuer_code}.", _prefix_state(type_code + issuer_code)


def licence_identifier_matches(text: str, type_code: str, issuer_code: str) -> bool:
    """Is ``text`` a valid GB/T 36904 identifier whose type and issuer codes are exactly these?

    The same answer as ``parse_licence_identifier(text)`` succeeding with these two codes,
    without building the parts: the prefix every licence of one issuer and type shares is
    checked once (memoised), so only serial, version and check character are read per call.
    False says nothing about *why*; :func:`parse_licence_identifier` explains."""
    pre = _id_prefix(type_code, issuer_code)
    if pre is None or not text.startswith(pre[0]):
        return False
    m = _ID_TAIL_RE.match(text, len(pre[0]))
    if m is None:
        return False
    serial, version, check = m.groups()
    return _ALNUM36[(37 - _mod37_state(serial.upper() + version, pre[1])) % 36] == check


def make_licence_identifier(type_code: str, issuer_code: str, serial: str, version: str = "001") -> str:
    check = mod37_36_check(type_code + issuer_code + serial.upper() + version)
    return ".".join((LICENCE_ID_ROOT, type_code, issuer_code, serial, version, check))


# --- GB 11643 citizen ID: MOD 11-2 ----------------------------------------------------
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_CITIZEN_RE = re.compile(r"^\d{6}(\d{4})(\d{2})(\d{2})\d{3}[0-9X]\Z")  # \Z: no final newline
#: the last day of each month as two digits (February's 29 only in a leap year: :func:`_birth_date_ok`)
_MONTH_LAST_DAY = {"01": "31", "02": "29", "03": "31", "04": "30", "05": "31", "06": "30", "07": "31", "08": "31",
                   "09": "30", "10": "31", "11": "30", "12": "31"}


def _birth_date_ok(yyyy: str, mm: str, dd: str) -> bool:
    """Is YYYYMMDD (ASCII digits) a real calendar day from 1900 to 2100? No 30 February, 31 April or
    29 February of a common year (1900 and 2100 are common years): compared as fixed-width strings."""
    last = _MONTH_LAST_DAY.get(mm)
    if last is None or not ("01" <= dd <= last and "1900" <= yyyy <= "2100"):
        return False
    if mm == "02" and dd == "29":
        y = int(yyyy)
        return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return True


_ID_ASCII_BIAS = 48 * sum(_ID_WEIGHTS)  # the weighted sum of the '0' code points


def citizen_id_check(first17: str) -> str:
    if len(first17) != 17:
        raise ValueError("need the first 17 digits")
    if first17.isascii() and first17.isdigit():  # weigh the ASCII codes at C speed, then remove the bias
        return _ID_CHECK[(sum(map(mul, first17.encode(), _ID_WEIGHTS)) - _ID_ASCII_BIAS) % 11]
    return _ID_CHECK[sum(map(mul, map(int, first17), _ID_WEIGHTS)) % 11]


def citizen_id_valid(code: str) -> bool:
    if not code.isascii():  # "３３05…": \d and int() read full-width digits as digits
        return False
    if len(code) == 18 and code.isascii() and code[:17].isdigit():  # the common shape, without the regex
        # fixed-width ASCII digit strings compare like their numbers (no int() per part)
        if not _birth_date_ok(code[6:10], code[10:12], code[12:14]):
            return False
        last = code[17]
        return _ID_CHECK[(sum(map(mul, code[:17].encode(), _ID_WEIGHTS)) - _ID_ASCII_BIAS) % 11] == (
            "X" if last == "x" else last)
    code = code.upper()
    m = _CITIZEN_RE.match(code)
    if not m:
        return False
    if not _birth_date_ok(m[1], m[2], m[3]):
        return False
    return citizen_id_check(code[:17]) == code[17]


#: a citizen ID number standing alone as a token: no letter or digit on either side (a record's
#: fields, where a longer code may hold 18 digits that are not one)
ID_NUMBER_TOKEN = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
#: a citizen ID number anywhere in free text, also run together with letters ("ID330502...",
#: "No.330502..."): what a partner or a log line writes
ID_NUMBER_IN_TEXT = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")


def contains_citizen_id(text: str, pattern: re.Pattern[str] = ID_NUMBER_IN_TEXT) -> bool:
    """Whether ``text`` holds a valid citizen ID number (check digit and date) where ``pattern``
    finds 18-character candidates; an 18-digit number that is not one (an order number) is not."""
    if pattern.search(text) is None:  # the common case: one C call, no iterator
        return False
    return any(citizen_id_valid(m.group(0).upper()) for m in pattern.finditer(text))


# --- GB 32100 USCC --------------------------------------------------------------------
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VAL = {c: i for i, c in enumerate(USCC_ALPHABET)}
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

#: Early pilot codes that fail the GB 32100 check yet are legal (facts §4). The list is
#: data an operator extends; none is known to this project yet, so it starts empty.
USCC_ALLOW_LIST: frozenset[str] = frozenset()


def uscc_check(first17: str) -> str:
    if len(first17) != 17:
        raise ValueError("need the first 17 characters")
    total = sum(map(mul, map(_USCC_VAL.__getitem__, first17), _USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def org_code_check(first8: str) -> str:
    total = sum(_VAL36[c] * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    v = 11 - total % 11
    return "X" if v == 10 else "0" if v == 11 else str(v)


def uscc_valid(code: str, allow_list: frozenset[str] = USCC_ALLOW_LIST) -> bool:
    if allow_list is USCC_ALLOW_LIST and type(code) is str:
        return _uscc_valid_default(code)  # issuing authorities' codes recur on every licence
    return _uscc_valid(code, allow_list)


@lru_cache(maxsize=4096)
def _uscc_valid_default(code: str) -> bool:
    return _uscc_valid(code, USCC_ALLOW_LIST)


def _uscc_valid(code: str, allow_list: frozenset[str]) -> bool:
    if not code.isascii():  # "ﬀ".upper() is "FF", "ı".upper() "I": only ASCII letters are folded to a USCC's
        return False
    code = code.upper()
    if code in allow_list:
        return True
    if len(code) != 18:
        return False
    try:
        return uscc_check(code[:17]) == code[17]
    except KeyError:  # a character outside the GB 32100 alphabet
        return False


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
    """A holder code for human display: at most 4 characters shown at each end and at least 8
    hidden (an 18-character ID number or USCC: ``3305**********123X``; a 9-character passport
    number: all stars -- showing 4 at each end of it hid one character)."""
    keep = min(4, max(0, (len(code) - 8) // 2))
    return code[:keep] + "*" * (len(code) - 2 * keep) + (code[-keep:] if keep else "")
