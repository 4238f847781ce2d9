"""Hostile licence bytes never make the gateway say that *it* failed.

A deterministic (seeded) mutation fuzzer over a genuine licence of every format family. For every
mutated input ``Verifier.verify`` must return (never raise), its result must never carry the
reason ``INTERNAL`` (verdict indeterminate: "our infrastructure failed"), and its answer document
must be writable as the HTTP layer writes it (else the answer is a 500). Bad input is the
presenter's fault and gets a specific rejection (MALFORMED, UNSUPPORTED_FORMAT, SIGNATURE_INVALID,
FIELD_INVALID...). The core keeps INTERNAL for real bugs, so any INTERNAL here is one.

Two kinds of case:

* **unsigned mutations** -- the bytes are changed after signing, the signature is kept (or dropped,
  or replaced). Such a licence may only be ``valid`` if the change does not touch what the signature
  covers, which differs per family (the oracle, :func:`covered`):

  - ``jws``: the signature covers the ASCII signing input ``header64.payload64`` byte for byte.
    Valid only if the adapter reads the same signing input, signature bytes and algorithm as from
    the original -- e.g. whitespace around the token (stripped), or a last base64url character of
    the signature that differs only in its unused bits.
  - ``sm2-json``: the signature covers the canonical form of ``data`` (sorted keys, compact), not
    the text: whitespace, member order, string escapes (``\\u0041`` for ``A``) and the signature
    block's unread ``encoding`` member may change, and so may the signer reference where it still
    finds the same key (a ``kid`` region's optional ``region`` hint) and the form of the signature
    value (raw ``r || s`` or DER). Valid only if the adapter reads the same signed bytes, signature
    (r, s) and algorithm.
  - ``sm2-xml``: the signature covers the canonical JSON form of the ``<Data>`` fields: the file's
    encoding (UTF-8 or GB 18030), whitespace between elements, namespace prefixes, CDATA versus
    escaped text may change. Same rule as sm2-json.
  - ``ofd-seal``: the signature (and the SM3 references it signs) covers package *contents*, not the
    zip (entry order, compression, timestamps, zip64 extras, data descriptors, comments, extra
    unread entries), and not the SES_Signature's own framing (its outer SEQUENCE, which the
    reference reader also takes in BER, e.g. with an indefinite length; its optional timeStamp) nor
    the form of an SM2 signature value. Valid only if every part the verifier reads -- OFD.xml,
    Signatures.xml, Signature.xml, Seal.esl, SignerCert.der, the licence data part and every
    referenced part -- is byte-identical and SignedValue.dat carries the same TBS_Sign, signer
    certificate, algorithm and signature (r, s).

* **re-signed mutations** -- the hostile content signed with the region's genuine TEST key (as a
  buggy or compromised issuer would). They reach the checks after the signature (normalise,
  region binding, identifier, holder code, validity, status), which unsigned mutations never do.
  They may legitimately be valid; only "no exception, no INTERNAL" is asserted.

Mutations are format-aware where cheap: decoded JWS header / payload JSON and SM2-JSON members get
wrong types (null, booleans, numbers past 64 bits, floats, lists, objects nested past the parser's
depth limit, strings with lone surrogate escapes, very long strings, Unicode digits, out-of-range
dates); XML gets other declared encodings, mis-encoded bytes, entities, DTDs, CDATA, comments,
namespaces, duplicated elements and attributes, deep nesting and invalid byte sequences; the OFD's
DER (SignedValue.dat, Seal.esl, the certificates inside) gets tag, length (indefinite, huge,
non-minimal, off by one), truncation and content changes, with and without the enclosing lengths
fixed up; certificates (JWS x5c, the SES signer certificate, SignerCert.der) get hostile versions,
serials, validity dates, names, keys and extensions, signed again by the region's anchor so they
still chain; and every format gets random byte flips, insertions, deletions and truncations. The
named zip container attacks live in tests/test_ofd_container_attacks.py; here the package is only
written other ways (stored, zip64 extras, data descriptors...), given edge values in its header
fields and damaged at random. Seeds and counts are fixed: the same cases on every run, about 40,000
in all (some 7,800 per JWS region, 6,000 per SM2-JSON region, 2,600 per SM2-XML region, 1,900 to
2,700 per OFD region); the file runs in about 40 s on the 2-core project machine (nice 19).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import random
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from adapters import FAMILIES, Limits
from adapters.ofd.build import build_sealed_ofd
from adapters.ofd.container import read_ofd_package, write_ofd_package
from adapters.ofd.ses import build_ses_signature, parse_ses_signature
from adapters.ofd.xmlparts import find_signatures_xml, parse_signature_xml, parse_signatures_xml
from adapters.ofd_seal import DATA_NS, DATA_PART, DATA_ROOT, SIGNER_CERT_NAME, _build_signed, _issuer_seal, _page
from adapters.sm2_json import canonical_bytes
from adapters.sm2_xml import data_from_element, data_xml, parse_hardened, prolog, signed_document
from gateway.app import render_result
from gateway.core import text_without_lead
from gateway.crypto.sm2 import der_to_raw_signature, sm2_sign, sm3

from .conftest import NOW

SEED = 20261207
#: hostile certificates make cryptography warn (attribute lengths, negative serials): expected here
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# the regions fuzzed: one per family, algorithm and text encoding
JWS_ES256, JWS_EDDSA = "341100", "652929"
SM2_JSON_PINYIN, SM2_JSON_CHINESE = "330100", "220600"  # serial + pinyin names / kid + Chinese names
SM2_XML_GB18030, SM2_XML_UTF8 = "320100", "320200"
OFD_SEAL, OFD_SIGN, OFD_SEAL_GB18030 = "310000", "500102", "320300"

#: random byte-level mutants per licence (on top of the structured ones)
RANDOM_BYTE_MUTANTS = 250


@pytest.fixture(scope="module")
def status(world):
    return world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))


# --- the oracle --------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    label: str
    data: bytes
    resigned: bool = False  # signed after the mutation with the region's genuine key


def sm2_signature_value(signature: bytes) -> bytes:
    """An SM2 signature as ``r || s``, however written (raw or DER verify alike)."""
    try:
        return der_to_raw_signature(signature)
    except ValueError:
        return signature


def covered(family: str, data: bytes, read_parts: frozenset[tuple[str, str]] = frozenset()) -> Any:
    """What the signature of ``data`` covers, as the family reads it (None if it cannot be read)."""
    try:
        if family == "ofd-seal":
            files = read_ofd_package(data).files
            return tuple((path, _part_value(kind, files.get(path))) for path, kind in sorted(read_parts))
        if family != "sm2-xml":  # the text families are read without a BOM or whitespace before them
            data = text_without_lead(data)
        env = FAMILIES[family].open(data, Limits())
        signature = env.signature if family == "jws" else sm2_signature_value(env.signature)
        return env.algorithm, env.signed_bytes, signature  # not the key reference: it only finds the key
    except Exception:  # noqa: BLE001 -- only the oracle: verify() itself is judged below
        return None


def _part_value(kind: str, content: bytes | None) -> Any:
    if content is None or kind == "bytes":
        return content
    if kind == "sm2-signature":
        return sm2_signature_value(content)
    ses = parse_ses_signature(content)  # "ses": what its signature covers, and the signature
    return ses.tbs_der, ses.cert_der, ses.signature_algorithm, sm2_signature_value(ses.signature)


def ofd_read_parts(data: bytes) -> frozenset[tuple[str, str]]:
    """Every package part the verifier reads for this (genuine) OFD licence, with how to compare it:
    "bytes", "ses" (a Type=Seal SignedValue.dat) or "sm2-signature" (a Type=Sign SignedValue.dat)."""
    pkg = read_ofd_package(data)
    parts = {("OFD.xml", "bytes"), (DATA_PART, "bytes")}
    for path in find_signatures_xml(pkg.files["OFD.xml"]):
        parts.add((path, "bytes"))
        for entry in parse_signatures_xml(pkg.files[path], path):
            sx = parse_signature_xml(pkg.files[entry.path], entry.path)
            parts.update({(entry.path, "bytes"), *((r.path, "bytes") for r in sx.references)})
            parts.add((sx.signed_value_path, "sm2-signature" if entry.type == "Sign" else "ses"))
            if sx.seal_path:
                parts.add((sx.seal_path, "bytes"))
            if entry.type == "Sign":
                parts.add((entry.path.rsplit("/", 1)[0] + "/" + SIGNER_CERT_NAME, "bytes"))
    return frozenset(parts)


def judge(verifier, world, status, family: str, reference: Any, read_parts: frozenset[tuple[str, str]],
          case: Case) -> str | None:
    try:
        result = verifier.verify(case.data, world.snapshot, status, NOW)
    except Exception as exc:  # noqa: BLE001 -- the finding
        return f"verify raised {type(exc).__name__}: {exc}"
    if "INTERNAL" in result.reason_codes:
        return f"INTERNAL ({'; '.join(r.detail or '' for r in result.reasons)})"
    try:  # the answer document, as the HTTP layer writes it (a result that cannot be written is a 500)
        orjson.dumps(render_result(result), option=orjson.OPT_UTC_Z)
    except Exception as exc:  # noqa: BLE001 -- the finding
        return f"the answer cannot be written: {type(exc).__name__}: {exc}"
    if result.verdict.value == "valid" and not case.resigned and covered(family, case.data, read_parts) != reference:
        return "valid although what the signature covers changed"
    return None


def run(world, status, region: str, original: bytes, cases: Iterator[Case], minimum: int) -> int:
    """Judge every case; fail listing the problems (one line per distinct problem). Returns the count."""
    family = world.specs[region].family
    read_parts = ofd_read_parts(original) if family == "ofd-seal" else frozenset()
    reference = covered(family, original, read_parts)
    assert reference is not None
    first = world.verifier.verify(original, world.snapshot, status, NOW)
    assert first.verdict.value == "valid", first.reason_codes
    seen: dict[str, str] = {}
    count = 0
    for case in cases:
        count += 1
        problem = judge(world.verifier, world, status, family, reference, read_parts, case)
        if problem is not None:
            seen.setdefault(problem, case.label)
    assert count >= minimum, f"only {count} cases generated"
    assert not seen, f"{len(seen)} distinct problem(s) in {count} cases of region {region}:\n" + "\n".join(
        f"  {label!r}: {problem}" for problem, label in list(seen.items())[:30])
    return count


# --- hostile values ------------------------------------------------------------------------
#: JSON texts of wrong types and edge values (written as text: orjson cannot write some of them)
HOSTILE_JSON: tuple[str, ...] = (
    "null", "true", "false", "0", "-1", "1.5", "-0.0", "1e308", "-1e308", "1e400", "5e-324",
    "9223372036854775807", "-9223372036854775808", "18446744073709551615", "18446744073709551616",
    "123456789012345678901234567890", "1E+2", '""', '" "', '"\\u0000"', '"\\ud800"', '"\\udc00\\ud800"',
    '"\\ud83d\\ude00"', '"\\u0041"', "[]", '[""]', "[1,[2,[3]]]", "{}", '{"a":{"b":{"c":1}}}',
    "[" * 200 + "]" * 200, "[" * 300 + "]" * 300, '{"a":' * 300 + "1" + "}" * 300, "[" * 1100 + "]" * 1100,
    '{"a":' * 1100 + "1" + "}" * 1100, '"' + "A" * 5000 + '"', '"' + "甲" * 600 + '"',
    # as deep as the parser reads (1,024 levels), deeper than repr() or any other recursion goes (~1,000)
    "[" * 1020 + "]" * 1020, '{"a":' * 1020 + "1" + "}" * 1020, "[" * 960 + "]" * 960,
)
#: JSON strings for JWS header members (alg, typ, kid, iss...): near-misses of the values read there
HEADER_TEXTS: tuple[str, ...] = tuple(orjson.dumps(t).decode() for t in (
    "ES256", "EdDSA", "none", "HS256", "RS256", "es256", "ES256 ", "SM2", "", "x" * 300, "elicence+jwt", "JWT"))

#: text values that are wrong in content rather than in type
HOSTILE_TEXT: tuple[str, ...] = (
    "", " ", "0", "-1", "²", "①", "١٢٣", "１２３", "9" * 11, "9" * 40, "1e3", "0x1F", "NaN", "Infinity",
    "0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59+00:00", "2026-11-27T12:00:00", "2026-11-27T12:00:00Z", "2026-11-27 12:00:00+08:00",
    "0001-01-01", "9999-12-31", "2026-02-30", "0000-00-00", "00000000", "99991231", "20260230",
    "２０２６-０１-０１", "２０２６０１０１", "2026年01月01日", "x" * 513, "x" * 20000, "\x7f", "\u2028", "\ufeff",
    "\U0010ffff", "😀", "ß", "İ", "ﬀ", "<", "&", "]]>", "\r\n", "\t", "\x00",
)

_DIGIT_MAPS = (str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"), str.maketrans("0123456789", "０１２３４５６７８９"),
               str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


def derived_texts(value: str) -> list[str]:
    """Variants of a genuine value that look almost right: Unicode digits (decimal, full-width,
    superscript) in its head, its tail, before its last two characters (a GB/T 36904 identifier's
    version) or throughout, case changes, a character more or less."""
    out = []
    for table in _DIGIT_MAPS:
        half = len(value) // 2
        out += [value.translate(table), value[:-5] + value[-5:].translate(table), value[:5].translate(table) + value[5:],
                value[:-5] + value[-5:-2].translate(table) + value[-2:], value[:half] + value[half:-2].translate(table)
                + value[-2:]]
    out += [value.lower(), value.upper(), value[:-1], value + "0", value + "\x00", " " + value, value * 3]
    return [v for v in dict.fromkeys(out) if v != value]


def hostile_texts_for(value: Any) -> list[str]:
    return list(HOSTILE_TEXT) + (derived_texts(value) if isinstance(value, str) and value else [])


_PLACEHOLDER = "@@hostile-value@@"


def json_with(doc: Any, path: tuple[Any, ...], fragment: str | None) -> bytes:
    """``doc`` as JSON text with the member at ``path`` replaced by the JSON text ``fragment``
    (None: the member removed)."""
    doc = orjson.loads(orjson.dumps(doc))
    target = doc
    for key in path[:-1]:
        target = target[key]
    if fragment is None:
        del target[path[-1]]
        return orjson.dumps(doc)
    target[path[-1]] = _PLACEHOLDER
    return orjson.dumps(doc).replace(orjson.dumps(_PLACEHOLDER), fragment.encode("utf-8", "surrogatepass"))


def json_fragments_for(value: Any) -> list[str]:
    return list(HOSTILE_JSON) + [orjson.dumps(t).decode() for t in hostile_texts_for(value)]


def member_paths(doc: dict, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    for key, value in doc.items():
        out.append((*prefix, key))
        if isinstance(value, dict):
            out += member_paths(value, (*prefix, key))
    return out


# --- random byte mutations ---------------------------------------------------------------
_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x3C, 0x3E, 0x22, 0x26, 0x2E, 0x7B, 0x7D, 0x30, 0x04)
_BAD_SEQUENCES = (b"\xff", b"\x80", b"\xc3", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
                  b"\x81", b"\x81\x30", b"\x81\x30\x81", b"\xfe\xff", b"\xef\xbb\xbf", b"\x00")


def byte_mutant(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    n = len(data)
    i = rng.randrange(n)
    op = rng.randrange(9)
    if op == 0:
        bit = 1 << rng.randrange(8)
        return f"flip bit {bit:#x} at {i}", data[:i] + bytes([data[i] ^ bit]) + data[i + 1:]
    if op == 1:
        b = rng.choice(_INTERESTING_BYTES)
        return f"byte {b:#x} at {i}", data[:i] + bytes([b]) + data[i + 1:]
    if op == 2:
        j = min(n, i + rng.choice((1, 2, 8, 64, 512)))
        return f"delete {i}..{j}", data[:i] + data[j:]
    if op == 3:
        ins = rng.choice(_BAD_SEQUENCES)
        return f"insert {ins!r} at {i}", data[:i] + ins + data[i:]
    if op == 4:
        ins = rng.randbytes(rng.choice((1, 3, 16)))
        return f"insert random {ins!r} at {i}", data[:i] + ins + data[i:]
    if op == 5:
        return f"truncate at {i}", data[:i]
    if op == 6:
        j = min(n, i + rng.choice((4, 32, 256)))
        return f"duplicate {i}..{j}", data[:j] + data[i:j] + data[j:]
    if op == 7:
        k = rng.randrange(2, 9)
        out = bytearray(data)
        for _ in range(k):
            out[rng.randrange(n)] = rng.randrange(256)
        return f"{k} random bytes", bytes(out)
    j = rng.randrange(n)
    a, b = sorted((i, j))
    return f"swap {a} and {b}", data[:a] + data[b:b + 1] + data[a + 1:b] + data[a:a + 1] + data[b + 1:]


def byte_mutants(rng: random.Random, data: bytes, count: int, what: str = "") -> Iterator[Case]:
    for _ in range(count):
        label, mutated = byte_mutant(rng, data)
        yield Case(f"{what}{label}", mutated)


# --- JWS ---------------------------------------------------------------------------------
def b64u(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64u_decode(part: bytes) -> bytes:
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


def sign_jws(world, region: str, signing_input: bytes) -> bytes:
    key = world.material[region].issuers[-1]
    if key.algorithm == "ES256":
        r, s = decode_dss_signature(key.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return b64u(key.private_key.sign(signing_input))


def jws_cases(world, region: str, token: bytes, rng: random.Random) -> Iterator[Case]:
    h64, p64, s64 = token.split(b".")
    header, payload = orjson.loads(b64u_decode(h64)), orjson.loads(b64u_decode(p64))

    def both(label: str, h: bytes, p: bytes) -> Iterator[Case]:
        """The token with these header and payload texts: the old signature kept, and re-signed."""
        signing_input = b64u(h) + b"." + b64u(p)
        yield Case(f"{label} (signature kept)", signing_input + b"." + s64)
        yield Case(f"{label} (re-signed)", signing_input + b"." + sign_jws(world, region, signing_input), True)

    h_text, p_text = orjson.dumps(header), orjson.dumps(payload)
    for key in [*header, "x5c", "crit", "jku", "zip", "b64", ""]:
        for fragment in HOSTILE_JSON + HEADER_TEXTS:
            yield from both(f"header {key}={fragment[:40]}", json_with(header, (key,), fragment), p_text)
        if key in header:
            yield from both(f"header without {key}", json_with(header, (key,), None), p_text)
    for path in member_paths(payload) + [("iat",), ("nbf",), ("exp",)]:
        value = payload
        for k in path:
            value = value.get(k) if isinstance(value, dict) else None
        fragments = json_fragments_for(value)
        if path == ("iat",):
            fragments += ["1e20", "-1e20", "1e13", "-1e13", "253402300800", "-62135596801", "-62135596800",
                          "1795752000.5", "9007199254740993", "-9223372036854775808", "1.7976931348623157e308",
                          "4102444800", "0.0001", "-0.5", "[1795752000]", '"1795752000"']
        for fragment in fragments:
            yield from both(f"payload {'/'.join(path)}={fragment[:40]}", h_text, json_with(payload, path, fragment))
        if len(path) == 1 and path[0] in payload:
            yield from both(f"payload without {path[0]}", h_text, json_with(payload, path, None))
    # x5c instead of kid: certificates of every kind, good and bad
    own = world.material[region].issuers[-1].cert.der
    sm2_cert = world.material[OFD_SEAL].issuers[-1].cert.der
    anchor = world.snapshot.regions[region].anchors[0].der
    certs: list[tuple[str, list[Any]]] = [
        ("own", [own]), ("own+anchor", [own, anchor]), ("anchor", [anchor]), ("sm2", [sm2_cert]),
        ("empty", [b""]), ("garbage", [rng.randbytes(300)]), ("five", [own] * 5), ("truncated", [own[:len(own) // 2]]),
        ("pem", [b"-----BEGIN CERTIFICATE-----\n" + base64.b64encode(own) + b"\n-----END CERTIFICATE-----\n"]),
    ]
    for k in range(12):
        certs.append((f"der-mutant-{k}", [der_mutant(rng, own)[1]]))
    for k in range(6):
        certs.append((f"anchor-der-mutant-{k}", [own, der_mutant(rng, anchor)[1]]))
    no_kid = {k: v for k, v in header.items() if k != "kid"}
    for label, chain in certs:
        h = orjson.dumps({**no_kid, "x5c": [base64.b64encode(c).decode() for c in chain]})
        yield from both(f"x5c {label}", h, p_text)
    anchor_key = world.material[region].anchor_key
    variants = [*certificate_variants(own, anchor_key), *(cert_resigned_mutant(rng, own, anchor_key) for _ in range(40))]
    for label, cert in variants:  # certificates with a hostile field that still chain to the region's anchor
        for chain in ([cert], [cert, anchor]):
            h = orjson.dumps({**no_kid, "x5c": [base64.b64encode(c).decode() for c in chain]})
            yield from both(f"x5c {label} ({len(chain)})", h, p_text)
    for fragment in ('["%%%"]', '["AAAA"]', '[1]', '[null]', '[[]]', '[{}]', '["' + "A" * 4000 + '"]'):
        yield from both(f"x5c {fragment[:20]}", json_with(no_kid, ("x5c",), fragment), p_text)
    # signature part
    for label, sig in (("empty", b""), ("A", b"A"), ("AA", b"AA"), ("padded", s64 + b"=="), ("plus", s64[:-2] + b"+/"),
                       ("63 bytes", b64u(rng.randbytes(63))), ("65 bytes", b64u(rng.randbytes(65))),
                       ("128 bytes", b64u(rng.randbytes(128))), ("zeros", b64u(bytes(64))),
                       ("ones", b64u(b"\xff" * 64)), ("non-ascii", "签名".encode()), ("long", b"A" * 200000)):
        yield Case(f"signature {label}", h64 + b"." + p64 + b"." + sig)
    # structure
    for label, t in (("two parts", h64 + b"." + p64), ("four parts", token + b".AAAA"), ("dots", b"eyJ.."),
                     ("spaces", b" \n" + token + b"\r\n "), ("inner space", h64 + b". " + p64 + b"." + s64),
                     ("nul", token + b"\x00"), ("header array", b64u(b"[]") + b"." + p64 + b"." + s64),
                     ("payload array", h64 + b"." + b64u(b"[1]") + b"." + s64),
                     ("payload string", h64 + b"." + b64u(b'"x"') + b"." + s64),
                     ("payload bad utf-8", h64 + b"." + b64u(b'{"a":"\xff"}') + b"." + s64),
                     ("payload bom", h64 + b"." + b64u(b"\xef\xbb\xbf" + p_text) + b"." + s64),
                     ("header trailing", b64u(h_text + b"x") + b"." + p64 + b"." + s64),
                     ("duplicate alg", b64u(h_text[:-1] + b',"alg":"none"}') + b"." + p64 + b"." + s64),
                     ("duplicate iat", h64 + b"." + b64u(p_text[:-1] + b',"iat":1e300}') + b"." + s64)):
        yield Case(f"structure {label}", t)
        if label not in ("two parts", "four parts", "dots", "inner space", "nul", "spaces"):
            signing_input = t.rsplit(b".", 1)[0]
            yield Case(f"structure {label} (re-signed)", signing_input + b"." + sign_jws(world, region, signing_input), True)
    yield from byte_mutants(rng, token, RANDOM_BYTE_MUTANTS)
    for label, mutated in (byte_mutant(rng, p_text) for _ in range(60)):
        yield Case(f"payload json {label}", h64 + b"." + b64u(mutated) + b"." + s64)
        signing_input = h64 + b"." + b64u(mutated)
        yield Case(f"payload json {label} (re-signed)", signing_input + b"." + sign_jws(world, region, signing_input), True)


@pytest.mark.parametrize("region", [JWS_ES256, JWS_EDDSA])
def test_hostile_jws_tokens_are_never_an_internal_error(world, status, region) -> None:
    rng = random.Random(f"{SEED}-{region}")
    token = world.simulator.issue(region, None, "valid", NOW).data
    run(world, status, region, token, jws_cases(world, region, token, rng), minimum=2000)


# --- SM2-JSON ------------------------------------------------------------------------------
def sm2_resigned(world, region: str, doc_text: bytes) -> bytes | None:
    """``doc_text`` with its signature value replaced by a genuine signature over its (hostile) data."""
    try:
        doc = orjson.loads(doc_text)
        data = doc["data"]
        block = doc["signature"]
        block["value"] = base64.b64encode(sm2_sign(world.material[region].issuers[-1].private_key,
                                                   canonical_bytes(data))).decode()
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError, KeyError):
        return None
    return orjson.dumps(doc)


def sm2_json_cases(world, region: str, original: bytes, rng: random.Random) -> Iterator[Case]:
    doc = orjson.loads(original)
    for path in member_paths(doc["data"], ("data",)):
        value = doc
        for k in path:
            value = value[k]
        for fragment in json_fragments_for(value):
            text = json_with(doc, path, fragment)
            yield Case(f"{'/'.join(path)}={fragment[:40]}", text)
            # re-signed: the hostile value inside the signed data (only where the data is still JSON)
            signed = sm2_resigned(world, region, text) if fragment not in ('"\\ud800"', '"\\udc00\\ud800"') else None
            if signed is not None:
                yield Case(f"{'/'.join(path)}={fragment[:40]} (re-signed)", signed, True)
        yield Case(f"without {'/'.join(path)}", json_with(doc, path, None))
        signed = sm2_resigned(world, region, json_with(doc, path, None))
        if signed is not None:
            yield Case(f"without {'/'.join(path)} (re-signed)", signed, True)
    for path in [("data", "extra"), ("data", ""), ("signature", "extra"), ("extra",)] + member_paths(
            {k: v for k, v in doc.items() if k != "data"}):
        value = doc
        for k in path:
            value = value.get(k) if isinstance(value, dict) else None
        for fragment in json_fragments_for(value):
            yield Case(f"{'/'.join(path)}={fragment[:40]}", json_with(doc, path, fragment))
        if path in (("data",), ("signature",), ("format",)) or (len(path) == 2 and path[0] == "signature"
                                                                and path[1] in doc["signature"]):
            yield Case(f"without {'/'.join(path)}", json_with(doc, path, None))
    tagged = {**doc, "data": {**doc["data"], "note": "elicence-sm2-json/1"}}  # still sniffed as SM2-JSON
    for fragment in HOSTILE_JSON:  # ... whatever its format member holds
        yield Case(f"format={fragment[:40]}, the tag elsewhere", json_with(tagged, ("format",), fragment))
    for label, text in (("array", b"[" + original + b"]"), ("bom", b"\xef\xbb\xbf" + original),
                        ("trailing", original + b"x"), ("two documents", original + original),
                        ("duplicate data", original[:-1] + b',"data":{}}'),
                        ("duplicate format", original[:-1] + b',"format":"elicence-sm2-json/2"}'),
                        ("utf-16", original.decode().encode("utf-16")), ("nul", original + b"\x00"),
                        ("indented", orjson.dumps(doc, option=orjson.OPT_INDENT_2)),
                        ("escaped", original.decode().encode("ascii", "backslashreplace"))):
        yield Case(f"document {label}", text)
    yield from byte_mutants(rng, original, RANDOM_BYTE_MUTANTS)


@pytest.mark.parametrize("region", [SM2_JSON_PINYIN, SM2_JSON_CHINESE])
def test_hostile_sm2_json_licences_are_never_an_internal_error(world, status, region) -> None:
    rng = random.Random(f"{SEED}-{region}")
    original = world.simulator.issue(region, None, "valid", NOW).data
    run(world, status, region, original, sm2_json_cases(world, region, original, rng), minimum=1500)


# --- XML (SM2-XML licences and every XML part of an OFD) -----------------------------------
DECLARED_ENCODINGS = ("UTF-8", "utf8", "GB18030", "gbk", "GB2312", "ISO-8859-1", "US-ASCII", "UTF-16", "UTF-16LE",
                      "UTF-32", "TF-8", "rot13", "idna", "x-user-defined", "undefined", "", " UTF-8", "utf-7", "base64",
                      "zlib", "big5", "cp037", "utf_8_sig", "UTF-8\x00", "a" * 40)

_DECL = re.compile(rb"^\s*<\?xml[^>]*\?>")
_START_TAG = re.compile(rb"<([A-Za-z_\x80-\xff][^\s/>]*)(?:\s[^>]*)?>")
_TEXT = re.compile(rb">([^<]+)<")


def without_declaration(xml: bytes) -> bytes:
    m = _DECL.match(xml)
    return xml[m.end():] if m else xml


def text_encoding(xml: bytes) -> str:
    m = re.match(rb'^\s*<\?xml[^>]*encoding="([^"]+)"', xml)
    return m.group(1).decode().lower() if m else "utf-8"


def xml_mutants(rng: random.Random, xml: bytes, count: int) -> Iterator[tuple[str, bytes]]:
    """Structured XML mutants of ``xml`` (its own encoding kept unless the mutation is the encoding)."""
    enc = text_encoding(xml)
    codec = {"gb18030": "gb18030"}.get(enc, "utf-8")
    text = xml.decode(codec)
    body = without_declaration(xml)
    body_text = body.decode(codec)
    starts = list(_START_TAG.finditer(xml))
    texts = list(_TEXT.finditer(xml))
    flood_at = starts[0].end() if starts else 0  # inside the root element
    for name in DECLARED_ENCODINGS:
        yield f"declares {name!r}", f'<?xml version="1.0" encoding="{name}"?>'.encode("latin-1") + body
    for label, data in (
            ("declared UTF-8, written in GB18030", b'<?xml version="1.0" encoding="UTF-8"?>' + body_text.encode("gb18030")),
            ("declared GB18030, written in UTF-8", b'<?xml version="1.0" encoding="GB18030"?>' + body_text.encode("utf-8")),
            ("no declaration, GB18030 bytes", body_text.encode("gb18030")),
            ("UTF-16 with BOM", text.replace(f'encoding="{enc.upper()}"', 'encoding="UTF-16"').encode("utf-16")),
            ("UTF-16 without declaration", body_text.encode("utf-16")),
            ("UTF-16 DTD with entity", ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY e "x">]>'
                                        + body_text).encode("utf-16")),
            ("UTF-32", body_text.encode("utf-32")),
            ("BOM then declaration", b"\xef\xbb\xbf" + xml), ("two declarations", xml[:_DECL.match(xml).end()] + xml
                                                               if _DECL.match(xml) else xml + xml),
            ("declaration version 1.1", b'<?xml version="1.1" encoding="UTF-8"?>' + body_text.encode()),
            ("declaration without version", b'<?xml encoding="UTF-8"?>' + body_text.encode()),
            ("declaration single quotes", b"<?xml version='1.0' encoding='GB18030'?>" + body_text.encode("gb18030")),
            ("declaration standalone", b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + body_text.encode()),
            ("declaration too long", b'<?xml version="1.0"' + b" " * 300 + b'encoding="UTF-8"?>' + body_text.encode()),
            ("declaration unterminated", b'<?xml version="1.0" encoding="UTF-8"' + body),
            ("whitespace before declaration", b"\n \n" + xml),
            ("latin-1 mojibake", body_text.encode("utf-8").decode("latin-1").encode("utf-8")),
            ("doctype", b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">]>' + body),
            ("doctype after declaration", xml.replace(b"?>", b'?><!DOCTYPE r SYSTEM "file:///etc/passwd">', 1)),
            ("lowercase doctype", b'<!doctype r>' + body),
            ("doctype after 5000 bytes of comment", b"<!--" + b"x" * 5000 + b'--><!DOCTYPE r SYSTEM "http://127.0.0.1:1/">'
             + body),
            ("entity", b'<!DOCTYPE r [<!ENTITY a "&#38;#60;">]>' + body),
            ("billion laughs", b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
             b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>' + body.replace(b">", b">&c;", 2)),
            ("element flood", xml[:flood_at] + b"<x/>" * 3000 + xml[flood_at:]),
            ("unterminated cdata", xml.replace(b">", b"><![CDATA[x", 3)),
            ("nul byte", xml.replace(b">", b">\x00", 2)),
            ("empty", b""), ("only declaration", xml[:_DECL.match(xml).end()] if _DECL.match(xml) else b"<?xml?>"),
    ):
        yield label, data
    for _ in range(count):
        op = rng.randrange(14)
        if op == 0 and texts:  # a text node replaced by hostile text (escaped as XML requires)
            m = rng.choice(texts)
            value = rng.choice(hostile_texts_for(m.group(1).decode(codec, "replace")))
            value = value.replace("&", "&amp;").replace("<", "&lt;")
            try:
                new = value.encode(codec)
            except UnicodeEncodeError:
                continue
            yield f"text {m.group(1)[:20]!r} -> {value[:30]!r}", xml[:m.start(1)] + new + xml[m.end(1):]
        elif op == 1 and texts:  # CDATA, comments, processing instructions, references inside a text
            m = rng.choice(texts)
            inner = m.group(1)
            wrapped = rng.choice((b"<![CDATA[" + inner + b"]]>", inner[:1] + b"<!--c-->" + inner[1:],
                                  inner[:1] + b"<?pi x?>" + inner[1:], inner + b"&#0;", inner + b"&#xD800;",
                                  inner + b"&#x110000;", inner + b"&#65;", inner + b"&amp;", inner + b"&nosuch;",
                                  inner + b"&#99999999999999999999;", inner + b"&#x2028;", inner + b"]]>",
                                  inner + b"&lt;x&gt;", b"<![CDATA[]]>" + inner, inner + b"\r\n", b"\t" + inner))
            yield f"text {inner[:20]!r} -> {wrapped[:40]!r}", xml[:m.start(1)] + wrapped + xml[m.end(1):]
        elif op in (2, 3) and starts:  # an element duplicated or removed
            m = rng.choice(starts)
            name = m.group(1)
            end = xml.find(b"</" + name + b">", m.end())
            if m.group(0).endswith(b"/>"):
                end, close = m.end(), b""
            elif end < 0:
                continue
            else:
                close = b"</" + name + b">"
            stop = end + len(close) if close else end
            element = xml[m.start():stop]
            if op == 2:
                yield f"duplicate <{name!r}>", xml[:stop] + element + xml[stop:]
            else:
                yield f"remove <{name!r}>", xml[:m.start()] + xml[stop:]
        elif op == 4 and starts:  # attributes: new, duplicated, namespace declarations, reserved names
            m = rng.choice(starts)
            attr = rng.choice((b' a="1"', b' a="1" a="2"', b' xmlns="urn:other"', b' xmlns:ofd="urn:other"',
                               b' xml:lang="zh"', b' xmlns:xml="urn:x"', b' ID="' + b"9" * 40 + b'"', b" a='<'",
                               b' a="&#0;"', b' Type="Sign"', b' Type="Seal"', b' BaseLoc="../../x"', b" a=1",
                               b' CheckMethod="MD5"', b' alg="SM2-with-SM3"', b' serial="zz"', b' region="999999"'))
            tag_end = m.end() - (2 if m.group(0).endswith(b"/>") else 1)
            yield f"attribute {attr!r} on <{m.group(1)!r}>", xml[:tag_end] + attr + xml[tag_end:]
        elif op == 5 and starts:  # deep nesting inside an element
            m = rng.choice(starts)
            depth = rng.choice((3, 60, 600, 5000))
            yield f"nesting {depth} in <{m.group(1)!r}>", xml[:m.end()] + b"<a>" * depth + b"</a>" * depth + xml[m.end():]
        elif op == 6 and starts:  # the element's name or prefix changed
            m = rng.choice(starts)
            name = m.group(1)
            new = rng.choice((name + b"x", b"x:" + name.split(b":")[-1], name.split(b":")[-1], b"xml" + name,
                              name.upper(), "数据".encode(codec), b"a" * 300))
            yield f"rename <{name!r}> -> <{new[:20]!r}>", xml.replace(b"<" + name, b"<" + new).replace(b"</" + name,
                                                                                                       b"</" + new)
        elif op == 7:  # the namespace changed
            new = rng.choice((b"urn:other", b"", b"http://www.ofdspec.org/2016", b"urn:elicence:sm2-xml:1",
                              b"urn:elicence:ofd-data:1", b"urn:elicence:sm2-xml:2"))
            yield f"namespace -> {new!r}", re.sub(rb'xmlns(:\w+)?="[^"]*"', lambda m_: b"xmlns" + (m_.group(1) or b"")
                                                  + b'="' + new + b'"', xml, count=1)
        elif op == 8:  # an invalid byte sequence somewhere
            i = rng.randrange(len(xml))
            seq = rng.choice(_BAD_SEQUENCES)
            yield f"bytes {seq!r} at {i}", xml[:i] + seq + xml[i:]
        elif op == 9 and starts:  # comment / processing instruction / misplaced declaration between elements
            m = rng.choice(starts)
            ins = rng.choice((b"<!--x-->", b"<?pi?>", b'<?xml version="1.0"?>', b"<!---->", b"<!-- -- -->",
                              b"<![CDATA[x]]>", b"text", b"<!ENTITY x 'y'>", b"<!DOCTYPE x>", b"</x>", b"<x>"))
            yield f"insert {ins!r} after <{m.group(1)!r}>", xml[:m.end()] + ins + xml[m.end():]
        elif op == 10:  # truncated
            i = rng.randrange(len(xml))
            yield f"truncated at {i}", xml[:i]
        elif op == 11 and texts:  # a text made very long or empty
            m = rng.choice(texts)
            new = rng.choice((b"", m.group(1) * 2000, b" " * 70000, b"9" * 400))
            yield f"text {m.group(1)[:20]!r} x{len(new)}", xml[:m.start(1)] + new + xml[m.end(1):]
        elif op == 12:  # the whole document re-encoded in another encoding, declaration kept
            other = rng.choice(("utf-8", "gb18030", "utf-16", "latin-1", "big5", "shift_jis"))
            data = text.encode(other, "replace")
            yield f"re-encoded in {other}", data
        else:
            label, data = byte_mutant(rng, xml)
            yield label, data


def sm2_xml_resigned(world, region: str, fields: dict[str, Any]) -> bytes | None:
    """An SM2-XML licence of these (hostile) fields, genuinely signed, built as the simulator does."""
    try:
        return signed_document(fields, world.specs[region], world.material[region].issuers[-1])
    except (UnicodeEncodeError, orjson.JSONEncodeError):
        return None


def resigned_field_cases(original_fields: dict[str, Any], build: Callable[[dict[str, Any]], bytes | None],
                         what: str) -> Iterator[Case]:
    """Every field (and surface field) of a licence given each hostile text, the result genuinely signed."""
    for name, value in original_fields.items():
        subs = [(name, None)] + ([(name, s) for s in value] if isinstance(value, dict) else [])
        for field_name, sub in subs:
            current = value if sub is None else value[sub]
            texts = hostile_texts_for(current)
            for text in texts:
                fields = {k: (dict(v) if isinstance(v, dict) else v) for k, v in original_fields.items()}
                if sub is None:
                    fields[field_name] = text
                else:
                    fields[field_name][sub] = text
                data = build(fields)
                if data is not None:
                    yield Case(f"{what} {field_name}{'/' + sub if sub else ''}={text[:30]!r} (re-signed)", data, True)
        fields = {k: v for k, v in original_fields.items() if k != name}
        data = build(fields)
        if data is not None:
            yield Case(f"{what} without {name} (re-signed)", data, True)
    for extra in ({"extra": "x"}, {"a" * 64: "x"}, {"证照": {"x": "1"}}):
        data = build({**original_fields, **extra})
        if data is not None:
            yield Case(f"{what} with {list(extra)[0][:10]} (re-signed)", data, True)


def xml_fields(xml: bytes, what: str) -> dict[str, Any]:
    root = parse_hardened(xml, what)
    return data_from_element(next(iter(root)), what)


@pytest.mark.parametrize("region", [SM2_XML_GB18030, SM2_XML_UTF8])
def test_hostile_sm2_xml_licences_are_never_an_internal_error(world, status, region) -> None:
    rng = random.Random(f"{SEED}-{region}")
    original = world.simulator.issue(region, None, "valid", NOW).data

    def cases() -> Iterator[Case]:
        for label, data in xml_mutants(rng, original, 700):
            yield Case(label, data)
        fields = xml_fields(original, "licence")
        yield from resigned_field_cases(fields, lambda f: sm2_xml_resigned(world, region, f), "field")
        yield from byte_mutants(rng, original, RANDOM_BYTE_MUTANTS)

    run(world, status, region, original, cases(), minimum=1500)


# --- DER ---------------------------------------------------------------------------------
@dataclass
class Tlv:
    tag: int
    content: Any  # bytes, or a list of Tlv (constructed, or an OCTET STRING holding DER)
    wrapped: bool = False


def der_parse(buf: bytes) -> list[Tlv] | None:
    """Definite-length, single-byte-tag DER into a tree (None where it is not)."""
    out, pos = [], 0
    while pos < len(buf):
        if pos + 2 > len(buf):
            return None
        tag, first = buf[pos], buf[pos + 1]
        pos += 2
        if tag & 0x1F == 0x1F:
            return None
        if first < 0x80:
            length = first
        else:
            k = first & 0x7F
            if k == 0 or k > 4 or pos + k > len(buf):
                return None
            length = int.from_bytes(buf[pos:pos + k], "big")
            pos += k
        if pos + length > len(buf):
            return None
        content = buf[pos:pos + length]
        pos += length
        node = Tlv(tag, content)
        if tag & 0x20:
            children = der_parse(content)
            if children is not None:
                node.content = children
        elif tag == 0x04 and content[:1] == b"\x30":
            children = der_parse(content)
            if children is not None and len(children) == 1:
                node.content, node.wrapped = children, True
        out.append(node)
    return out


def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_dump(nodes: list[Tlv]) -> bytes:
    out = []
    for node in nodes:
        content = der_dump(node.content) if isinstance(node.content, list) else node.content
        out.append(bytes([node.tag]) + der_length(len(content)) + content)
    return b"".join(out)


def der_walk(nodes: list[Tlv], into_wrapped: bool = True) -> Iterator[tuple[list[Tlv], int]]:
    """(list, index) of every node; ``into_wrapped``: also inside OCTET STRINGs holding DER."""
    for i, node in enumerate(nodes):
        yield nodes, i
        if isinstance(node.content, list) and (into_wrapped or not node.wrapped):
            yield from der_walk(node.content, into_wrapped)


_HOSTILE_CONTENT = {
    0x02: (b"", b"\x00", b"\xff", b"\x00\x00\x01", b"\x80", b"\x7f" + b"\xff" * 20, b"\x80" + b"\x00" * 40, b"\x00\x04"),
    0x18: (b"", b"00000101000000Z", b"99991231235959Z", b"20261301000000Z", b"2026010100000Z", b"20260101000000",
           b"20260101000000+0800", b"20260101000000.5Z", b"20260230000000Z", b"20261231235960Z", b"\xff" * 15,
           "２０２６０１０１０００００００Z".encode(), b"+0260101000000Z"),
    0x17: (b"", b"000101000000Z", b"991231235959Z", b"491231235959Z", b"500101000000Z", b"261301000000Z", b"2601010000Z",
           b"260101000000+0800", b"\x00" * 13),
    0x06: (b"", b"\x80", b"\x00", b"\x2a\x86", b"\xff" * 20 + b"\x01", b"\x2a" * 200, b"\x80\x01", b"\x81\x80\x80\x80\x80"
           b"\x80\x80\x80\x80\x80\x01"),
    0x03: (b"", b"\x07", b"\x08\x00", b"\x01\xff", b"\xff", b"\x00"),
    0x01: (b"", b"\x01\x02", b"\x05", b"\x00"),
    0x05: (b"\x00",),
    0x0C: (b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x00", "甲".encode() * 3000),
    0x13: (b"\xff", b"*", "é".encode(), b""),
    0x16: (b"\xff", "é".encode(), b"", b"\x00"),
}
_TAGS = (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0C, 0x13, 0x16, 0x17, 0x18, 0x1E, 0x30, 0x31, 0xA0, 0xA1, 0x80, 0xFF)


def der_mutant(rng: random.Random, der: bytes) -> tuple[str, bytes]:
    """One DER mutant: a node's tag, length or content changed (enclosing lengths fixed up or not)."""
    tree = der_parse(der)
    if tree is None or rng.random() < 0.35:
        return der_raw_mutant(rng, der)
    return f"der {mutate_tree(rng, tree)} (lengths fixed)", der_dump(tree)


def mutate_tree(rng: random.Random, roots: list[Tlv], into_wrapped: bool = True) -> str:
    """Change one node somewhere in ``roots`` (in place); a label saying how."""
    nodes, i = rng.choice(list(der_walk(roots, into_wrapped)))
    node = nodes[i]
    op = rng.randrange(9)
    if op == 0:
        new_tag = rng.choice(_TAGS + (node.tag ^ 0x20,))
        label = f"tag {node.tag:#x} -> {new_tag:#x}"
        node.tag = new_tag
    elif op == 1:
        label = f"empty {node.tag:#x}"
        node.content, node.wrapped = b"", False
    elif op == 2:
        flat = der_dump(node.content) if isinstance(node.content, list) else node.content
        cut = rng.randrange(len(flat) + 1)
        label = f"content of {node.tag:#x} cut to {cut}"
        node.content, node.wrapped = flat[:cut], False
    elif op == 3:
        flat = der_dump(node.content) if isinstance(node.content, list) else node.content
        label = f"random content in {node.tag:#x}"
        node.content, node.wrapped = rng.randbytes(max(1, len(flat))), False
    elif op == 4:
        label = f"duplicate {node.tag:#x}"
        nodes.insert(i, Tlv(node.tag, node.content, node.wrapped))
    elif op == 5:
        label = f"remove {node.tag:#x}"
        del nodes[i]
    elif op == 6 and i + 1 < len(nodes):
        label = f"swap {node.tag:#x} with next"
        nodes[i], nodes[i + 1] = nodes[i + 1], nodes[i]
    elif op == 7:
        label = f"insert before {node.tag:#x}"
        nodes.insert(i, Tlv(rng.choice(_TAGS), rng.randbytes(rng.randrange(0, 40))))
    else:
        choices = _HOSTILE_CONTENT.get(node.tag, (b"", b"\x00" * 200))
        new = rng.choice(choices)
        label = f"content of {node.tag:#x} -> {new[:20]!r}"
        node.content, node.wrapped = new, False
    return label


def sign_as(key: Any, message: bytes) -> bytes:
    """A signature by ``key`` (an EC P-256, Ed25519 or SM2 TEST key), DER where the algorithm has one."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    if hasattr(key, "scalar"):  # gateway.crypto.sm2.SM2PrivateKey
        return sm2_sign(key, message)
    return key.sign(message)


def cert_resigned_mutant(rng: random.Random, cert_der: bytes, anchor_key: Any) -> tuple[str, bytes]:
    """The certificate with one node of its TBSCertificate changed, then signed again by the
    region's genuine anchor: it still chains to the anchor, carrying a hostile field (validity,
    extensions, names, key...)."""
    tree = der_parse(cert_der)
    tbs, alg, _ = tree[0].content
    label = mutate_tree(rng, tbs.content)
    signature = sign_as(anchor_key, der_dump([tbs]))
    return f"certificate {label}, re-signed by the anchor", der_dump([Tlv(0x30, [tbs, alg, Tlv(0x03, b"\0" + signature)])])


def oid(dotted: str) -> bytes:
    """The content octets of an OBJECT IDENTIFIER."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def _extension(dotted: str, value: Tlv, critical: bool = False) -> Tlv:
    return Tlv(0x30, [Tlv(0x06, oid(dotted)), *([Tlv(0x01, b"\xff")] if critical else []), Tlv(0x04, [value], True)])


def _validity(nb: Tlv, na: Tlv) -> Callable[[list[Tlv]], None]:
    return lambda tbs: tbs.__setitem__(4, Tlv(0x30, [nb, na]))


def _with_extension(ext: Tlv) -> Callable[[list[Tlv]], None]:
    """Add ``ext``, replacing the certificate's own extension of that type if it has one."""
    def change(tbs: list[Tlv]) -> None:
        extensions = tbs[-1].content[0].content
        extensions[:] = [e for e in extensions if e.content[0].content != ext.content[0].content] + [ext]

    return change


def _set_key_parameters(tbs: list[Tlv], parameters: Tlv) -> None:
    algorithm = tbs[6].content[0].content  # SubjectPublicKeyInfo.algorithm: OID [, parameters]
    algorithm[1:] = [parameters]


def _name(*attributes: Tlv) -> Tlv:
    return Tlv(0x30, [Tlv(0x31, [Tlv(0x30, [Tlv(0x06, oid("2.5.4.3")), a])]) for a in attributes])


#: TBSCertificate changes, by name (fields: 0 version, 1 serial, 2 signature, 3 issuer, 4 validity, 5 subject,
#: 6 key, 7 extensions): versions, serials, validity edges, names, extensions cryptography and asn1crypto refuse
#: in their own ways (InvalidVersion, DuplicateExtension, UnsupportedGeneralNameType are not ValueErrors)
CERTIFICATE_CHANGES: dict[str, Callable[[list[Tlv]], None]] = {
    **{f"version {v!r}": (lambda v: lambda tbs: tbs.__setitem__(0, Tlv(0xA0, [Tlv(0x02, v)])))(v)
       for v in (b"\x00", b"\x01", b"\x03", b"\x5b", b"\xff", b"\x01\x00", b"")},
    "no version, extensions kept": lambda tbs: tbs.pop(0),
    **{f"serial {v!r}": (lambda v: lambda tbs: tbs.__setitem__(1, Tlv(0x02, v)))(v)
       for v in (b"\x00", b"\xff\x01", b"\x01" * 21, b"\x00\x80", b"\x7f" + b"\xff" * 40)},
    "validity UTCTime 1950..2049": _validity(Tlv(0x17, b"500101000000Z"), Tlv(0x17, b"491231235959Z")),
    "validity 0001..9999": _validity(Tlv(0x18, b"00010101000000Z"), Tlv(0x18, b"99991231235959Z")),
    "validity reversed": _validity(Tlv(0x18, b"20301231235959Z"), Tlv(0x18, b"20200101000000Z")),
    "validity month 13": _validity(Tlv(0x18, b"20261301000000Z"), Tlv(0x18, b"20281231235959Z")),
    "validity with offset": _validity(Tlv(0x17, b"2601010000+0800"), Tlv(0x17, b"2801010000-1200")),
    "validity year 0000": _validity(Tlv(0x18, b"00000101000000Z"), Tlv(0x18, b"99991231235959Z")),
    "validity leap second": _validity(Tlv(0x18, b"20251231235960Z"), Tlv(0x18, b"20281231235959Z")),
    "empty subject": lambda tbs: tbs.__setitem__(5, Tlv(0x30, [])),
    "subject CN an INTEGER": lambda tbs: tbs.__setitem__(5, _name(Tlv(0x02, b"\x01"))),
    "subject CN odd-length BMPString": lambda tbs: tbs.__setitem__(5, _name(Tlv(0x1E, b"\x00a\x00"))),
    "subject CN invalid UTF-8": lambda tbs: tbs.__setitem__(5, _name(Tlv(0x0C, b"\xff\xfe"))),
    "subject CN 5000 characters": lambda tbs: tbs.__setitem__(5, _name(Tlv(0x0C, "证".encode() * 5000))),
    "subject CN twice": lambda tbs: tbs.__setitem__(5, _name(Tlv(0x0C, b"a"), Tlv(0x0C, b"a"))),
    "issuer empty": lambda tbs: tbs.__setitem__(3, Tlv(0x30, [])),
    "key on P-384": lambda tbs: _set_key_parameters(tbs, Tlv(0x06, oid("1.3.132.0.34"))),
    "key on an unknown curve": lambda tbs: _set_key_parameters(tbs, Tlv(0x06, oid("1.2.3.4"))),
    "key with NULL parameters": lambda tbs: _set_key_parameters(tbs, Tlv(0x05, b"")),
    "key point cut": lambda tbs: tbs.__setitem__(6, Tlv(0x30, [tbs[6].content[0], Tlv(0x03, b"\x00\x04\x01")])),
    "no extensions": lambda tbs: tbs.pop(),
    "empty extensions": lambda tbs: tbs.__setitem__(len(tbs) - 1, Tlv(0xA3, [Tlv(0x30, [])])),
    "every extension twice": lambda tbs: tbs[-1].content[0].content.extend(list(tbs[-1].content[0].content)),
    "unknown critical extension": _with_extension(_extension("1.2.3.4", Tlv(0x05, b""), critical=True)),
    "basic constraints pathLen -1": _with_extension(
        _extension("2.5.29.19", Tlv(0x30, [Tlv(0x01, b"\xff"), Tlv(0x02, b"\xff")]), critical=True)),
    "key usage with 8 unused bits": _with_extension(_extension("2.5.29.15", Tlv(0x03, b"\x08\x80"))),
    "key usage empty": _with_extension(_extension("2.5.29.15", Tlv(0x03, b""), critical=True)),
    "basic constraints a CA": _with_extension(_extension("2.5.29.19", Tlv(0x30, [Tlv(0x01, b"\xff")]), critical=True)),
    "subjectAltName x400Address": _with_extension(_extension("2.5.29.17", Tlv(0x30, [Tlv(0xA3, [Tlv(0x30, [])])]))),
    "subjectAltName ediPartyName": _with_extension(
        _extension("2.5.29.17", Tlv(0x30, [Tlv(0xA5, [Tlv(0xA1, [Tlv(0x0C, b"x")])])]))),
    "subjectAltName bad IP": _with_extension(_extension("2.5.29.17", Tlv(0x30, [Tlv(0x87, b"\x01\x02\x03")]))),
    "subjectAltName bad DNS": _with_extension(_extension("2.5.29.17", Tlv(0x30, [Tlv(0x82, b"\xff\xfe")]))),
    "authority key id garbage": _with_extension(_extension("2.5.29.35", Tlv(0x30, [Tlv(0x80, b""), Tlv(0x82, b"\x01")]))),
    "extended key usage of integers": _with_extension(_extension("2.5.29.37", Tlv(0x30, [Tlv(0x02, b"\x01")]))),
    "name constraints empty": _with_extension(_extension("2.5.29.30", Tlv(0x30, []), critical=True)),
    # every extension the readers know, with a value of the wrong shape
    **{f"extension {ext} as {shape}": _with_extension(_extension(ext, value))
       for ext in ("2.5.29.14", "2.5.29.15", "2.5.29.17", "2.5.29.19", "2.5.29.35", "2.5.29.37", "2.5.29.31",
                   "2.5.29.32", "2.5.29.30", "2.5.29.18", "1.3.6.1.5.5.7.1.1", "2.5.29.9")
       for shape, value in (("NULL", Tlv(0x05, b"")), ("INTEGER", Tlv(0x02, b"\x01")), ("empty SEQUENCE", Tlv(0x30, [])),
                            ("empty BIT STRING", Tlv(0x03, b"")), ("OCTET STRING", Tlv(0x04, b"\x01")),
                            ("BOOLEAN", Tlv(0x01, b"\xff")), ("SEQUENCE of INTEGER", Tlv(0x30, [Tlv(0x02, b"\x01")])),
                            ("SEQUENCE of NULL", Tlv(0x30, [Tlv(0x05, b"")])), ("[0] empty", Tlv(0xA0, [])),
                            ("SEQUENCE of [0]", Tlv(0x30, [Tlv(0xA0, [Tlv(0x30, [])])])))},
}


def certificate_variants(cert_der: bytes, anchor_key: Any,
                         changes: dict[str, Callable[[list[Tlv]], None]] | None = None) -> Iterator[tuple[str, bytes]]:
    """The certificate with each of ``changes`` (default :data:`CERTIFICATE_CHANGES`), signed again by
    the region's anchor (so it still chains, where it can be read at all)."""
    for label, change in (CERTIFICATE_CHANGES if changes is None else changes).items():
        tree = der_parse(cert_der)
        tbs, alg, _ = tree[0].content
        change(tbs.content)
        signature = sign_as(anchor_key, der_dump([tbs]))
        yield f"certificate {label}", der_dump([Tlv(0x30, [tbs, alg, Tlv(0x03, b"\0" + signature)])])


def der_raw_mutant(rng: random.Random, der: bytes) -> tuple[str, bytes]:
    """A byte-level change at a TLV header: indefinite / huge / non-minimal / off-by-one length,
    multi-byte tag, truncation at a boundary; the enclosing lengths are left as they were."""
    heads, pos = [], 0
    while pos + 2 <= len(der) and len(heads) < 400:  # every header position, walking into constructed values
        tag, first = der[pos], der[pos + 1]
        if first == 0x80 or first > 0x84:
            break
        hl = 2 + (first & 0x7F if first > 0x80 else 0)
        length = first if first < 0x80 else int.from_bytes(der[pos + 2:pos + hl], "big")
        heads.append((pos, hl, length))
        # into a constructed value (or an OCTET STRING holding DER), else over it
        pos += hl if tag & 0x20 or (tag == 0x04 and der[pos + hl:pos + hl + 1] == b"\x30") else hl + length
    if not heads:
        return "raw truncated", der[: len(der) // 2]
    pos, hl, length = rng.choice(heads)
    tag = der[pos]
    op = rng.randrange(8)
    rest = der[pos + hl:]
    if op == 0:
        return f"raw indefinite length at {pos}", der[:pos + 1] + b"\x80" + rest + b"\x00\x00"
    if op == 1:
        huge = rng.choice((b"\x84\xff\xff\xff\xff", b"\x84\x7f\xff\xff\xff", b"\x85\x01\x00\x00\x00\x00",
                           b"\x88" + b"\xff" * 8, b"\xff", b"\x81\xff", b"\x82\xff\xff"))
        return f"raw huge length {huge!r} at {pos}", der[:pos + 1] + huge + rest
    if op == 2:
        nonmin = (b"\x81" + bytes([length]) if length < 0x80 else b"\x84" + length.to_bytes(4, "big"))
        return f"raw non-minimal length at {pos}", der[:pos + 1] + nonmin + rest
    if op == 3:
        delta = rng.choice((-1, 1, -2, 2))
        new = max(0, length + delta)
        return f"raw length {length}{delta:+d} at {pos}", der[:pos + 1] + der_length(new) + rest
    if op == 4:
        new = rng.choice((b"\x1f\x81\x01", b"\x3f\x00", b"\xbf\x81\x80\x01", b"\x00", b"\x80", bytes([tag ^ 0x20])))
        return f"raw tag {tag:#x} -> {new!r} at {pos}", der[:pos] + new + der[pos + 1:]
    if op == 5:
        cut = rng.choice((pos, pos + 1, pos + hl, pos + hl + length // 2))
        return f"raw truncated at {cut}", der[:cut]
    if op == 6:
        return f"raw trailing bytes after {pos}", der + rng.choice((b"\x00", b"\x00\x00", b"\x05\x00", b"\x30\x80"))
    return f"raw zero length at {pos}", der[:pos + 1] + b"\x00" + rest


# --- OFD -----------------------------------------------------------------------------------
def ofd_resigned(world, region: str, files: dict[str, bytes], sign_dir: str = "Doc_0/Signs/Sign_0") -> bytes:
    """The package with SignedValue.dat made again, genuinely, over its (mutated) Signature.xml."""
    key = world.material[region].issuers[-1]
    sig_xml = files[f"{sign_dir}/Signature.xml"]
    files = dict(files)
    if world.specs[region].options.get("signature_type", "Seal") == "Sign":
        files[f"{sign_dir}/SignedValue.dat"] = sm2_sign(key.private_key, sig_xml)
    else:
        ses = parse_ses_signature(files[f"{sign_dir}/SignedValue.dat"])
        files[f"{sign_dir}/SignedValue.dat"] = build_ses_signature(
            seal_der=ses.seal.der, signing_time=ses.time_info, data_hash=sm3(sig_xml), property_info=ses.property_info,
            signer_key=key.private_key, signer_cert_der=key.cert.der)
    return write_ofd_package(files, NOW)


_REFERENCE = re.compile(rb'(FileRef="/([^"]+)"[ \t\n]*>[ \t\r\n]*<ofd:CheckValue>)[^<]*(</ofd:CheckValue>)')


def rereferenced(files: dict[str, bytes], sig_path: str) -> bytes:
    """Signature.xml with every Reference's CheckValue made again from the parts as they are now."""
    def digest(m: re.Match) -> bytes:
        content = files.get(m.group(2).decode())
        return m.group(1) + (base64.b64encode(sm3(content)) if content is not None else b"") + m.group(3)

    return _REFERENCE.sub(digest, files[sig_path])


def ses_resigned_package(rng: random.Random, world, region: str, files: dict[str, bytes],
                         signer_cert: bytes | None = None) -> tuple[str, bytes]:
    """A Type=Seal package whose SES_Signature (or its seal, or its signer certificate) carries one
    hostile node and is then made consistent and signed again, as far as its shape still allows: the
    seal maker's signature, Seal.esl, the References, TBS_Sign.dataHash and the signature over TBS_Sign.
    ``signer_cert``: this signer certificate (in the signature and the seal's list) instead of a random change."""
    key, material = world.material[region].issuers[-1], world.material[region]
    sign_dir = "Doc_0/Signs/Sign_0"
    sv_path, seal_path, sig_path = f"{sign_dir}/SignedValue.dat", f"{sign_dir}/Seal.esl", f"{sign_dir}/Signature.xml"
    tree = der_parse(files[sv_path])
    ses = tree[0].content
    tbs = ses[0].content
    seal_node = tbs[1]
    eseal = seal_node.content
    maker_signature, data_hash = eseal[3].content, tbs[3].content
    what = rng.randrange(4) if signer_cert is None else 3
    if what == 0:
        label = "seal info: " + mutate_tree(rng, eseal[0].content, into_wrapped=False)  # not the certificates
    elif what == 1:
        label = "seal: " + mutate_tree(rng, eseal)
    elif what == 2:
        label = "TBS_Sign: " + mutate_tree(rng, tbs, into_wrapped=False)
    else:  # the signer certificate, still chaining to the anchor, in the signature and in the seal's list
        label, cert = (("given signer certificate", signer_cert) if signer_cert is not None
                       else cert_resigned_mutant(rng, key.cert.der, material.anchor_key))
        ses[1] = Tlv(0x04, cert)
        eseal[0].content[2].content[3] = Tlv(0x30, [Tlv(0x04, cert)])
    if len(eseal) == 4 and eseal[3].tag == 0x03 and eseal[3].content == maker_signature:
        eseal[3] = Tlv(0x03, b"\0" + sm2_sign(key.private_key, der_dump(eseal[:1])))
    changed = dict(files)
    if seal_node in tbs:
        changed[seal_path] = der_dump([seal_node])
    changed[sig_path] = rereferenced(changed, sig_path)
    if len(tbs) > 3 and tbs[3].tag == 0x03 and tbs[3].content == data_hash:
        tbs[3] = Tlv(0x03, b"\0" + sm3(changed[sig_path]))
    if len(ses) == 4 and ses[3].tag == 0x03:
        ses[3] = Tlv(0x03, b"\0" + sm2_sign(key.private_key, der_dump(ses[:1])))
    changed[sv_path] = der_dump(tree)
    return label, write_ofd_package(changed, NOW)


def ofd_with_data_part(world, region: str, part: bytes) -> bytes:
    """A complete, genuinely signed (sealed) OFD whose licence data part is ``part``."""
    spec = world.specs[region]
    key = world.material[region].issuers[-1]
    files = {DATA_PART: part, "Doc_0/Pages/Page_0/Content.xml": _page("电子证照", "")}
    when = NOW - dt.timedelta(hours=1)
    if spec.options.get("signature_type", "Seal") == "Sign":
        return _build_signed(files, key, when)
    seal_name = f"{spec.name}电子证照专用章（测试）"
    return build_sealed_ofd(files, key.private_key, key.cert.der, seal_name, when, seal_der=_issuer_seal(key, seal_name))


_SIGNATURE_XML_TEXTS = {
    b"SignatureDateTime": (b"0001-01-01 00:00:00", b"0001-01-01 07:59:59", b"9999-12-31 23:59:59", b"00010101000000",
                           b"99991231235959Z", b"0001-01-01T00:00:00", b"2026-11-27 12:00:60", b"2026-02-30 00:00:00",
                           b"", b"now", b"2026-11-27 12:00:00.999999999", b"\xd9\xa2026-11-27 12:00:00",
                           "２０２６-１１-２７ １２:００:００".encode(), b"-2026-11-27 12:00:00", b"1" * 40),
    b"SignedValue": (b"", b"/", b"//", b"../../../etc/passwd", b"/Doc_0/../../x", b"Doc_0/Signs/Sign_0/SignedValue.dat",
                     b"/Doc_0/Signs/Sign_0/Seal.esl", b"/OFD.xml", b"/Doc_0/Signs/Sign_0/", b"\\x", b" /a ", b"/a\x01"),
    b"SignatureMethod": (b"", b"1.2.840.10045.4.3.2", b"SM2", b"1.2.156.10197.1.501 ", b"x" * 300),
    b"BaseLoc": (b"", b"/", b"../../x", b"/Doc_0/Signs/Sign_0/SignedValue.dat", b"/missing.esl", b"Seal.esl"),
    b"CheckValue": (b"", b"=", b"A=", b"AAAA====", b"%%%%", b"AAA", b" " + b"A" * 44, b"A" * 100000),
}


class _Unseekable(io.RawIOBase):
    """A write-only stream without tell(): zipfile then writes data descriptors (flag 0x08)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        return self.buf.write(b)

    def tell(self) -> int:
        raise OSError("unseekable")


def zip_variants(files: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """The package's contents zipped other ways a producer may: reordered, stored, with zip64 extra
    fields, with an archive comment, with data descriptors, with folder entries."""
    stamp = (2026, 1, 1, 0, 0, 0)
    out = [("reordered", write_ofd_package(dict(reversed(list(files.items()))), NOW))]
    for label in ("stored", "zip64 extras", "comment", "data descriptors", "folders"):
        sink = _Unseekable() if label == "data descriptors" else io.BytesIO()
        method = zipfile.ZIP_STORED if label == "stored" else zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(sink, "w", method) as zf:
            if label == "comment":
                zf.comment = b"OFD " * 20
            if label == "folders":
                zf.writestr(zipfile.ZipInfo("Doc_0/", stamp), b"")
            for name, content in files.items():
                info = zipfile.ZipInfo(name, stamp)
                info.compress_type = method
                if label == "zip64 extras":
                    with zf.open(info, "w", force_zip64=True) as fh:
                        fh.write(content)
                else:
                    zf.writestr(info, content)
        out.append((label, (sink.buf if isinstance(sink, _Unseekable) else sink).getvalue()))
    return out


#: (offset, size) of the fields of a central directory header, a local file header and the end record
_ZIP_FIELDS = {
    b"PK\x01\x02": ((4, 2), (6, 2), (8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (32, 2), (34, 2),
                    (42, 4)),
    b"PK\x03\x04": ((4, 2), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)),
    b"PK\x05\x06": ((4, 2), (6, 2), (8, 2), (10, 2), (12, 4), (16, 4), (20, 2)),
    b"PK\x07\x08": ((4, 4), (8, 4), (12, 4)),
    b"PK\x06\x06": ((24, 8), (32, 8), (40, 8), (48, 8)),
}


def zip_header_mutant(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """One field of one zip header (version, flags, method, CRC, sizes, name / extra / comment
    lengths, offsets, counts) set to an edge value."""
    heads = [(m.start(), sig) for sig in _ZIP_FIELDS for m in re.finditer(re.escape(sig), data)]
    pos, sig = rng.choice(heads)
    offset, size = rng.choice(_ZIP_FIELDS[sig])
    at = pos + offset
    if at + size > len(data):
        return "truncated header", data[:pos + 4]
    old = int.from_bytes(data[at:at + size], "little")
    top = (1 << (8 * size)) - 1
    value = rng.choice((0, 1, top, top >> 1, min(top, old + 1), max(0, old - 1), min(top, old * 2), 20, 45, 51, 63,
                        64, 67, 99, 12, 14, old | 0x1, old | 0x8, old | 0x40, old | 0x800, old | 0x2000, old ^ 0x800,
                        rng.randrange(top + 1)))
    value &= top
    return (f"{sig[2:]!r} header at {pos} field +{offset} {old} -> {value}",
            data[:at] + value.to_bytes(size, "little") + data[at + size:])


def ofd_cases(world, region: str, original: bytes, rng: random.Random, per_part: int) -> Iterator[Case]:
    files = dict(read_ofd_package(original).files)
    sign_dir = "Doc_0/Signs/Sign_0"
    sig_path = f"{sign_dir}/Signature.xml"
    is_sign = world.specs[region].options.get("signature_type", "Seal") == "Sign"

    def with_part(path: str, content: bytes | None) -> bytes:
        changed = dict(files)
        if content is None:
            changed.pop(path, None)
        else:
            changed[path] = content
        return write_ofd_package(changed, NOW)

    for path in sorted(files):
        yield Case(f"{path} removed", with_part(path, None))
        yield Case(f"{path} emptied", with_part(path, b""))
        if path.endswith(".xml"):
            for label, content in xml_mutants(rng, files[path], per_part):
                yield Case(f"{path}: {label}", with_part(path, content))
        else:  # DER: SignedValue.dat, Seal.esl, SignerCert.der
            for _ in range(per_part * (3 if path.endswith("SignedValue.dat") and not is_sign else 1)):
                label, content = der_mutant(rng, files[path])
                yield Case(f"{path}: {label}", with_part(path, content))
        for case in byte_mutants(rng, files[path], per_part // 3):
            yield Case(f"{path}: {case.label}", with_part(path, case.data))
    # Signature.xml texts with hostile values: unsigned, and (the signed value made again) signed
    sig_xml = files[sig_path]
    for element, values in _SIGNATURE_XML_TEXTS.items():
        pattern = re.compile(rb"(<ofd:" + element + rb">)([^<]*)(</ofd:" + element + rb">)")
        for value in values:
            new = pattern.sub(lambda m: m.group(1) + value + m.group(3), sig_xml, count=1)
            if new == sig_xml:
                continue
            yield Case(f"Signature.xml {element.decode()}={value[:30]!r}", with_part(sig_path, new))
            yield Case(f"Signature.xml {element.decode()}={value[:30]!r} (re-signed)",
                       ofd_resigned(world, region, {**files, sig_path: new}), True)
    for attr, values in ((b"CheckMethod", (b"", b"MD5", b"sm3", b"SM3", b"1.2.156.10197.1.401.1", b"\xe2\x80\x8b")),
                         (b"FileRef", (b"", b"/", b"../../x", b"/Doc_0/Attachs/", b"/OFD.xml/..", b"/a\\b", b"\xc3\xa9"))):
        for value in values:
            new = re.sub(attr + rb'="[^"]*"', attr + b'="' + value + b'"', sig_xml, count=1)
            yield Case(f"Signature.xml {attr.decode()}={value!r}", with_part(sig_path, new))
            yield Case(f"Signature.xml {attr.decode()}={value!r} (re-signed)",
                       ofd_resigned(world, region, {**files, sig_path: new}), True)
    for label, content in xml_mutants(rng, sig_xml, per_part):
        yield Case(f"Signature.xml {label} (re-signed)", ofd_resigned(world, region, {**files, sig_path: content}), True)
    # signed hostile DER: the SES_Signature, its seal and the signer certificate (Seal), or the
    # SignerCert.der (Sign), each made consistent and signed again
    if is_sign:
        cert_path = f"{sign_dir}/{SIGNER_CERT_NAME}"
        anchor_key = world.material[region].anchor_key
        for label, cert in [*certificate_variants(files[cert_path], anchor_key),
                            *(cert_resigned_mutant(rng, files[cert_path], anchor_key) for _ in range(per_part))]:
            changed = {**files, cert_path: cert}
            changed[sig_path] = rereferenced(changed, sig_path)
            yield Case(f"SignerCert.der {label} (re-signed)", ofd_resigned(world, region, changed), True)
    else:
        for label, cert in certificate_variants(world.material[region].issuers[-1].cert.der,
                                                world.material[region].anchor_key):
            yield Case(f"SES {label} (re-signed)", ses_resigned_package(rng, world, region, files, cert)[1], True)
        for _ in range(per_part * 2):
            label, data = ses_resigned_package(rng, world, region, files)
            yield Case(f"SES {label} (re-signed)", data, True)
    # the licence data part: hostile fields in a genuinely signed package
    fields = xml_fields(files[DATA_PART], DATA_PART)
    enc = world.specs[region].text_encoding

    def build(f: dict[str, Any]) -> bytes | None:
        try:
            part = (prolog(enc) + f'<{DATA_ROOT} xmlns="{DATA_NS}">' + data_xml(f) + f"</{DATA_ROOT}>").encode(enc)
        except UnicodeEncodeError:
            return None
        return ofd_with_data_part(world, region, part)

    cases = list(resigned_field_cases(fields, build, "data part"))
    rng.shuffle(cases)
    yield from cases[:per_part * 2]
    for label, content in xml_mutants(rng, files[DATA_PART], per_part // 2):
        yield Case(f"data part {label} (re-signed)", ofd_with_data_part(world, region, content), True)
    # the zip itself: written other ways (same contents), header fields changed, damaged at random
    for label, variant in zip_variants(files):
        yield Case(f"zip {label}", variant)
        for _ in range(per_part):
            what, mutated = zip_header_mutant(rng, variant)
            yield Case(f"zip {label}: {what}", mutated)
    yield from byte_mutants(rng, original, RANDOM_BYTE_MUTANTS, "zip: ")


@pytest.mark.parametrize("region", [OFD_SEAL, OFD_SIGN, OFD_SEAL_GB18030])
def test_hostile_ofd_licences_are_never_an_internal_error(world, status, region) -> None:
    rng = random.Random(f"{SEED}-{region}")
    original = world.simulator.issue(region, None, "valid", NOW).data
    per_part = 30 if region == OFD_SEAL_GB18030 else 60
    run(world, status, region, original, ofd_cases(world, region, original, rng, per_part), minimum=600)


# --- regressions: the bugs this fuzzer found, each as a named case ------------------------
def jws_token(world, region: str, header: dict | None = None, payload_text: bytes | None = None,
              resign: bool = True) -> bytes:
    """A genuine token of ``region`` with its header and/or payload text replaced, signed again (or not)."""
    h64, p64, s64 = world.simulator.issue(region, None, "valid", NOW).data.split(b".")
    signing_input = (b64u(orjson.dumps(header)) if header is not None else h64) + b"." + (
        b64u(payload_text) if payload_text is not None else p64)
    return signing_input + b"." + (sign_jws(world, region, signing_input) if resign else s64)


def jws_payload(world, region: str) -> dict:
    return orjson.loads(b64u_decode(world.simulator.issue(region, None, "valid", NOW).data.split(b".")[1]))


@pytest.mark.parametrize("alg", [[], ["ES256"], {}, {"alg": "ES256"}])
def test_jws_alg_that_is_a_list_or_an_object_is_algorithm_not_allowed(world, status, alg) -> None:
    # was TypeError (unhashable) -> indeterminate / INTERNAL
    header = orjson.loads(b64u_decode(world.simulator.issue(JWS_ES256, None, "valid", NOW).data.split(b".")[0]))
    for resign in (False, True):
        result = world.verifier.verify(jws_token(world, JWS_ES256, {**header, "alg": alg}, resign=resign),
                                       world.snapshot, status, NOW)
        assert result.verdict.value == "invalid" and result.reason_codes == ("ALGORITHM_NOT_ALLOWED",)


@pytest.mark.parametrize("iat", ["1e20", "-1e20", "9223372036854775807", "-9223372036854775808", "1e13",
                                 "253402300800", "-62135596801"])
def test_jws_iat_outside_the_representable_time_range_is_malformed(world, status, iat) -> None:
    # past time_t or outside years 1..9999: was OverflowError / OSError / ValueError -> indeterminate / INTERNAL
    payload = jws_payload(world, JWS_ES256)
    text = json_with(payload, ("iat",), iat)
    for resign in (False, True):
        result = world.verifier.verify(jws_token(world, JWS_ES256, payload_text=text, resign=resign),
                                       world.snapshot, status, NOW)
        assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)
        assert "iat" in result.reasons[0].detail


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("levels, verdict", [(31, "valid"), (32, "invalid"), (300, "invalid")])
def test_genuinely_signed_jws_payload_nested_past_the_depth_limit_is_malformed(world, status, levels, verdict) -> None:
    # the payload read (orjson: 1,024 levels), but its answer could not be written (orjson: 254): HTTP 500
    from adapters.jws import MAX_PAYLOAD_DEPTH

    assert MAX_PAYLOAD_DEPTH == 32
    text = json_with(jws_payload(world, JWS_ES256), ("deep",), _nested(levels))  # the payload is level 1
    result = world.verifier.verify(jws_token(world, JWS_ES256, payload_text=text), world.snapshot, status, NOW)
    assert result.verdict.value == verdict
    if verdict == "invalid":
        assert result.reason_codes == ("MALFORMED",) and "deep" in result.reasons[0].detail
    orjson.dumps(render_result(result), option=orjson.OPT_UTC_Z)


async def test_over_http_a_genuinely_signed_jws_nested_too_deep_is_an_invalid_answer_not_a_500(api, world) -> None:
    text = json_with(jws_payload(world, JWS_ES256), ("surface", "deep"), _nested(300))
    resp = await api.post("/v1/licences/verify", json={"licence": jws_token(world, JWS_ES256, payload_text=text).decode(),
                                                       "encoding": "utf-8"})
    assert resp.status == 200
    answer = await resp.json()
    assert answer["verdict"] == "invalid" and [r["code"] for r in answer["reasons"]] == ["MALFORMED"]


# --- the HTTP layer --------------------------------------------------------------------------
def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


#: request bodies that are not what the API takes: wrong JSON types, huge numbers, deep nesting, bad UTF-8
HOSTILE_BODIES: tuple[bytes, ...] = (
    b"", b" ", b"null", b"true", b"1", b"-0", b"1e999", b"123456789012345678901234567890", b'"x"', b"[]", b"[1,2]",
    b"{}", b"{", b"}", b'{"licence"}', b"\xff\xfe{}", b"\xef\xbb\xbf{}", b'{"licence":"x"}{"a":1}', b"{}" * 1000,
    b'{"licence":null}', b'{"licence":1}', b'{"licence":1.5e308}', b'{"licence":123456789012345678901234567890}',
    b'{"licence":[]}', b'{"licence":["x"]}', b'{"licence":{}}', b'{"licence":true}', b'{"licence":"x","encoding":null}',
    b'{"licence":"x","encoding":1}', b'{"licence":"x","encoding":[]}', b'{"licence":"x","encoding":{}}',
    b'{"licence":"x","encoding":"UTF-8"}', b'{"licence":"x","encoding":"base64url"}', b'{"licence":"x","encoding":""}',
    b'{"licence":"\\ud800"}', b'{"licence":"\\udc00\\ud800"}', b'{"licence":"\xff"}', b'{"licence":"\xc3"}',
    b'{"licence":"\xed\xa0\x80"}', b'{"licence":"\\u0000"}', b'{"licence":""}', b'{"licence":"","encoding":"base64"}',
    b'{"licence":"\xc3\xbf\xc3\xbf","encoding":"base64"}', b'{"licence":"QUJD\\nREVG","encoding":"base64"}',
    b'{"licence":"QUJD=","encoding":"base64"}', b'{"licence":"eyJ.eyJ.","encoding":"utf-8"}',
    b'{"licence":"x","e":' + _deep(1000) + b"}", b'{"licence":"x","e":' + _deep(1100) + b"}",
    b'{"licence":' + _deep(300) + b"}", b'{"licence":"x","licence":1}', b'{"licence":1,"licence":"x"}',
    b'{"licences":null}', b'{"licences":{}}', b'{"licences":"x"}', b'{"licences":[]}', b'{"licences":[null]}',
    b'{"licences":[1]}', b'{"licences":[[]]}', b'{"licences":["x"]}', b'{"licences":[{"licence":1}]}',
    b'{"licences":[{"licence":"x","encoding":"base64"}]}', b'{"licences":[{"licence":"\\ud800"}]}',
    b'{"licences":[' + _deep(300) + b"]}", b'{"licences":[{"licence":"x"}],"licences":7}',
    b'{"licences":[' + b",".join([b'{"licence":"x"}'] * 101) + b"]}",
    b'{"licences":[' + b",".join([b'{"licence":"x"}'] * 100) + b"]}",
)


@pytest.fixture
async def partner_api(world, aiohttp_client):
    """An HTTP client with the load partner's token (a rate no test of this size reaches)."""
    from gateway.app import create_app

    return await aiohttp_client(create_app(world.services()), headers=world.auth(client_id="load-partner"))


async def test_hostile_request_bodies_get_a_problem_document_or_verdicts_never_a_500(partner_api, world) -> None:
    from gateway import errors

    known = {r.code for r in vars(errors).values() if isinstance(r, errors.Reason)}
    problems = []
    requests = [(path, body, "application/json") for path in ("/v1/licences/verify", "/v1/licences/verify-batch")
                for body in HOSTILE_BODIES]
    requests += [(path, b'{"licence":"x"}', ctype) for path in ("/v1/licences/verify", "/v1/licences/verify-batch")
                 for ctype in ("text/plain", "application/json; charset=utf-16", "application/x+json", "", "a/b; c")]
    statuses: dict[int, int] = {}
    for path, body, ctype in requests:
        resp = await partner_api.post(path, data=body, headers={"Content-Type": ctype} if ctype else {})
        statuses[resp.status] = statuses.get(resp.status, 0) + 1
        doc = orjson.loads(await resp.read())
        where = f"{path} {ctype} {body[:60]!r} -> {resp.status}"
        if resp.status == 200:
            entries = doc["results"] if path.endswith("batch") else [doc]
            if not all(e["verdict"] in ("valid", "invalid", "indeterminate") and
                       "INTERNAL" not in [r["code"] for r in e["reasons"]] for e in entries):
                problems.append(f"{where}: {doc}")
        elif not (400 <= resp.status < 500 and resp.content_type == "application/problem+json"
                  and doc.get("code") in known and doc["code"] != "INTERNAL"):
            problems.append(f"{where}: {doc}")
    assert not problems, "\n".join(problems)
    assert set(statuses) == {200, 400, 413, 415}, statuses  # verdicts, bad requests, too large a batch, media type


@pytest.mark.parametrize("change", ["version b'['", "version b'\\x01'", "every extension twice",
                                    "subjectAltName x400Address", "subjectAltName ediPartyName"])
def test_x5c_certificate_with_a_bad_version_duplicate_extensions_or_x400_names_is_malformed(world, status,
                                                                                           change) -> None:
    # cryptography raises InvalidVersion, DuplicateExtension, UnsupportedGeneralNameType -- none a ValueError,
    # which is all load_certificate turned into "unreadable": was indeterminate / INTERNAL. Anchor-signed or
    # not, the certificate is read before any signature is checked
    material = world.material[JWS_ES256]
    variants = dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key))
    cert = variants[f"certificate {change}"]
    header = orjson.loads(b64u_decode(world.simulator.issue(JWS_ES256, None, "valid", NOW).data.split(b".")[0]))
    header = {**{k: v for k, v in header.items() if k != "kid"}, "x5c": [base64.b64encode(cert).decode()]}
    for resign in (False, True):
        result = world.verifier.verify(jws_token(world, JWS_ES256, header, resign=resign), world.snapshot, status, NOW)
        assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)
        assert "certificate" in result.reasons[0].detail


def test_sm2_signer_certificate_with_an_empty_key_usage_bit_string_is_malformed(world, status) -> None:
    # asn1crypto parses lazily: KeyUsage's .native, read outside sm2cert's guarded block, raised IndexError on
    # a BIT STRING with no content (indeterminate / INTERNAL); the certificate is read before any signature
    material = world.material[OFD_SIGN]
    cert = dict(certificate_variants(material.issuers[-1].cert.der, material.anchor_key))["certificate key usage empty"]
    files = dict(read_ofd_package(world.simulator.issue(OFD_SIGN, None, "valid", NOW).data).files)
    files[f"Doc_0/Signs/Sign_0/{SIGNER_CERT_NAME}"] = cert
    for data in (write_ofd_package(files, NOW), ofd_resigned(world, OFD_SIGN, {
            **files, "Doc_0/Signs/Sign_0/Signature.xml": rereferenced(files, "Doc_0/Signs/Sign_0/Signature.xml")})):
        result = world.verifier.verify(data, world.snapshot, status, NOW)
        assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",)
        assert "certificate DER is malformed" in result.reasons[0].detail


@pytest.mark.parametrize("member, reason", [("alg", "ALGORITHM_NOT_ALLOWED"), ("typ", "UNSUPPORTED_FORMAT"),
                                            ("crit", "MALFORMED")])
def test_jws_header_member_nested_a_thousand_deep_is_rejected_not_an_internal_error(world, status, member,
                                                                                     reason) -> None:
    # the rejection's detail quoted the value with repr(), which raised RecursionError (indeterminate / INTERNAL)
    h64, p64, s64 = world.simulator.issue(JWS_ES256, None, "valid", NOW).data.split(b".")
    header = orjson.loads(b64u_decode(h64))
    text = json_with(header, (member,), "[" * 1020 + "]" * 1020)  # as deep as orjson reads (1,024)
    result = world.verifier.verify(b64u(text) + b"." + p64 + b"." + s64, world.snapshot, status, NOW)
    assert result.verdict.value == "invalid" and result.reason_codes == (reason,)
    assert "an array" in result.reasons[0].detail


def test_a_rejection_quotes_presented_values_short_and_never_recursively() -> None:
    from gateway.errors import shown

    assert shown("ES512") == "'ES512'" and shown(None) == "None" and shown(7) == "7"
    assert shown("x" * 1000) == repr("x" * 80) + "..."
    assert shown(orjson.loads("[" * 1020 + "]" * 1020)) == "an array" and shown({"a": 1}) == "an object"
