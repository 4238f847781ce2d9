"""Item checks (``POST /v1/items/{code}/check``): does this applicant's set of verified
licences satisfy item X? Pure code: verification results + applicant + item -> outcome.

Rules (the catalogue supplies the data, :mod:`gateway.catalogue`):

* A licence is **matched** to a requirement by its licence type: the licence's 21-character
  ``type_code`` -> the catalogue type key, which must be in the requirement's ``accept``
  list (alternatives: an ID card *or* a social security card).
* Only a licence whose verdict is ``valid`` can satisfy anything. An invalid or
  indeterminate licence of an accepted type is reported under the requirement with its
  verification reasons.
* Only a licence of a region the item is handled across (``Item.regions``, or every region
  when ``all_regions``) can satisfy anything or make the applicant a representative (below):
  a 南京 licence does not complete a G60-only item. It is reported with ``UNKNOWN_REGION``
  (发证地区不在互认范围内), and no retry of its verification can change that.
* A valid licence is **bound** to the applicant:

  - ``binding = "holder"``: the licence's holder code *and* code type equal the
    applicant's, or the holder is an organisation the applicant represents (below);
  - ``binding = "role:<role>"``: the applicant's code appears in that role's
    ``code_fields`` of the licence's surface and the applicant's code type is one the role
    admits (e.g. the applicant is the 法定代表人 named on a 营业执照).

  **Representation.** When a valid licence names the applicant in a *representative* role
  (:data:`REPRESENTATIVE_ROLES`: the 法定代表人/负责人) that one of the item's own ``role:``
  requirements accepts, and that licence is held by an organisation (code type 001/099),
  the applicant acts for that organisation in this check: licences
  held by the organisation then bind under ``"holder"`` too. This is how an item that
  asks for "the company's 营业执照" *and* "the applicant is its legal representative" is
  completed by the legal representative. It never extends to people (a parent named on a
  birth certificate does not thereby hold the child's licences), nor to other roles (a
  co-owner named on a company's 不动产权证书 does not act for the company).
  A valid licence of an accepted type that binds neither way is reported with
  ``HOLDER_MISMATCH``.
* ``complete`` is true when every mandatory requirement is satisfied. ``outcome`` is
  ``complete``, ``indeterminate`` (some mandatory requirement is unsatisfied and an
  accepted licence for it was indeterminate, so retrying may help) or ``incomplete``.

**Disclosure.** Licence data leaves only as :func:`gateway.catalogue.disclose` of the union
of the requirements a licence satisfies; a licence that satisfies none shows no data. The
licence identifier (a GB/T 36904 reference the partner itself presented: type, issuing
authority, serial) identifies licences in ``satisfied_by`` and ``problems``; holder codes
appear only when disclosed, otherwise masked (:func:`mask_code`: at least 8 characters hidden,
so a 9-character passport number is not shown all but one character) inside a mismatch
explanation. An *indeterminate* licence of an accepted type that names someone else cannot
satisfy the requirement on any retry: its problem carries ``HOLDER_MISMATCH`` too (without
detail) and it does not make the outcome indeterminate; nor does one whose type code was read
and is no catalogue type. Verification reason *details* are dropped here (they can quote licence
values such as a validity date); the stable code and messages remain. A licence's verification
notes (``STATUS_NOT_CHECKED``: its region's revocation status is not checked) are listed under
``notes`` with fixed messages, for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .catalogue import ORGANISATION_CODE_TYPES, Catalogue, Item, LicenceType, Requirement, disclose
from .core import Verdict, VerificationResult
from .errors import (APPLICANT_INVALID, BAD_REQUEST, HOLDER_MISMATCH, MALFORMED, TYPE_NOT_ACCEPTED, UNKNOWN_REGION,
                     Reason, RequestRejected)
from .identifiers import HOLDER_CODE_TYPES, holder_code_valid, mask_holder_code
from .model import Licence

MAX_APPLICANT_NAME = 64
_CASE_FOLDED_TYPES = frozenset({"111", "001"})  # X check character / USCC letters: compare upper case
#: roles whose bearer acts for the organisation holding the licence (法定代表人/负责人). Other
#: roles (co_owner, spouse, parent, guardian, household_head) name a party, not a representative.
REPRESENTATIVE_ROLES = frozenset({"legal_representative"})

VALID, INVALID, INDETERMINATE = Verdict.VALID.value, Verdict.INVALID.value, Verdict.INDETERMINATE.value
OUTCOME_COMPLETE, OUTCOME_INCOMPLETE, OUTCOME_INDETERMINATE = "complete", "incomplete", "indeterminate"


# --- input ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Applicant:
    """Who applies: a person (111 公民身份号码, passports, ...) or an organisation (001 USCC).
    ``name`` is accepted for the partner's records; binding uses codes only."""

    code_type: str
    code: str
    name: str | None = None

    def same_party(self, code_type: str, code: str) -> bool:
        return self.code_type == code_type and self.code == _fold(code_type, code)


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _fold(code_type: str, code: str) -> str:
    """Upper-case the ASCII letters only (as the core does for holder codes): str.upper() turns "ﬀ" into
    "FF", which made a check-valid USCC of a code nobody wrote (an applicant's, or a role field's)."""
    return code.translate(_ASCII_UPPER) if code_type in _CASE_FOLDED_TYPES else code


#: a holder code for display (the one rule: gateway.identifiers.mask_holder_code)
mask_code = mask_holder_code


def parse_applicant(raw: Any) -> Applicant:
    """``{"code_type": "111", "code": "...", "name"?: "..."}`` -> :class:`Applicant`.
    Raises RequestRejected BAD_REQUEST (shape) or APPLICANT_INVALID (code type / check digit)."""
    if not isinstance(raw, dict):
        raise RequestRejected(BAD_REQUEST, "'applicant' must be an object with 'code_type' and 'code'")
    unknown = sorted(set(raw) - {"code_type", "code", "name"})
    if unknown:
        raise RequestRejected(BAD_REQUEST, f"applicant: unknown field(s) {', '.join(unknown)}")
    code_type, code, name = raw.get("code_type"), raw.get("code"), raw.get("name")
    if not isinstance(code_type, str) or not isinstance(code, str) or not code:
        raise RequestRejected(BAD_REQUEST, "applicant: 'code_type' and 'code' must be non-empty strings")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= MAX_APPLICANT_NAME):
        raise RequestRejected(BAD_REQUEST, f"applicant: 'name' must be a string of 1 to {MAX_APPLICANT_NAME} characters")
    if code_type not in HOLDER_CODE_TYPES:
        raise RequestRejected(APPLICANT_INVALID, f"unknown holder code type {code_type[:8]!r}")
    code = _fold(code_type, code.strip())
    # the check-digit types are ASCII: full-width or other Unicode digits pass a \d regex and int()
    if (code_type in _CASE_FOLDED_TYPES and not code.isascii()) or not holder_code_valid(code_type, code):
        what = {"111": "citizen ID number (GB 11643, MOD 11-2)",
                "001": "unified social credit code (GB 32100)"}.get(code_type, f"code of type {code_type}")
        raise RequestRejected(APPLICANT_INVALID, f"applicant code is not a valid {what}")
    return Applicant(code_type, code, name)


@dataclass(frozen=True, slots=True)
class Presented:
    """One presented licence after verification (or after failing to decode)."""

    index: int
    verdict: str
    reasons: tuple[Reason, ...]
    region: tuple[str, str] | None  # (code, name)
    licence: Licence | None
    notes: tuple[str, ...] = ()  # codes of the verification's notes (e.g. STATUS_NOT_CHECKED)

    @classmethod
    def from_result(cls, index: int, result: VerificationResult) -> Presented:
        region = (result.region.code, result.region.name) if result.region else None
        return cls(index, result.verdict.value, tuple(r.reason for r in result.reasons), region, result.licence,
                   tuple(n.code for n in result.notes))

    @classmethod
    def undecodable(cls, index: int) -> Presented:
        """An entry whose ``licence``/``encoding`` could not even be decoded."""
        return cls(index, INVALID, (MALFORMED,), None, None)

    @property
    def identifier(self) -> str | None:
        return self.licence.identifier if self.licence else None


# --- output --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Finding:
    """A reason with an optional detail written by this module (never a licence value)."""

    reason: Reason
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"code": self.reason.code, "message": self.reason.message,
                             "message_zh": self.reason.message_zh}
        if self.reason.advice_zh:
            d["advice_zh"] = self.reason.advice_zh
        if self.detail:
            d["detail"] = self.detail
        return d


@dataclass(frozen=True, slots=True)
class Problem:
    index: int
    identifier: str | None
    findings: tuple[Finding, ...]
    could_bind: bool = True  # False: names someone else, so no retry of its verification can help

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "identifier": self.identifier, "reasons": [f.to_dict() for f in self.findings]}


@dataclass(frozen=True, slots=True)
class RequirementOutcome:
    requirement: Requirement
    accepted_types: tuple[LicenceType, ...]
    satisfied_by: tuple[Presented, ...]
    problems: tuple[Problem, ...]

    @property
    def satisfied(self) -> bool:
        return bool(self.satisfied_by)

    def to_dict(self) -> dict[str, Any]:
        r = self.requirement
        return {"id": r.id, "description_zh": r.description_zh, "mandatory": r.mandatory, "binding": r.binding,
                "satisfied": self.satisfied, "satisfied_by": [p.identifier for p in self.satisfied_by],
                "accepted_types": [{"key": t.key, "type_code": t.type_code, "name_zh": t.name_zh}
                                   for t in self.accepted_types],
                "problems": [p.to_dict() for p in self.problems]}


@dataclass(frozen=True, slots=True)
class LicenceOutcome:
    presented: Presented
    satisfies: tuple[str, ...]  # requirement ids
    findings: tuple[Finding, ...]
    disclosed: Mapping[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        p = self.presented
        return {"index": p.index, "identifier": p.identifier, "verdict": p.verdict,
                "reasons": [f.to_dict() for f in self.findings],
                "region": {"code": p.region[0], "name": p.region[1]} if p.region else None,
                "satisfies": list(self.satisfies),
                "licence": dict(self.disclosed) if self.disclosed is not None else None,
                **({"notes": [_note(code) for code in p.notes]} if p.notes else {})}


@dataclass(frozen=True, slots=True)
class CheckOutcome:
    item: Item
    applicant: Applicant
    requirements: tuple[RequirementOutcome, ...]
    licences: tuple[LicenceOutcome, ...]
    represented: tuple[tuple[str, str], ...]  # organisations the applicant acts for: (code_type, code)

    @property
    def complete(self) -> bool:
        return all(r.satisfied for r in self.requirements if r.requirement.mandatory)

    @property
    def outcome(self) -> str:
        if self.complete:
            return OUTCOME_COMPLETE
        missing = [r for r in self.requirements if r.requirement.mandatory and not r.satisfied]
        by_index = {lo.presented.index: lo.presented for lo in self.licences}
        if any(by_index[p.index].verdict == INDETERMINATE and p.could_bind for r in missing for p in r.problems):
            return OUTCOME_INDETERMINATE
        return OUTCOME_INCOMPLETE

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": {"code": self.item.code, "name_zh": self.item.name_zh},
            "applicant": {"code_type": self.applicant.code_type, "code_masked": mask_code(self.applicant.code)},
            "complete": self.complete,
            "outcome": self.outcome,
            "missing": [r.requirement.id for r in self.requirements if r.requirement.mandatory and not r.satisfied],
            "acting_for": [{"code_type": ct, "code_masked": mask_code(c)} for ct, c in self.represented],
            "requirements": [r.to_dict() for r in self.requirements],
            "licences": [lo.to_dict() for lo in self.licences],
        }


#: what a verification note means, without the values its own message may quote (the signing date
#: of ISSUER_CERT_EXPIRED_SINCE_SIGNING): as for reasons, no licence value leaves through a note
_NOTES = {
    "STATUS_NOT_CHECKED": (
        "The licence's revocation status was not checked: status checking is switched off for its region.",
        "该地区的证照状态核验已按配置关闭，未核验证照是否被注销或吊销。"),
    "ISSUER_CERT_EXPIRED_SINCE_SIGNING": (
        "The issuer certificate has expired since the licence was signed, while it was valid.",
        "签发机构证书在证照签发后已过期，签发时证书有效。"),
}
_OTHER_NOTE = ("See the licence's verification answer for this note.", "详见证照核验结果。")


def _note(code: str) -> dict[str, str]:
    message, message_zh = _NOTES.get(code, _OTHER_NOTE)
    return {"code": code, "message": message, "message_zh": message_zh}


# --- the check -------------------------------------------------------------------------
def _role_names_applicant(ltype: LicenceType, role_name: str, lic: Licence, applicant: Applicant) -> bool:
    role = ltype.role(role_name)
    if role is None or applicant.code_type not in role.code_types:
        return False
    surface = lic.surface if isinstance(lic.surface, Mapping) else {}
    return any(isinstance(v := surface.get(f), str) and _fold(applicant.code_type, v) == applicant.code
               for f in role.code_fields)


def _represented(item: Item, typed: Sequence[tuple[Presented, LicenceType | None]],
                 applicant: Applicant, verdicts: frozenset[str] = frozenset({VALID})) -> tuple[tuple[str, str], ...]:
    """Organisations whose licence (of a verdict in ``verdicts``) names the applicant in a
    representative role the item accepts."""
    out: list[tuple[str, str]] = []
    for p, ltype in typed:
        if p.verdict not in verdicts or ltype is None or p.licence is None:
            continue
        lic = p.licence
        if lic.holder_code_type not in ORGANISATION_CODE_TYPES:
            continue
        for req in item.requirements:
            role = req.binding_role
            if (role in REPRESENTATIVE_ROLES and ltype.key in req.accept
                    and _role_names_applicant(ltype, role, lic, applicant)):
                party = (lic.holder_code_type, _fold(lic.holder_code_type, lic.holder_code))
                if party not in out:
                    out.append(party)
                break
    return tuple(out)


def _binds(req: Requirement, ltype: LicenceType, lic: Licence, applicant: Applicant,
           parties: Sequence[tuple[str, str]]) -> bool:
    role = req.binding_role
    if role is not None:
        return _role_names_applicant(ltype, role, lic, applicant)
    holder = (lic.holder_code_type, _fold(lic.holder_code_type, lic.holder_code))
    return applicant.same_party(*holder) or holder in parties


def _mismatch(req: Requirement, ltype: LicenceType, lic: Licence) -> Finding:
    role_name = req.binding_role
    if role_name is None:
        detail = f"licence holder {mask_code(lic.holder_code)} is not the applicant"
    else:
        role = ltype.role(role_name)
        detail = f"the licence does not name the applicant as {role.label_en if role else role_name}"
    return Finding(HOLDER_MISMATCH, detail)


def _verification_findings(p: Presented) -> tuple[Finding, ...]:
    return tuple(Finding(r) for r in p.reasons)


def _covered(item: Item, p: Presented) -> bool:
    """Is the licence's issuing region one the item is handled across (``regions``)?"""
    return item.all_regions or (p.region is not None and item.covers_region(p.region[0]))


def _outside(item: Item, p: Presented) -> Finding:
    where = f"region {p.region[0]}" if p.region is not None else "an unknown region"
    return Finding(UNKNOWN_REGION, f"item {item.code} does not accept licences of {where}")


def _merge_disclosed(reqs: Sequence[Requirement], lic: Licence, ltype: LicenceType | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for req in reqs:
        part = disclose(req, lic, ltype)
        surface = part.pop("surface", None)
        out.update(part)
        if surface is not None:
            out.setdefault("surface", {}).update(surface)
    return out


def check_item(catalogue: Catalogue, item: Item, applicant: Applicant,
               presented: Sequence[Presented]) -> CheckOutcome:
    """Match, bind and judge ``presented`` (in request order) against ``item``."""
    typed = [(p, catalogue.type_by_code(p.licence.type_code) if p.licence else None) for p in presented]
    # a licence of a region the item is not handled across satisfies nothing, nor makes anyone a representative
    outside = frozenset(p.index for p in presented if not _covered(item, p))
    in_scope = [(p, t) for p, t in typed if p.index not in outside]
    parties = _represented(item, in_scope, applicant)
    # organisations the applicant might act for once every indeterminate licence verifies
    maybe_parties = _represented(item, in_scope, applicant, frozenset({VALID, INDETERMINATE}))
    accepted_anywhere = {k for r in item.requirements for k in r.accept}

    req_outcomes: list[RequirementOutcome] = []
    satisfied_by_index: dict[int, list[Requirement]] = {}
    mismatched: dict[int, Finding] = {}
    for req in item.requirements:
        sat: list[Presented] = []
        problems: list[Problem] = []
        untyped: list[Problem] = []
        for p, ltype in typed:
            if ltype is None:
                if p.verdict != VALID:  # type unknown because the licence did not verify
                    # one whose type code was read names a type no requirement accepts: no retry helps
                    untyped.append(Problem(p.index, p.identifier, _verification_findings(p),
                                           could_bind=p.licence is None))
                continue
            if ltype.key not in req.accept:
                continue
            lic = p.licence
            assert lic is not None  # ltype is only known from a parsed licence
            if p.index in outside:  # no retry of its verification brings its region into the item
                finding = _outside(item, p)
                mismatched.setdefault(p.index, finding)
                findings = _verification_findings(p) if p.verdict != VALID else ()
                problems.append(Problem(p.index, p.identifier, findings + (finding,), could_bind=False))
            elif p.verdict != VALID:
                findings = _verification_findings(p)
                # an indeterminate licence naming someone else stays unbound on any retry (no detail:
                # its data is not verified, so it is not quoted)
                could_bind = p.verdict != INDETERMINATE or _binds(req, ltype, lic, applicant, maybe_parties)
                if not could_bind:
                    findings += (Finding(HOLDER_MISMATCH),)
                problems.append(Problem(p.index, p.identifier, findings, could_bind))
            elif _binds(req, ltype, lic, applicant, parties):
                sat.append(p)
                satisfied_by_index.setdefault(p.index, []).append(req)
            else:
                finding = _mismatch(req, ltype, lic)
                mismatched.setdefault(p.index, finding)
                problems.append(Problem(p.index, p.identifier, (finding,)))
        if not sat:  # a licence whose type could not be read might have been the missing one
            problems = sorted(problems + untyped, key=lambda pr: pr.index)
        accepted = tuple(t for k in req.accept if (t := catalogue.type_by_key(k)) is not None)
        req_outcomes.append(RequirementOutcome(req, accepted, tuple(sat), tuple(problems)))

    lic_outcomes: list[LicenceOutcome] = []
    for p, ltype in typed:
        reqs = satisfied_by_index.get(p.index, [])
        if p.verdict != VALID:
            findings: tuple[Finding, ...] = _verification_findings(p)
        elif reqs:
            findings = ()
        elif ltype is None or ltype.key not in accepted_anywhere:
            findings = (Finding(TYPE_NOT_ACCEPTED),)
        else:
            findings = (mismatched.get(p.index) or Finding(HOLDER_MISMATCH),)
        disclosed = _merge_disclosed(reqs, p.licence, ltype) if reqs and p.licence is not None else None
        lic_outcomes.append(LicenceOutcome(p, tuple(r.id for r in reqs), findings, disclosed))
    return CheckOutcome(item, applicant, tuple(req_outcomes), tuple(lic_outcomes), parties)
