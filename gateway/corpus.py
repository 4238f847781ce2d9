"""Load-test corpus from the issuer simulator (``python -m gateway demo corpus``).

Writes the load tool's JSONL format (load/README.md): single verifies spread round robin over
every selected region (all 45 by default, so every format family) and over each region's
licence types, batches, and item checks (``/v1/items/{code}/check`` with an applicant bound
to the licences), each line tagged with the verdict / outcome the gateway must answer.

**Same TEST framework as the demo gateway.** :func:`demo_builder` loads the framework the demo
gateway uses (``var/demo``, :func:`gateway.devtrust.ensure_framework`) and builds an
:class:`~gateway.simulator.IssuerSimulator` on it, through the same specs and families.

**Revocations the gateway can see.** The demo gateway's status lists come from its own
in-process simulator(s) (one per worker, served over loopback HTTP by
:mod:`gateway.issuer_server`): a licence revoked in *this* process would be valid there.
So revoked / suspended licences take their status index from the simulator's *standing*
ranges (:data:`gateway.simulator.STANDING_REVOKED` / ``STANDING_SUSPENDED``), which every
simulator process marks the same way, and every other licence takes a fresh index from
:data:`CORPUS_INDEX_BASE` up, far from the indices a gateway's own simulator hands out (from
1) and below the standing ranges. No shared files, no ordering between processes.

Item checks: for each check line an item is picked (round robin over items a region can
complete), licences of accepted types are issued for a synthetic applicant (holder binding,
or the applicant named in the role a ``role:`` requirement asks for), and the expected
``outcome`` (``complete`` / ``incomplete`` / ``indeterminate``) is computed by running the
pure core and :func:`gateway.checking.check_item` in-process on the same trust and status.
A share of check lines (``check_incomplete``) swaps one licence for a revoked one.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .catalogue import Catalogue, Item, LicenceType
from .checking import Applicant, Presented, check_item
from .core import Verifier
from .simulator import CASES, STANDING_REVOKED, STANDING_SUSPENDED, IssuerSimulator, expected
from .specs import RegionSpec
from .status import StatusSnapshot
from .trust import TrustSnapshot

#: the default case mix (percent); every simulator case appears
DEFAULT_MIX: dict[str, float] = {
    "valid": 70, "expired": 5, "revoked": 5, "suspended": 3, "tampered": 5, "malformed": 5,
    "not-yet-valid": 2, "wrong-issuer": 3, "unknown-issuer": 2,
}
#: first status index of corpus licences that are not revoked/suspended (see module doc)
CORPUS_INDEX_BASE = 20_000
VERIFY_PATH = "/v1/licences/verify"
BATCH_PATH = "/v1/licences/verify-batch"
MAX_COUNT = 200_000
MAX_BATCH_SIZE = 100


@dataclass(frozen=True, slots=True)
class CorpusPlan:
    """What to generate. ``families`` / ``algorithms`` empty = every region."""

    count: int
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    families: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ()
    batches: int = 0
    batch_size: int = 10
    checks: int = 0
    check_incomplete: float = 0.2
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.count <= MAX_COUNT or not 0 <= self.batches <= MAX_COUNT or not 0 <= self.checks <= MAX_COUNT:
            raise ValueError(f"count, batches and checks must be 0..{MAX_COUNT}")
        if self.count + self.batches + self.checks == 0:
            raise ValueError("nothing to generate: count, batches and checks are all 0")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch size must be 1..{MAX_BATCH_SIZE}")
        if not 0 <= self.check_incomplete <= 1:
            raise ValueError("check_incomplete must be a share in [0, 1]")
        validate_mix(self.mix)


def validate_mix(mix: Mapping[str, float]) -> None:
    unknown = sorted(set(mix) - set(CASES))
    if unknown:
        raise ValueError(f"unknown case(s) {', '.join(unknown)}; cases: {', '.join(CASES)}")
    if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError("mix weights must be >= 0 with a positive sum")


def parse_mix(text: str) -> dict[str, float]:
    """``"valid=70,expired=5,revoked=5"`` -> ``{"valid": 70.0, ...}`` (ValueError when ill-formed)."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, weight = part.partition("=")
        if not sep:
            raise ValueError(f"mix entry {part!r} is not case=weight")
        try:
            mix[name.strip()] = float(weight)
        except ValueError:
            raise ValueError(f"mix weight {weight!r} of {name.strip()!r} is not a number") from None
    validate_mix(mix)
    return mix


def allocate(mix: Mapping[str, float], n: int, rng: random.Random) -> list[str]:
    """Exactly ``n`` cases in the mix's proportions (largest remainder), in a seeded random order."""
    total = sum(mix.values())
    exact = {case: n * w / total for case, w in mix.items()}
    counts = {case: int(v) for case, v in exact.items()}
    for case in sorted(exact, key=lambda c: (counts[c] - exact[c], c))[: n - sum(counts.values())]:
        counts[case] += 1
    out = [case for case in mix for _ in range(counts[case])]
    rng.shuffle(out)
    return out


def select_regions(specs: Mapping[str, RegionSpec], families: Sequence[str] = (),
                   algorithms: Sequence[str] = ()) -> list[str]:
    codes = [c for c, s in sorted(specs.items())
             if (not families or s.family in families) and (not algorithms or s.algorithms[0] in algorithms)]
    if not codes:
        raise ValueError(f"no region matches families={list(families)} algorithms={list(algorithms)}")
    return codes


def _standing(case: str) -> range | None:
    return {"revoked": STANDING_REVOKED, "suspended": STANDING_SUSPENDED}.get(case)


class CorpusBuilder:
    """Issues corpus lines with a simulator on the gateway's TEST framework. ``verifier``,
    ``trust`` and ``status`` (the same framework, this simulator's lists) judge item checks."""

    def __init__(self, sim: IssuerSimulator, catalogue: Catalogue, verifier: Verifier, trust: TrustSnapshot,
                 status: StatusSnapshot, now: dt.datetime, seed: int = 1) -> None:
        self.sim, self.catalogue, self.verifier = sim, catalogue, verifier
        self.trust, self.status, self.now = trust, status, now
        self.rng = random.Random(seed)
        sim.rng = random.Random(seed)
        for st in sim.state.values():
            st.next_index = max(st.next_index, CORPUS_INDEX_BASE)
        self._standing_next: dict[tuple[str, str], int] = {}
        self._type_next: dict[str, int] = {}

    # --- single licences ------------------------------------------------------------------
    def issue(self, region: str, case: str, type_key: str | None = None,
              holder: tuple[str, str, str] | None = None, surface: Mapping[str, Any] | None = None) -> tuple[
                  dict[str, str], str, str]:
        """One licence -> (request body, expected verdict, tag)."""
        if type_key is None:
            types = self.sim.licence_types_of(region)
            i = self._type_next.get(region, 0)
            self._type_next[region] = i + 1
            type_key = types[i % len(types)]
        st = self.sim.state[region]
        saved = st.next_index
        standing = _standing(case)
        if standing is not None:
            k = self._standing_next.get((region, case), 0)
            self._standing_next[(region, case)] = k + 1
            st.next_index = standing[k % len(standing)]
        try:
            if surface is not None:
                if case != "valid" and standing is None:
                    raise ValueError("a licence with a given surface is issued valid, revoked or suspended")
                lic = self.sim.canonical(region, type_key, self.now, holder=holder, surface=surface)
                verdict, reason = expected(case, self.sim.specs[region].family)
                body = _body(self.sim.encode(region, lic, self.now))
            else:
                got = self.sim.issue(region, type_key, case, self.now, holder)
                verdict, reason, body = got.expect_verdict, got.expect_reason, got.body()
        finally:
            if standing is not None:
                st.next_index = saved
        spec = self.sim.specs[region]
        tag = f"{case} {region} {spec.family} {spec.algorithms[0]} {type_key}" + (f" {reason}" if reason else "")
        return body, verdict, tag

    def verify_lines(self, regions: Sequence[str], cases: Iterable[str]) -> Iterator[dict[str, Any]]:
        for i, case in enumerate(cases):
            body, verdict, tag = self.issue(regions[i % len(regions)], case)
            yield {"kind": "verify", "path": VERIFY_PATH, "body": body, "expect": verdict, "tag": tag}

    @staticmethod
    def batch_lines(singles: Sequence[dict[str, Any]], batches: int, size: int) -> Iterator[dict[str, Any]]:
        """Batches of ``size`` drawn in order (cycling) from the single-verify lines."""
        if not singles:
            return
        k = 0
        for b in range(batches):
            chunk = [singles[(k + j) % len(singles)] for j in range(size)]
            k += size
            yield {"kind": "batch", "path": BATCH_PATH, "body": {"licences": [c["body"] for c in chunk]},
                   "expect": [c["expect"] for c in chunk], "tag": f"batch {b} of {size}"}

    # --- item checks ------------------------------------------------------------------------
    def checkable(self, regions: Sequence[str]) -> list[tuple[Item, str]]:
        """(item, region) pairs this builder can complete: every mandatory requirement has an
        accepted type the region issues, bindable to one applicant."""
        out = []
        for item in self.catalogue.items:
            for region in regions:
                if item.covers_region(region) and self._plan(item, region) is not None:
                    out.append((item, region))
                    break
        return out

    def _plan(self, item: Item, region: str) -> list[tuple[str, LicenceType, str]] | None:
        """[(requirement id, type, who holds it: applicant|company|other)] or None."""
        issued = set(self.sim.licence_types_of(region))
        has_role_org = needs_representation = False
        plan: list[tuple[str, LicenceType, str]] = []
        for req in item.requirements:
            if not req.mandatory:
                continue
            types = [t for k in req.accept if k in issued and (t := self.catalogue.type_by_key(k)) is not None]
            role = req.binding_role
            if role is not None:
                fit = [t for t in types if (r := t.role(role)) is not None and "111" in r.code_types]
                if not fit:
                    return None
                t = fit[0]
                holder = "company" if t.holder_kind == "organisation" else "other"
                has_role_org = has_role_org or holder == "company"
                plan.append((req.id, t, holder))
            else:
                people = [t for t in types if t.holder_kind != "organisation" and "111" in t.holder_code_types]
                orgs = [t for t in types if t.holder_kind == "organisation"]
                if people:
                    plan.append((req.id, people[0], "applicant"))
                elif orgs:
                    plan.append((req.id, orgs[0], "company"))
                    needs_representation = True
                else:
                    return None
        if not plan or (needs_representation and not has_role_org):
            return None  # an organisation's licence binds only through a role licence of the item
        return plan

    def check_line(self, item: Item, region: str, *, spoil: bool = False) -> dict[str, Any]:
        plan = self._plan(item, region)
        if plan is None:
            raise ValueError(f"item {item.code} cannot be completed with region {region}'s licences")
        app_name, app_code = self.sim.person(region, self.rng)
        comp_name, comp_code = self.sim.company(region, self.rng)
        bodies: list[dict[str, str]] = []
        spoil_at = self.rng.randrange(len(plan)) if spoil else -1
        for n, (rid, t, who) in enumerate(plan):
            req = item.requirement(rid)
            role = req.binding_role if req else None
            # the applicant in the role's place of their sex (a father is not also the mother)
            surface = self.sim.role_surface(t, role, app_name, app_code) if role is not None else None
            if who == "applicant":
                holder = (app_name, app_code, "111")
            elif who == "company":
                holder = (comp_name, comp_code, "001")
            elif role is not None:  # e.g. the applicant's child, born when the applicant was 20 to 45
                holder = (*self.sim.holder_for_role(region, t, role, app_code, self.now, self.rng), "111")
            else:
                holder = (*self.sim.person(region, self.rng), "111")
            case = "revoked" if n == spoil_at else "valid"
            body, _, _ = self.issue(region, case, t.key, holder, surface)
            bodies.append(body)
        applicant = Applicant("111", app_code, app_name)
        presented = [Presented.from_result(i, self.verifier.verify(_decode(b), self.trust, self.status, self.now))
                     for i, b in enumerate(bodies)]
        outcome = check_item(self.catalogue, item, applicant, presented).outcome
        return {"kind": "check", "path": f"/v1/items/{item.code}/check",
                "body": {"applicant": {"code_type": "111", "code": app_code, "name": app_name}, "licences": bodies},
                "expect": outcome,
                "tag": f"check {item.code} {region} {self.sim.specs[region].family}" + (" spoiled" if spoil else "")}

    def check_lines(self, regions: Sequence[str], n: int, incomplete_share: float) -> Iterator[dict[str, Any]]:
        pairs = self.checkable(regions)
        if n and not pairs:
            raise ValueError("no catalogue item can be completed with the selected regions' licences")
        spoiled = set(self.rng.sample(range(n), round(n * incomplete_share))) if n else set()
        for i in range(n):
            item, first = pairs[i % len(pairs)]
            options = [r for r in regions if item.covers_region(r) and self._plan(item, r) is not None] or [first]
            yield self.check_line(item, options[(i // len(pairs)) % len(options)], spoil=i in spoiled)

    # --- everything -------------------------------------------------------------------------
    def build(self, plan: CorpusPlan) -> list[dict[str, Any]]:
        regions = select_regions(self.sim.specs, plan.families, plan.algorithms)
        rng = random.Random(plan.seed)
        singles = list(self.verify_lines(regions, allocate(plan.mix, plan.count, rng)))
        if plan.batches and not singles:
            singles = list(self.verify_lines(regions, allocate(plan.mix, plan.batch_size, rng)))
            lines = []
        else:
            lines = singles
        batches = list(self.batch_lines(singles, plan.batches, plan.batch_size))
        checks = list(self.check_lines(regions, plan.checks, plan.check_incomplete))
        return [*lines, *batches, *checks]


def _body(data: bytes) -> dict[str, str]:
    import base64

    if data[:1] in (b"e", b"{", b"<") and b"\x00" not in data:
        try:
            return {"licence": data.decode("utf-8"), "encoding": "utf-8"}
        except UnicodeDecodeError:
            pass
    return {"licence": base64.b64encode(data).decode("ascii"), "encoding": "base64"}


def _decode(body: Mapping[str, str]) -> bytes:
    import base64

    text = body["licence"]
    return base64.b64decode(text) if body.get("encoding") == "base64" else text.encode("utf-8")


def demo_builder(settings: Any, now: dt.datetime, seed: int = 1) -> CorpusBuilder:
    """A builder on the demo gateway's TEST framework (``<var_dir>/demo``), same specs/catalogue."""
    from .bootstrap import load_static, policy_from, type_names
    from .devtrust import ensure_framework
    from .trust import build_snapshot

    regions, specs, catalogue = load_static(settings)
    doc, material = ensure_framework(Path(settings.var_dir) / "demo", specs, regions, now)
    sim = IssuerSimulator(specs, regions, material, {t.key: t for t in catalogue.types}, seed=seed)
    trust = build_snapshot(doc, regions, max_chain_depth=settings.max_chain_depth)
    status = sim.status_snapshot(now, dt.timedelta(hours=1))
    verifier = Verifier(policy_from(settings), specs, type_names(catalogue))
    return CorpusBuilder(sim, catalogue, verifier, trust, status, now, seed)


def write_jsonl(path: str | Path, lines: Iterable[Mapping[str, Any]]) -> int:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("wb") as fh:
        for line in lines:
            fh.write(orjson.dumps(line) + b"\n")
            n += 1
    tmp.replace(p)
    return n


def summary(lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts by kind, by expected verdict/outcome and by family (for the CLI and the README)."""
    out: dict[str, Any] = {"lines": len(lines), "kinds": {}, "expect": {}, "families": {}, "regions": set()}
    for line in lines:
        out["kinds"][line["kind"]] = out["kinds"].get(line["kind"], 0) + 1
        if line["kind"] != "batch":
            out["expect"][line["expect"]] = out["expect"].get(line["expect"], 0) + 1
        if line["kind"] == "verify":
            _, region, family = line["tag"].split()[:3]
            out["families"][family] = out["families"].get(family, 0) + 1
            out["regions"].add(region)
    out["regions"] = len(out["regions"])
    return out


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (text or "").split(",") if x.strip())


def add_corpus_arguments(p: Any) -> None:
    """Arguments of ``python -m gateway demo corpus`` (an argparse parser)."""
    p.add_argument("--out", required=True, help="JSONL file to write")
    p.add_argument("--count", type=int, default=1000, help="single-verify lines (default 1000)")
    p.add_argument("--mix", help="case weights, e.g. valid=70,expired=5,revoked=5,tampered=5,malformed=5 "
                                 f"(default {','.join(f'{k}={v:g}' for k, v in DEFAULT_MIX.items())})")
    p.add_argument("--families", help="only regions of these families, e.g. jws,sm2-json (default all)")
    p.add_argument("--algorithms", help="only regions signing with these, e.g. ES256 (default all)")
    p.add_argument("--batches", type=int, help="batch lines (default count/10, at least 1 when count is)")
    p.add_argument("--batch-size", type=int, default=10, help="licences per batch (default 10)")
    p.add_argument("--checks", type=int, default=None, help="item-check lines (default count/10)")
    p.add_argument("--check-incomplete", type=float, default=0.2,
                   help="share of item checks with one licence revoked (default 0.2)")
    p.add_argument("--seed", type=int, default=1)


def plan_from_args(args: Any) -> CorpusPlan:
    return CorpusPlan(count=args.count, mix=parse_mix(args.mix) if args.mix else dict(DEFAULT_MIX),
                      families=_names(args.families), algorithms=_names(args.algorithms),
                      # --count 0 meant no singles but still one default batch line: 0 is none, as for the others
                      batches=(max(1, args.count // 10) if args.count > 0 else 0) if args.batches is None
                      else args.batches,
                      batch_size=args.batch_size, checks=args.count // 10 if args.checks is None else args.checks,
                      check_incomplete=args.check_incomplete, seed=args.seed)


def demo_corpus_command(args: Any, settings: Any = None, now: dt.datetime | None = None) -> int:
    import sys

    from .config import load_settings

    try:
        plan = plan_from_args(args)
        builder = demo_builder(settings or load_settings(demo=True), now or dt.datetime.now(dt.timezone.utc), plan.seed)
        lines = builder.build(plan)
    except ValueError as exc:
        print(f"错误 / error: {exc}", file=sys.stderr)
        return 2
    n = write_jsonl(args.out, lines)
    s = summary(lines)
    print(f"wrote {n} lines to {args.out}: {s['kinds']}; expected {s['expect']}; "
          f"families {s['families']}; {s['regions']} regions", file=sys.stderr)
    return 0


__all__ = ["CORPUS_INDEX_BASE", "DEFAULT_MIX", "CorpusBuilder", "CorpusPlan", "add_corpus_arguments", "allocate",
           "demo_builder", "demo_corpus_command", "parse_mix", "plan_from_args", "select_regions", "summary",
           "write_jsonl"]
