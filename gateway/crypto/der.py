"""DER's encoding rules, checked on bytes before a lenient ASN.1 reader sees them.

asn1crypto, which reads SM2 certificates and GB/T 38540 seals here, also reads BER: indefinite
lengths (``0x80`` ... ``00 00``), lengths written in more bytes than needed, and strings split
into constructed pieces. None of these is DER, which X.509 (RFC 5280 §4.1) and GB/T 38540 require,
and each gives the same signed content a second encoding -- another file, another hash, another
certificate key id for one certificate. :func:`der_problem` walks the element's TLV structure
(recursively through SEQUENCE, SET and context / application / private constructed elements)
and names the first such form; the readers refuse the input as malformed.

What it checks: one element fills the input exactly; every length is definite and minimal; no
constructed universal string; tags fit one byte (every tag X.509 and GB/T 38540 use does). What
it does not: the values inside primitive elements (INTEGER minimality, BOOLEAN, time formats, SET
order), which the readers judge themselves where it matters.

:func:`unread_elements` checks what asn1crypto made of DER against its schema: a SEQUENCE holding
elements after its last field, which asn1crypto keeps aside and never reads (appended data, hidden
in a structure that still "loads").
"""

from __future__ import annotations

from typing import Any, Final

from asn1crypto import core as _asn1

#: nesting deeper than this is refused (an X.509 certificate nests about 8 deep)
MAX_DER_DEPTH: Final = 64
#: universal tag numbers that may be constructed in DER: SEQUENCE and SET
_CONSTRUCTED_OK: Final = frozenset({16, 17})


def der_problem(data: bytes, max_depth: int = MAX_DER_DEPTH) -> str | None:
    """None when ``data`` is one element in DER's length and form rules; else what is wrong, and
    at which byte offset."""
    n = len(data)
    if n == 0:
        return "empty input"
    # (end of the constructed element being walked, depth); the input itself as the outermost
    stack: list[tuple[int, int]] = []
    pos, end, depth, elements = 0, n, 0, 0
    while True:
        if pos == end:
            if not stack:
                return None if elements == 1 else f"{elements} elements where one is expected"
            end, depth = stack.pop()
            continue
        if not stack and elements == 1:
            return f"{n - pos} bytes after the element (offset {pos})"
        if pos + 2 > end:
            return f"element truncated at offset {pos}"
        tag, first = data[pos], data[pos + 1]
        if tag == 0 and first == 0:
            return f"end-of-contents octets at offset {pos} (BER indefinite length)"
        if tag & 0x1F == 0x1F:
            return f"multi-byte tag at offset {pos}"
        start = pos
        pos += 2
        if first == 0x80:
            return f"indefinite length at offset {start} (BER, not DER)"
        if first > 0x80:
            k = first & 0x7F
            if k > 4 or pos + k > end:
                return f"length of {k} bytes at offset {start}"
            length = int.from_bytes(data[pos:pos + k], "big")
            if length < 0x80 or data[pos] == 0:
                return f"length {length} not in its shortest form at offset {start}"
            pos += k
        else:
            length = first
        if pos + length > end:
            return f"element at offset {start} runs past its container ({length} bytes)"
        if not stack:
            elements += 1
        if tag & 0x20:   # constructed
            if tag & 0xC0 == 0 and tag & 0x1F not in _CONSTRUCTED_OK:
                return f"constructed universal type {tag & 0x1F} at offset {start} (BER string pieces, not DER)"
            if depth + 1 > max_depth:
                return f"nested deeper than {max_depth} at offset {start}"
            stack.append((end, depth))   # walk into its contents, which start at pos
            end, depth = pos + length, depth + 1
        else:
            pos += length


def unread_elements(value: Any, max_depth: int = MAX_DER_DEPTH) -> str | None:
    """None when no SEQUENCE in the asn1crypto structure ``value`` (walked through SEQUENCE OF, SET OF,
    CHOICE) holds more elements than its schema has fields; else where one does.

    asn1crypto reads a SEQUENCE's fields in order and keeps whatever follows the last one, unread:
    ``SES_Signature { toSign, cert, signatureAlgID, signature, OCTET STRING "anything" }`` loaded as the
    genuine signature (its timeStamp, an optional last field, absent). Only the schema's own SEQUENCEs are
    judged (a generic ``core.Sequence`` has no fields), and a child that does not even build is left to the
    reader, which judges the fields it reads."""
    stack: list[tuple[Any, str, int]] = [(value, type(value).__name__, 0)]
    while stack:
        node, where, depth = stack.pop()
        if depth > max_depth:
            return f"{where}: nested deeper than {max_depth}"
        if isinstance(node, _asn1.Sequence):
            fields = node._fields
            if not fields:
                continue
            try:
                count = len(node)
            except Exception:   # noqa: BLE001 -- children that do not parse: the reader's to judge (and word)
                continue
            if count > len(fields):
                return f"{where}: {count - len(fields)} element(s) after its last field ({fields[-1][0]})"
            names = [f"{where}.{field[0]}" for field in fields]
        elif isinstance(node, _asn1.SequenceOf):
            try:
                count = len(node)
            except Exception:   # noqa: BLE001
                continue
            names = [f"{where}[{i}]" for i in range(count)]
        elif isinstance(node, _asn1.Choice):
            try:
                stack.append((node.chosen, where, depth + 1))
            except Exception:   # noqa: BLE001
                pass
            continue
        else:
            continue
        for i in range(count):
            try:
                stack.append((node[i], names[i], depth + 1))
            except Exception:   # noqa: BLE001 -- a child that does not build: the reader's to judge
                pass
    return None
