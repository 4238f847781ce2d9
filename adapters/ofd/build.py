"""Build a sealed OFD licence file (for the issuer simulator and tests).

The layout mirrors the ofdrw vector ``allprotected.ofd``::

    OFD.xml                              DocBody -> DocRoot, Signatures
    Doc_0/Document.xml                   pages (generated unless given)
    Doc_0/PublicRes.xml
    Doc_0/Pages/Page_N/Content.xml       caller's pages (a blank one if none)
    Doc_0/Attachs/Attachments.xml        lists caller files under Doc_0/Attachs/
    Doc_0/Signs/Signatures.xml           one Signature, Type="Seal"
    Doc_0/Signs/Sign_0/Signature.xml     SignedInfo: SM2-with-SM3, Seal/BaseLoc, References
                                         (SM3 of every file above, Signatures.xml, Seal.esl)
    Doc_0/Signs/Sign_0/Seal.esl          GB/T 38540 SESeal built here
    Doc_0/Signs/Sign_0/SignedValue.dat   SES_Signature v4

Keys given to it in this repository are TEST keys.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import datetime
from xml.sax.saxutils import escape, quoteattr

from adapters.ofd.container import check_entry_name, write_ofd_package
from adapters.ofd.errors import OfdError
from adapters.ofd.ses import build_seal, build_ses_signature
from adapters.ofd.xmlparts import OFD_LOCAL_TZ, OFD_NS
from gateway.crypto.sm2 import OID_SM2_WITH_SM3, OID_SM3, SM2PrivateKey, sm3
from gateway.crypto.sm2cert import load_sm2_certificate

PROVIDER_NAME = "elicence-gateway-simulator"
SIGNS_DIR = "Doc_0/Signs"
SIGN_DIR = "Doc_0/Signs/Sign_0"
_PAGE_RE = re.compile(r"^Doc_0/Pages/Page_(\d+)/Content\.xml\Z")
_XML_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
_BLANK_PAGE = (_XML_HEAD + f'<ofd:Page xmlns:ofd="{OFD_NS}"><ofd:Content><ofd:Layer ID="3"/></ofd:Content>'
               "</ofd:Page>").encode()
_PUBLIC_RES = (_XML_HEAD + f'<ofd:Res xmlns:ofd="{OFD_NS}" BaseLoc="Res"/>').encode()


def _seal_picture(name: str) -> bytes:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="40mm" height="40mm" viewBox="0 0 40 40">'
            f'<circle cx="20" cy="20" r="18" fill="none" stroke="red" stroke-width="1.2"/>'
            f'<text x="20" y="22" font-size="3" text-anchor="middle" fill="red">{escape(name)}</text></svg>').encode()


def _document_xml(pages: list[str]) -> bytes:
    page_els = "".join(f'<ofd:Page ID="{10 + i}" BaseLoc={quoteattr(p.removeprefix("Doc_0/"))}/>'
                       for i, p in enumerate(pages))
    return (_XML_HEAD + f'<ofd:Document xmlns:ofd="{OFD_NS}"><ofd:CommonData><ofd:PublicRes>PublicRes.xml'
            "</ofd:PublicRes><ofd:PageArea><ofd:PhysicalBox>0 0 210 297</ofd:PhysicalBox></ofd:PageArea>"
            f"<ofd:MaxUnitID>{10 + len(pages)}</ofd:MaxUnitID></ofd:CommonData><ofd:Pages>{page_els}</ofd:Pages>"
            "<ofd:Attachments>Attachs/Attachments.xml</ofd:Attachments></ofd:Document>").encode()


def _attachments_xml(names: list[str]) -> bytes:
    items = "".join(
        f'<ofd:Attachment ID="a{i}" Name={quoteattr(n.rsplit("/", 1)[-1])} Format="xml">'
        f"<ofd:FileLoc>{escape(n.removeprefix('Doc_0/Attachs/'))}</ofd:FileLoc></ofd:Attachment>"
        for i, n in enumerate(names))
    return (_XML_HEAD + f'<ofd:Attachments xmlns:ofd="{OFD_NS}">{items}</ofd:Attachments>').encode()


def _ofd_xml(doc_id: str, created: datetime) -> bytes:
    return (_XML_HEAD + f'<ofd:OFD xmlns:ofd="{OFD_NS}" Version="1.1" DocType="OFD"><ofd:DocBody><ofd:DocInfo>'
            f"<ofd:DocID>{doc_id}</ofd:DocID><ofd:CreationDate>{created.astimezone(OFD_LOCAL_TZ).date()}"
            f"</ofd:CreationDate><ofd:Creator>{PROVIDER_NAME}</ofd:Creator></ofd:DocInfo>"
            "<ofd:DocRoot>Doc_0/Document.xml</ofd:DocRoot>"
            f"<ofd:Signatures>/{SIGNS_DIR}/Signatures.xml</ofd:Signatures></ofd:DocBody></ofd:OFD>").encode()


def _signatures_xml() -> bytes:
    return (_XML_HEAD + f'<ofd:Signatures xmlns:ofd="{OFD_NS}"><ofd:MaxSignId>2</ofd:MaxSignId>'
            f'<ofd:Signature ID="1" Type="Seal" BaseLoc="/{SIGN_DIR}/Signature.xml"/></ofd:Signatures>').encode()


def _signature_xml(files: Mapping[str, bytes], signing_time: datetime, first_page_id: int) -> bytes:
    refs = "".join(
        f'<ofd:Reference FileRef={quoteattr("/" + path)}><ofd:CheckValue>'
        f"{base64.b64encode(sm3(content)).decode()}</ofd:CheckValue></ofd:Reference>"
        for path, content in files.items())
    when = signing_time.astimezone(OFD_LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S")
    return (_XML_HEAD + f'<ofd:Signature xmlns:ofd="{OFD_NS}">'
            f"<ofd:SignedValue>/{SIGN_DIR}/SignedValue.dat</ofd:SignedValue><ofd:SignedInfo>"
            f'<ofd:Provider ProviderName="{PROVIDER_NAME}" Company="TEST" Version="1.0"/>'
            f"<ofd:SignatureMethod>{OID_SM2_WITH_SM3}</ofd:SignatureMethod>"
            f"<ofd:SignatureDateTime>{when}</ofd:SignatureDateTime>"
            f"<ofd:Seal><ofd:BaseLoc>/{SIGN_DIR}/Seal.esl</ofd:BaseLoc></ofd:Seal>"
            f'<ofd:StampAnnot ID="2" Boundary="150 240 40 40" PageRef="{first_page_id}"/>'
            f'<ofd:References CheckMethod="{OID_SM3}">{refs}</ofd:References>'
            "</ofd:SignedInfo></ofd:Signature>").encode()


def build_sealed_ofd(
    files: Mapping[str, bytes],
    signer_key: SM2PrivateKey,
    signer_cert_der: bytes,
    seal_name: str,
    signing_time: datetime,
    *,
    maker_key: SM2PrivateKey | None = None,
    maker_cert_der: bytes | None = None,
    seal_valid_start: datetime | None = None,
    seal_valid_end: datetime | None = None,
    es_id: str | None = None,
    seal_der: bytes | None = None,
) -> bytes:
    """A sealed OFD package (bytes) protecting every file in ``files``.

    ``files`` maps package paths (no leading slash, e.g. ``Doc_0/Attachs/licence.xml``,
    ``Doc_0/Pages/Page_0/Content.xml``) to bytes; OFD.xml and Doc_0/Signs/ are written
    here. The seal maker defaults to the signer; the seal's validity defaults to the
    signer certificate's. ``seal_der``: an existing seal (:func:`adapters.ofd.ses.build_seal`)
    used as it is -- as an issuer uses its one seal on every document -- instead of a new one made
    for this document (the maker and validity arguments are then unused).
    """
    if signing_time.tzinfo is None:
        raise ValueError("signing_time must be timezone-aware")
    for name in files:
        try:
            check_entry_name(name)
        except OfdError as exc:
            raise ValueError(exc.detail) from exc
        if name == "OFD.xml" or name.startswith(SIGNS_DIR + "/") or name.endswith("/"):
            raise ValueError(f"{name!r} is written by the builder, not the caller")
    signer_cert = load_sm2_certificate(signer_cert_der)
    if signer_cert.public_key != signer_key.public_key():
        raise ValueError("signer_cert_der does not carry signer_key's public key")
    if (maker_key is None) != (maker_cert_der is None):
        raise ValueError("give both maker_key and maker_cert_der, or neither")

    content: dict[str, bytes] = dict(files)
    pages = sorted((p for p in content if _PAGE_RE.match(p)), key=lambda p: int(_PAGE_RE.match(p)[1]))  # type: ignore[index]
    if not pages:
        pages = ["Doc_0/Pages/Page_0/Content.xml"]
        content[pages[0]] = _BLANK_PAGE
    attachments = sorted(p for p in content if p.startswith("Doc_0/Attachs/") and p != "Doc_0/Attachs/Attachments.xml")
    content.setdefault("Doc_0/Attachs/Attachments.xml", _attachments_xml(attachments))
    content.setdefault("Doc_0/Document.xml", _document_xml(pages))
    content.setdefault("Doc_0/PublicRes.xml", _PUBLIC_RES)
    doc_id = sm3(b"".join(sm3(k.encode()) + sm3(v) for k, v in sorted(content.items()))).hex()[:32]
    content["OFD.xml"] = _ofd_xml(doc_id, signing_time)
    content[f"{SIGNS_DIR}/Signatures.xml"] = _signatures_xml()

    seal_der = seal_der or build_seal(
        name=seal_name,
        es_id=es_id or doc_id,
        signer_cert_der=signer_cert.der,
        maker_key=maker_key or signer_key,
        maker_cert_der=maker_cert_der or signer_cert.der,
        created=signing_time,
        valid_start=seal_valid_start or signer_cert.not_before,
        valid_end=seal_valid_end or signer_cert.not_after,
        picture=_seal_picture(seal_name),
    )
    content[f"{SIGN_DIR}/Seal.esl"] = seal_der
    ordered = {k: content[k] for k in sorted(content, key=lambda k: (k == "OFD.xml", k))}
    signature_xml = _signature_xml(ordered, signing_time, first_page_id=10)
    signed_value = build_ses_signature(
        seal_der=seal_der,
        signing_time=signing_time,
        data_hash=sm3(signature_xml),
        property_info=f"/{SIGN_DIR}/Signature.xml",
        signer_key=signer_key,
        signer_cert_der=signer_cert.der,
    )
    package = dict(ordered)
    package[f"{SIGN_DIR}/Signature.xml"] = signature_xml
    package[f"{SIGN_DIR}/SignedValue.dat"] = signed_value
    return write_ofd_package(package, signing_time.astimezone(OFD_LOCAL_TZ))


__all__ = ["build_sealed_ofd"]
