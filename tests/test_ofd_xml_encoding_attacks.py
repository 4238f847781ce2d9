"""An OFD package whose XML parts declare an encoding the XML parser cannot read ("TF-8", a codec
that is not a text encoding, a multi-byte one) is a malformed licence: verdict invalid with
MALFORMED, never indeterminate with INTERNAL (as if this gateway had failed), which is what
ElementTree's LookupError / ValueError made of it before session 16."""

from __future__ import annotations

import datetime as dt

import pytest

from adapters.ofd.container import read_ofd_package, write_ofd_package
from tests.conftest import NOW

#: each an attack on the XML reader's codec lookup
UNREADABLE_ENCODINGS = ("TF-8", "rot13", "UTF-32", "idna", "x-user-defined", "undefined")


def _with_declared_encoding(xml: bytes, encoding: str) -> bytes:
    """``xml`` declaring ``encoding`` (its own declaration replaced, or one put in front)."""
    if xml.startswith(b"<?xml"):
        xml = xml[xml.index(b"?>") + 2:]
    return f'<?xml version="1.0" encoding="{encoding}"?>'.encode("ascii") + xml


@pytest.mark.parametrize("encoding", UNREADABLE_ENCODINGS)
@pytest.mark.parametrize("region", ["310000", "500102"])   # Type=Seal and Type=Sign
def test_unreadable_encoding_in_any_xml_part_is_malformed_not_an_internal_error(world, region, encoding) -> None:
    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    package = read_ofd_package(world.simulator.issue(region, None, "valid", NOW).data)
    parts = [name for name in package.files if name.endswith(".xml")]
    assert {"OFD.xml", "Doc_0/Signs/Signatures.xml", "Doc_0/Signs/Sign_0/Signature.xml"} <= set(parts)
    for part in parts:
        files = dict(package.files)
        files[part] = _with_declared_encoding(files[part], encoding)
        result = world.verifier.verify(write_ofd_package(files, NOW), world.snapshot, status, NOW)
        assert result.verdict.value == "invalid", (part, result.reason_codes)
        assert "INTERNAL" not in result.reason_codes, part


async def test_over_http_an_unreadable_encoding_is_an_invalid_licence_answer(api, world) -> None:
    import base64

    package = read_ofd_package(world.simulator.issue("310000", None, "valid", NOW).data)
    files = dict(package.files)
    files["OFD.xml"] = _with_declared_encoding(files["OFD.xml"], "TF-8")
    body = {"licence": base64.b64encode(write_ofd_package(files, NOW)).decode("ascii"), "encoding": "base64"}
    resp = await api.post("/v1/licences/verify", json=body)
    assert resp.status == 200
    answer = await resp.json()
    assert answer["verdict"] == "invalid"
    assert [r["code"] for r in answer["reasons"]] == ["MALFORMED"]
    assert "encoding" in answer["reasons"][0]["detail"]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-32"])
@pytest.mark.parametrize("region", ["310000", "500102"])   # Type=Seal and Type=Sign
def test_xml_part_in_utf16_or_utf32_cannot_smuggle_a_dtd_past_the_dtd_check(world, region, codec) -> None:
    # the DTD check searched the bytes for ASCII "<!DOCTYPE" / "<!ENTITY"; expat reads UTF-16 and UTF-32 (by
    # their BOM or their NULs), so a billion-laughs internal subset went through and cost ~0.2 s of CPU per
    # licence before expat's amplification limit stopped it. Now refused before parsing: MALFORMED
    import time

    status = world.simulator.status_snapshot(NOW, dt.timedelta(hours=1))
    package = read_ofd_package(world.simulator.issue(region, None, "valid", NOW).data)
    laughs = '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">' + "".join(
        f'<!ENTITY {chr(98 + i)} "' + f"&{chr(97 + i)};" * 10 + '">' for i in range(8)) + "]>"
    for part in ("OFD.xml", "Doc_0/Signs/Signatures.xml", "Doc_0/Signs/Sign_0/Signature.xml"):
        files = dict(package.files)
        body = files[part][files[part].index(b"?>") + 2:].decode("utf-8")
        files[part] = (laughs + body.replace(">", ">&i;", 2)).encode(codec)
        data = write_ofd_package(files, NOW)
        started = time.process_time()
        result = world.verifier.verify(data, world.snapshot, status, NOW)
        assert result.verdict.value == "invalid" and result.reason_codes == ("MALFORMED",), (part, result.reason_codes)
        assert "ASCII-compatible" in result.reasons[0].detail
        assert time.process_time() - started < 0.05, part  # refused before expat expands anything
