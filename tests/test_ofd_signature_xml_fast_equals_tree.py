"""The plain Signature.xml reader (a regular expression) equals the ElementTree reader for every
document it accepts, and leaves anything else -- including each hostile shape -- to that reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.ofd.container import read_ofd_package
from adapters.ofd.errors import OfdError
from adapters.ofd.xmlparts import _parse_signature_xml_plain, _parse_signature_xml_tree, parse_signature_xml
from tests.conftest import NOW

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "ofd"
if not VECTORS.is_dir():
    VECTORS = Path("/work/shared/vectors/ofd")
PATH = "Doc_0/Signs/Sign_0/Signature.xml"


def _vector(name: str) -> bytes:
    return read_ofd_package((VECTORS / name).read_bytes()).get(PATH)


@pytest.fixture(scope="module")
def simulated(world) -> dict[str, bytes]:
    """Signature.xml of a simulator licence: a seal (310000) and a plain signature (500102)."""
    out = {}
    for region in ("310000", "500102"):
        issued = world.simulator.issue(region, world.catalogue.types[0].key, "valid", NOW)
        out[region] = read_ofd_package(issued.data).get(PATH)
    return out


@pytest.mark.parametrize("region", ["310000", "500102"])
def test_simulator_signature_xml_read_by_the_fast_path_equals_the_tree(simulated, region) -> None:
    data = simulated[region]
    fast = _parse_signature_xml_plain(data, PATH)
    assert fast is not None
    assert fast == _parse_signature_xml_tree(data, PATH)
    assert len(fast.references) >= 8 and all(r.check_value is not None for r in fast.references)


@pytest.mark.parametrize("name", ["allprotected.ofd", "DigitalSign.ofd"])
def test_ofdrw_signature_xml_read_by_the_fast_path_equals_the_tree(name) -> None:
    data = _vector(name)
    fast = _parse_signature_xml_plain(data, PATH)
    assert fast is not None and fast == _parse_signature_xml_tree(data, PATH)


def test_vendor_signature_xml_in_another_element_order_goes_to_the_tree() -> None:
    data = _vector("v4signed.ofd")
    assert _parse_signature_xml_plain(data, PATH) is None
    assert parse_signature_xml(data, PATH) == _parse_signature_xml_tree(data, PATH)


def test_duplicate_attribute_in_stamp_annotation_is_refused_not_read_fast(simulated) -> None:
    data = simulated["310000"].replace(b'StampAnnot ID="2"', b'StampAnnot ID="2" ID="3"')
    assert _parse_signature_xml_plain(data, PATH) is None
    with pytest.raises(OfdError):
        parse_signature_xml(data, PATH)


def test_entity_reference_in_a_location_goes_to_the_tree_reader(simulated) -> None:
    data = simulated["310000"].replace(b"Sign_0/SignedValue.dat<", b"Sign_0/Signed&#86;alue.dat<")
    assert _parse_signature_xml_plain(data, PATH) is None
    assert parse_signature_xml(data, PATH).signed_value_path == "Doc_0/Signs/Sign_0/SignedValue.dat"


def test_control_character_in_text_is_refused_not_read_fast(simulated) -> None:
    data = simulated["310000"].replace(b"</ofd:SignatureMethod>", b"\x01</ofd:SignatureMethod>")
    assert _parse_signature_xml_plain(data, PATH) is None
    with pytest.raises(OfdError):
        parse_signature_xml(data, PATH)


def test_reference_escaping_the_package_is_refused_by_the_tree_reader(simulated) -> None:
    data = simulated["310000"].replace(b'FileRef="/OFD.xml"', b'FileRef="../../etc/passwd"')
    assert _parse_signature_xml_plain(data, PATH) is None
    with pytest.raises(OfdError):
        parse_signature_xml(data, PATH)


def test_namespace_declaration_on_provider_goes_to_the_tree_reader(simulated) -> None:
    data = simulated["310000"].replace(b"<ofd:Provider ", b'<ofd:Provider xmlns="urn:x" ')
    assert _parse_signature_xml_plain(data, PATH) is None
    assert parse_signature_xml(data, PATH) == _parse_signature_xml_tree(data, PATH)


def test_bad_base64_check_value_reads_as_none_on_both_paths(simulated) -> None:
    data = simulated["310000"].replace(b"<ofd:CheckValue>", b"<ofd:CheckValue>*", 1)
    fast = _parse_signature_xml_plain(data, PATH)
    assert fast is not None and fast == _parse_signature_xml_tree(data, PATH)
    assert fast.references[0].check_value is None


def _first_check_value(data: bytes) -> bytes:
    start = data.index(b"<ofd:CheckValue>") + len(b"<ofd:CheckValue>")
    return data[start:data.index(b"<", start)]


@pytest.mark.parametrize("padding_attack", ["one_pad_too_many", "lone_pad", "pad_in_the_middle", "data_after_pad",
                                            "two_pads_too_many"])
@pytest.mark.parametrize("region", ["310000", "500102"])
def test_badly_padded_check_value_has_no_value_on_the_fast_path_as_in_the_tree(simulated, region,
                                                                               padding_attack) -> None:
    """A CheckValue padded wrongly decodes to nothing in the reference reader (``b64decode`` with
    ``validate=True``: strict mode on Python 3.11); the fast path must not read a digest out of it
    (it did before session 16, with ``a2b_base64`` in its lenient mode)."""
    data = simulated[region]
    value = _first_check_value(data)            # an SM3 digest: 44 characters, ending in one "="
    assert value.endswith(b"=") and not value.endswith(b"==")
    bad = {"one_pad_too_many": value + b"=", "lone_pad": b"=", "pad_in_the_middle": value[:20] + b"=" + value[20:],
           "data_after_pad": value + b"AA", "two_pads_too_many": value + b"=="}[padding_attack]
    tampered = data.replace(b">" + value + b"<", b">" + bad + b"<", 1)
    fast = _parse_signature_xml_plain(tampered, PATH)
    tree = _parse_signature_xml_tree(tampered, PATH)
    assert tree.references[0].check_value is None           # the reference reader: no value
    assert fast is None or fast == tree                      # the fast path: the same, or the tree decides
    assert parse_signature_xml(tampered, PATH) == tree
    assert tree.references[1:] == _parse_signature_xml_tree(data, PATH).references[1:]
