"""Round-4 fast paths equal their reference paths, and odd or hostile shapes fall back.

* core: the checks run in a tight loop; the first one that raises hands over to the per-check
  loop (``Verifier._after_failure``). The reference is the round-3 loop, kept verbatim below:
  same results (order included), reasons, verdict, for every simulator case of every family
  and for checks that fail late, fail as non-gates, or crash (a bug);
* sm2-xml: a plain prolog decoded without the prolog scans (``plain_text``), the
  <SignatureValue> KeyRef cached by its attribute text, the signing time popped from the
  family's own dictionary; the reference is the ElementTree path with the caches empty;
* sm2-json: the signing time popped in place (``pop_signing_time``) equals the copying
  ``split_signing_time`` of round 3, errors word for word;
* jws: r||s -> DER for the fixed-size case equals ``encode_dss_signature``.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from adapters import Limits, sm2_json, sm2_xml
from adapters.jws import _es256_der
from adapters.sm2_json import DEFAULT_SIGNING_TIME_FIELD, parse_signing_time, pop_signing_time, split_signing_time
from adapters.sm2_xml import Sm2XmlFamily, decode_xml, plain_text
from gateway import errors
from gateway.core import DEFAULT_CHECKS, FAIL, PASS, SKIP, Check, Verdict, Verifier
from gateway.errors import GatewayError, InfrastructureError, LicenceRejected
from gateway.simulator import EXPECTED, expected
from tests.conftest import NOW

#: one region per family / algorithm / text encoding / key reference
REGIONS = {"341100": "jws", "652929": "jws", "330100": "sm2-json", "220600": "sm2-json", "320100": "sm2-xml",
           "320200": "sm2-xml", "310000": "ofd-seal", "500102": "ofd-seal"}
SM2_XML = Sm2XmlFamily()
BIG = Limits(max_licence_bytes=1 << 22)


def _facts(result) -> tuple:
    return (result.verdict, result.reason_codes, tuple((type(r), str(r)) for r in result.reasons),
            list(result.checks.items()), result.region, result.format, result.licence, result.signer_key_id,
            result.signing_time, result.status_age, result.notes)


def _round3_loop(verifier: Verifier, data: bytes, trust, status, now) -> tuple:
    """The round-3 verify loop, verbatim: (results, reasons, verdict)."""
    import gateway.core as core

    ctx = core._make_context(data, trust, status, now, verifier.policy, verifier.specs, verifier.type_names,
                             now.timestamp(), None, None, None, None, None, None, [])
    results = {c.name: SKIP for c in verifier.checks}
    reasons: list[GatewayError] = []
    for c in verifier.checks:
        name, run, gate = c.name, c.run, c.gate
        try:
            results[name] = run(ctx)
            continue
        except GatewayError as exc:
            results[name] = FAIL
            reasons.append(exc)
            if not gate:
                continue
        except Exception as exc:
            results[name] = FAIL
            reasons.append(InfrastructureError(errors.INTERNAL, f"{name}: {type(exc).__name__}"))
        break
    if not reasons:
        verdict = Verdict.VALID if results.get("signature") == PASS else Verdict.INDETERMINATE
    elif any(isinstance(r, LicenceRejected) for r in reasons):
        verdict = Verdict.INVALID
    else:
        verdict = Verdict.INDETERMINATE
    return list(results.items()), tuple((type(r), str(r)) for r in reasons), verdict, tuple(ctx.notes)


@pytest.fixture(scope="module")
def issued(world) -> dict[tuple[str, str], bytes]:
    types = sorted(t.key for t in world.catalogue.types)
    return {(region, case): world.simulator.issue(region, types[i % len(types)], case, NOW).data
            for region in REGIONS for i, case in enumerate(EXPECTED)}


@pytest.fixture(scope="module")
def status(world):
    return world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))


def _reference_paths(m: pytest.MonkeyPatch) -> None:
    """Every round-4 family fast path off: the ElementTree sm2-xml reader, decode_xml's prolog scan,
    an empty KeyRef cache."""
    m.setattr(sm2_xml, "_fast_document", lambda text: None)
    m.setattr(sm2_xml, "plain_text", lambda data: None)
    m.setattr(sm2_xml, "_KEY_REFS", {})


# --- core: the tight loop == the round-3 loop ---------------------------------------------
@pytest.mark.parametrize("case", list(EXPECTED))
@pytest.mark.parametrize("region", list(REGIONS))
def test_every_simulator_case_gives_the_round3_loops_results(world, issued, status, region, case) -> None:
    data = issued[(region, case)]
    result = world.verifier.verify(data, world.snapshot, status, NOW)
    results, reasons, verdict, notes = _round3_loop(world.verifier, data, world.snapshot, status, NOW)
    assert (list(result.checks.items()), tuple((type(r), str(r)) for r in result.reasons), result.verdict,
            result.notes) == (results, reasons, verdict, notes)
    want_verdict, want_reason = expected(case, REGIONS[region])
    assert result.verdict.value == want_verdict
    assert (want_reason in result.reason_codes) if want_reason else result.reason_codes == ()


class _Fails(Check):
    """A non-gate check that always rejects (a second problem after another)."""

    def __init__(self, name: str, gate: bool = False) -> None:
        self.name, self.gate = name, gate

    def run(self, ctx) -> str:
        raise LicenceRejected(errors.FIELD_INVALID, f"{self.name} says no")


class _Crashes(Check):
    """A check with a bug: it raises something that is not a GatewayError."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, ctx) -> str:
        raise KeyError("bug")


class _Skips(Check):
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, ctx) -> str:
        return SKIP


@pytest.mark.parametrize("checks", [
    DEFAULT_CHECKS + (_Fails("late_non_gate"),),
    DEFAULT_CHECKS[:7] + (_Fails("middle_non_gate"),) + DEFAULT_CHECKS[7:] + (_Fails("another_non_gate"),),
    DEFAULT_CHECKS[:7] + (_Crashes("bug_after_normalise"),) + DEFAULT_CHECKS[7:],
    (_Crashes("bug_first"),) + DEFAULT_CHECKS,
    DEFAULT_CHECKS[:3] + (_Fails("gate_before_signature", gate=True),) + DEFAULT_CHECKS[3:],
    DEFAULT_CHECKS[:4] + (_Skips("signature"),) + DEFAULT_CHECKS[5:],  # never valid without a signature
    DEFAULT_CHECKS + (_Fails("status"),),  # a name twice: the later record wins, the first position stays
], ids=["late-non-gate", "two-non-gates", "crash-after-normalise", "crash-first", "gate-before-signature",
        "signature-skipped", "duplicate-name"])
@pytest.mark.parametrize("case", ["valid", "expired", "tampered", "malformed"])
def test_failures_anywhere_in_the_run_give_the_round3_loops_results(world, issued, status, checks, case) -> None:
    verifier = Verifier(world.verifier.policy, world.specs, world.verifier.type_names, checks=checks)
    data = issued[("341100", case)]
    result = verifier.verify(data, world.snapshot, status, NOW)
    assert (list(result.checks.items()), tuple((type(r), str(r)) for r in result.reasons), result.verdict,
            result.notes) == _round3_loop(verifier, data, world.snapshot, status, NOW)


def test_replacing_the_checks_replans_the_tight_loop(world, issued, status) -> None:
    verifier = Verifier(world.verifier.policy, world.specs, world.verifier.type_names)
    data = issued[("341100", "valid")]
    assert verifier.verify(data, world.snapshot, status, NOW).verdict is Verdict.VALID
    verifier.checks = DEFAULT_CHECKS + (_Fails("added_later"),)
    result = verifier.verify(data, world.snapshot, status, NOW)
    assert result.verdict is Verdict.INVALID and list(result.checks)[-1] == "added_later"
    assert result.checks["added_later"] == FAIL and result.reason_codes == ("FIELD_INVALID",)


def _assert_verified_alike(world, data: bytes, status, monkeypatch, reference_paths) -> None:
    """The same facts with the fast paths as with ``reference_paths`` patched in."""
    fast = world.verifier.verify(data, world.snapshot, status, NOW)
    with monkeypatch.context() as m:
        reference_paths(m)
        reference = world.verifier.verify(data, world.snapshot, status, NOW)
    assert _facts(fast) == _facts(reference)


# --- sm2-xml: fast paths == the ElementTree reader ------------------------------------------
@pytest.mark.parametrize("case", list(EXPECTED))
@pytest.mark.parametrize("region", ["320100", "320200"])
def test_sm2_xml_simulator_cases_verify_alike_with_the_round4_paths_off(world, issued, status, region, case,
                                                                       monkeypatch) -> None:
    _assert_verified_alike(world, issued[(region, case)], status, monkeypatch, _reference_paths)


def _open(data: bytes) -> tuple:
    try:
        env = SM2_XML.open(data, BIG)
    except GatewayError as exc:
        return ("error", exc.code, str(exc))
    return (dict(env.raw), env.signing_time, env.signed_bytes, env.signature, env.key_ref, env.family,
            env.algorithm, dict(env.extra))


def _open_both(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[tuple, tuple]:
    fast = _open(data)
    with monkeypatch.context() as m:
        _reference_paths(m)
        reference = _open(data)
    return fast, reference


def _variant(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new, 1)


@pytest.mark.parametrize("attack", [
    "duplicate_serial_attribute", "unknown_attribute", "wrong_algorithm", "attributes_reordered",
    "single_quoted_attribute", "serial_not_hex", "no_signer_named",
])
def test_hostile_signature_attributes_open_as_the_reference_does(issued, attack, monkeypatch) -> None:
    data = issued[("320100", "valid")]
    head = data[data.index(b"<SignatureValue"):data.index(b">", data.index(b"<SignatureValue")) + 1]
    serial = head.split(b'serial="')[1].split(b'"')[0]
    hostile = {
        "duplicate_serial_attribute": head.replace(b">", b' serial="' + serial + b'">'),
        "unknown_attribute": head.replace(b">", b' note="x">'),
        "wrong_algorithm": head.replace(b'alg="SM2-with-SM3"', b'alg="RS256"'),
        "attributes_reordered": b'<SignatureValue serial="' + serial + b'" encoding="raw" region="320100" '
                                b'alg="SM2-with-SM3">',
        "single_quoted_attribute": head.replace(b'alg="SM2-with-SM3"', b"alg='SM2-with-SM3'"),
        "serial_not_hex": head.replace(b'serial="' + serial, b'serial="zz' + serial),
        "no_signer_named": head.replace(b' serial="' + serial + b'"', b""),
    }[attack]
    variant = _variant(data, head, hostile)
    for _ in range(2):  # the second time through the cache (if the first was accepted)
        fast, reference = _open_both(variant, monkeypatch)
        assert fast == reference
    if fast[0] == "error":  # refused attribute texts are never cached
        assert hostile[len(b"<SignatureValue"):-1].decode("gb18030") not in sm2_xml._KEY_REFS
    assert _open_both(data, monkeypatch)[0][4] == _open(data)[4]  # the genuine licence still opens alike


@pytest.mark.parametrize("attack", [
    "bom_before_prolog", "single_quoted_prolog", "gbk_declared", "doctype_after_prolog", "entity_declaration",
    "invalid_gb18030_bytes", "no_prolog_utf8", "prolog_with_standalone", "lowercase_encoding_name",
    "comment_in_data", "cdata_in_value", "character_reference_in_value", "duplicate_field",
    "nested_two_levels", "attribute_on_field", "namespace_prefix_on_root", "text_between_fields",
])
def test_odd_documents_open_as_the_reference_does(issued, attack, monkeypatch) -> None:
    data = issued[("320100", "valid")]
    prolog = b'<?xml version="1.0" encoding="GB18030"?>'
    body = data[len(prolog):]
    first_field = data[data.index(b"<Data>") + 6:data.index(b"</zzbs>") + 7]
    variant = {
        "bom_before_prolog": b"\xef\xbb\xbf" + data,
        "single_quoted_prolog": b"<?xml version='1.0' encoding='GB18030'?>" + body,
        "gbk_declared": b'<?xml version="1.0" encoding="GBK"?>' + body,
        "doctype_after_prolog": prolog + b"<!DOCTYPE x [<!ENTITY e 'x'>]>" + body,
        "entity_declaration": _variant(data, b"<Data>", b"<Data><!ENTITY e 'x'>"),
        "invalid_gb18030_bytes": _variant(data, b"</zzmc>", b"\x81\x20</zzmc>"),
        "no_prolog_utf8": body.decode("gb18030").lstrip().encode("utf-8"),
        "prolog_with_standalone": b'<?xml version="1.0" encoding="GB18030" standalone="yes"?>' + body,
        "lowercase_encoding_name": b'<?xml version="1.0" encoding="gb18030"?>' + body,
        "comment_in_data": _variant(data, b"<Data>", b"<Data><!-- c -->"),
        "cdata_in_value": _variant(data, b"<zzbh>", b"<zzbh><![CDATA[]]>"),
        "character_reference_in_value": _variant(data, b"<zzbh>3", b"<zzbh>&#51;"),
        "duplicate_field": _variant(data, b"<Data>", b"<Data>" + first_field),
        "nested_two_levels": _variant(data, b"<birth_date>", b"<x><birth_date>").replace(b"</birth_date>",
                                                                                    b"</birth_date></x>", 1),
        "attribute_on_field": _variant(data, b"<zzbh>", b'<zzbh a="1">'),
        "namespace_prefix_on_root": data.replace(b"<ElectronicLicence xmlns=", b"<e:ElectronicLicence xmlns:e=", 1)
        .replace(b"</ElectronicLicence>", b"</e:ElectronicLicence>"),
        "text_between_fields": _variant(data, b"</zzbs>", b"</zzbs>stray"),
    }[attack]
    fast, reference = _open_both(variant, monkeypatch)
    assert fast == reference


@pytest.mark.parametrize("attack", ["bom", "single_quotes", "gbk", "doctype", "bad_bytes", "standalone",
                                    "lowercase_name", "utf8_declared_gb_bytes"])
def test_plain_text_answers_as_decode_xml_or_declines(attack) -> None:
    body = "<a>证照</a>"
    data = {
        "bom": b"\xef\xbb\xbf" + '<?xml version="1.0" encoding="UTF-8"?>'.encode() + body.encode(),
        "single_quotes": b"<?xml version='1.0' encoding='GB18030'?>" + body.encode("gb18030"),
        "gbk": b'<?xml version="1.0" encoding="GBK"?>' + body.encode("gb18030"),
        "doctype": b'<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE a>' + body.encode(),
        "bad_bytes": b'<?xml version="1.0" encoding="GB18030"?>' + b"<a>\x81\x20</a>",
        "standalone": b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + body.encode(),
        "lowercase_name": b'<?xml version="1.0" encoding="gb18030"?>' + body.encode("gb18030"),
        "utf8_declared_gb_bytes": b'<?xml version="1.0" encoding="UTF-8"?>' + body.encode("gb18030"),
    }[attack]
    fast = plain_text(data)
    try:
        reference: Any = decode_xml(data)
    except GatewayError:
        reference = None
    assert fast is None or fast == reference
    if reference is None:
        assert fast is None


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_plain_text_equals_decode_xml_for_the_plain_prologs(encoding) -> None:
    data = sm2_xml.prolog(encoding).encode("ascii") + "<a>证照 𠀀</a>".encode(encoding)
    assert plain_text(data) == decode_xml(data) == "\n<a>证照 𠀀</a>"


# --- sm2-json / sm2-xml: the signing time popped in place -----------------------------------
_ZH = "签名时间"


def _round3_split(data: dict[str, Any]) -> tuple[dict[str, Any], dt.datetime]:
    raw = dict(data)
    found = [f for f in sm2_json._TIME_FIELDS if f in raw]
    if len(found) != 1:
        raise LicenceRejected(errors.MALFORMED, "the signed data must carry exactly one signing time "
                                                f"({' or '.join(sorted(sm2_json._TIME_FIELDS))})")
    return raw, parse_signing_time(raw.pop(found[0]), found[0])


@pytest.mark.parametrize("fields", [
    {DEFAULT_SIGNING_TIME_FIELD: "2026-11-27T12:00:00+08:00", "a": "1"},
    {_ZH: "2026-11-27T04:00:00+00:00", "a": "1"},
    {DEFAULT_SIGNING_TIME_FIELD: "2026-11-27T12:00:00+08:00", _ZH: "2026-11-27T12:00:00+08:00"},
    {"a": "1"},
    {DEFAULT_SIGNING_TIME_FIELD: "2026-11-27T12:00:00"},  # no offset
    {DEFAULT_SIGNING_TIME_FIELD: 1795752000},  # not text
    {_ZH: "yesterday"},
], ids=["pinyin", "chinese", "both_names_smuggled", "neither", "no_offset", "number", "not_iso"])
def test_popping_the_signing_time_equals_the_round3_split(fields) -> None:
    def outcome(fn, arg):
        try:
            return fn(arg)
        except GatewayError as exc:
            return ("error", exc.code, str(exc))

    want = outcome(_round3_split, fields)
    assert outcome(split_signing_time, fields) == want
    owned = dict(fields)
    popped = outcome(pop_signing_time, owned)
    if want[0] == "error":
        assert popped == want
    else:
        assert (owned, popped) == want


# --- jws: r||s -> DER ---------------------------------------------------------------------
def test_es256_der_equals_the_library_encoding_for_every_leading_byte_shape() -> None:
    sigs = [os.urandom(64) for _ in range(2000)]
    for first in (0x00, 0x01, 0x7F, 0x80, 0xFF):
        for second in (0x00, 0x01, 0x7F, 0x80, 0xFF):
            for zeros in (0, 1, 31):
                sig = bytearray(os.urandom(64))
                sig[0], sig[32] = first, second
                sig[1:1 + zeros] = bytes(zeros)
                sigs.append(bytes(sig))
    sigs += [bytes(64), b"\xff" * 64]
    for sig in sigs:
        assert _es256_der(sig) == encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))


# --- OFD: the Provider attributes by their text ---------------------------------------------
def _ofd_reference_paths(m: pytest.MonkeyPatch) -> None:
    from adapters.ofd import xmlparts

    m.setattr(xmlparts, "_provider_attrs", xmlparts._plain_attrs)


@pytest.mark.parametrize("case", list(EXPECTED))
@pytest.mark.parametrize("region", ["310000", "500102"])
def test_ofd_simulator_cases_verify_alike_without_the_provider_cache(world, issued, status, region, case,
                                                                    monkeypatch) -> None:
    _assert_verified_alike(world, issued[(region, case)], status, monkeypatch, _ofd_reference_paths)


@pytest.mark.parametrize("name", ["allprotected.ofd", "v4signed.ofd", "DigitalSign.ofd",
                                  "DigitalSign.ofd+SignerCert.der"])
def test_real_vectors_open_and_verify_alike_without_the_provider_cache(name, monkeypatch) -> None:
    from tests.test_ofd_round3_fast_paths_equal_reference import _open_and_verify, _vector_files

    data = _vector_files()[name]
    fast = _open_and_verify(data)
    with monkeypatch.context() as m:
        _ofd_reference_paths(m)
        reference = _open_and_verify(data)
    assert fast == reference


@pytest.mark.parametrize("attack", ["duplicate_provider_attribute", "namespace_declared_on_provider",
                                    "xml_reserved_attribute_name", "company_renamed"])
def test_hostile_provider_attributes_read_as_the_reference_does(issued, attack, monkeypatch) -> None:
    from adapters.ofd import xmlparts

    path = "Doc_0/Signs/Sign_0/Signature.xml"
    from adapters.ofd.container import read_ofd_package

    sig_xml = read_ofd_package(issued[("500102", "valid")]).files[path]
    provider = b'ProviderName="elicence-gateway-simulator"'
    variant = sig_xml.replace(provider, {
        "duplicate_provider_attribute": provider + b" " + provider,
        "namespace_declared_on_provider": provider + b' xmlns:x="urn:x"',
        "xml_reserved_attribute_name": provider + b' xml:lang="zh"',
        "company_renamed": provider.replace(b"simulator", b"simulator2"),
    }[attack], 1)
    assert variant != sig_xml

    def outcome() -> tuple:
        try:
            return ("ok", repr(xmlparts.parse_signature_xml(variant, path)))
        except GatewayError as exc:
            return ("error", exc.code, str(exc))

    first, second = outcome(), outcome()  # the second read through the cache
    with monkeypatch.context() as m:
        _ofd_reference_paths(m)
        reference = outcome()
    assert first == second == reference
    if attack == "duplicate_provider_attribute":  # not well-formed XML: the reference reader refuses it
        assert first[:2] == ("error", "MALFORMED")
    else:
        tree = xmlparts._parse_signature_xml_tree(variant, path)
        assert first == ("ok", repr(tree))


def test_each_signature_xml_owns_its_provider_dictionary(issued) -> None:
    from adapters.ofd import xmlparts
    from adapters.ofd.container import read_ofd_package

    path = "Doc_0/Signs/Sign_0/Signature.xml"
    sig_xml = read_ofd_package(issued[("500102", "valid")]).files[path]
    first = xmlparts.parse_signature_xml(sig_xml, path)
    first.provider["Company"] = "changed by a caller"
    second = xmlparts.parse_signature_xml(sig_xml, path)
    assert second.provider["Company"] == "TEST" and second.provider is not first.provider
