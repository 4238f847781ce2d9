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
"""

from __future__ import annotations

from typing import Final

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
