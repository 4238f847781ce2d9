"""Command line: ``python -m gateway <command>`` (also installed as ``elicence-gateway``).

Commands:
  serve [--demo] [--port N] [--host H] [--config FILE]   run the gateway
  demo issue --region CODE [--type T] [--state S]         print a simulated licence to POST
  demo cases                                              list simulator cases and their expected verdicts
  demo token [--scope S] [--client-id ID] [--json]        print a bearer token of the demo partner (TEST keys)
  demo corpus --out F.jsonl --count N [--mix ...]         write a load-test corpus (gateway/corpus.py)
  specs check                                             validate region specs and catalogues
  trust sign --key K --in DOC --out SIGNED                sign a trust list with the operator key
  trust inspect FILE                                      summarise a (signed) trust list, no checks
  trust verify FILE --pubkey P [--held FILE]              check signature, expiry, rollback; build it
  trust check [FILE] [--pubkey P] [--days N] [--config F] what expires within N days; exit 3 if anything
  staff add USER --role R --window W [--password-stdin]   add a service-window console account
  staff remove USER [--file F]                            remove one (its open sessions end at their next request)
  audit verify|search|prune --store URL ...                check, search or prune the audit trail (gateway/audit/cli.py)
  receipt verify TOKEN (--jwks FILE | --url URL) [--body F] check a verification receipt offline
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

import orjson


#: what refuses start-up, and how the operator is told (no traceback)
def _startup_errors() -> tuple[tuple[type, str], ...]:
    from .catalogue import CatalogueError
    from .config import ConfigError
    from .specs import SpecError

    return ((ConfigError, "配置错误 / configuration error"), (SpecError, "区域规格错误 / region spec error"),
            (CatalogueError, "目录错误 / catalogue error"))


def _refused(exc: Exception) -> int | None:
    """Print a start-up error in Chinese and English and give exit status 2; None if ``exc`` is not one."""
    for kind, label in _startup_errors():
        if isinstance(exc, kind):
            print(f"{label}: {exc}", file=sys.stderr)
            return 2
    return None


def _busy_port(settings) -> int | None:
    """Exit status 3 (one ERROR log line, in Chinese and English) when the gateway's port, or in demo mode
    its simulated regions' port, cannot be listened on; None when both are free. Checked before anything
    starts: a second demo on a busy port printed its banner, re-signed the demo trust list, started a
    regions process and wrote to the running gateway's audit chain before its worker found the port taken."""
    from .serve import EXIT_CANNOT_LISTEN, cannot_listen

    ports = [(settings.host, settings.port)]
    if settings.demo:
        ports.append((settings.host, settings.demo_regions_port or settings.port + 1))
    if settings.metrics_port:   # gateway/metrics.py: a second gateway would share it silently (SO_REUSEPORT)
        ports.append((settings.metrics_host, settings.metrics_port))
    return EXIT_CANNOT_LISTEN if any(cannot_listen(host, port) for host, port in ports) else None


def _serve(args: argparse.Namespace) -> int:
    from .bootstrap import check_startup
    from .config import load_settings
    from .serve import run_worker, run_workers, with_demo_regions

    settings = load_settings(args.config, demo=True if args.demo else None, port=args.port, host=args.host,
                             workers=args.workers)
    check_startup(settings)  # specs, catalogues, keys, audit: refused here (see main), before any worker starts
    from .logging_setup import configure_logging

    configure_logging(settings.log_level)  # JSON lines with the request id; holder codes and names redacted
    busy = _busy_port(settings)
    if busy is not None:  # before the banner, the demo's files and processes, the audit store: nothing done
        return busy
    workers = settings.workers
    mode = "DEMO (TEST keys, simulated issuers for 45 regions)" if settings.demo else "operator"
    print(f"e-licence gateway on http://{settings.host}:{settings.port}  mode: {mode}  workers: {workers}", flush=True)
    if settings.demo:
        print("  try: TOKEN=$(python -m gateway demo token); python -m gateway demo issue --region 330500 | "
              "curl -s -X POST -H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json' "
              f"--data-binary @- http://{settings.host}:{settings.port}/v1/licences/verify", flush=True)
        from .console.cli import demo_banner

        print(demo_banner(settings.host, settings.port), flush=True)
    settings, regions_proc = with_demo_regions(settings)
    try:
        if workers == 1:
            run_worker(settings, reuse_port=False)
            return 0
        return run_workers(settings, workers)
    finally:
        if regions_proc is not None and regions_proc.is_alive():
            regions_proc.terminate()
            regions_proc.join(5)


def _demo(args: argparse.Namespace) -> int:
    from .bootstrap import build_services
    from .config import load_settings
    from .simulator import CASES, EXPECTED

    if args.demo_cmd == "cases":
        for case in CASES:
            verdict, reason = EXPECTED[case]
            print(f"{case:15} -> {verdict:13} {reason or ''}")
        return 0
    if args.demo_cmd == "token":
        return _demo_token(args)
    if args.demo_cmd == "corpus":
        from .corpus import demo_corpus_command

        return demo_corpus_command(args)
    if args.demo_cmd == "issue":
        settings = load_settings(demo=True)
        fetched = _issue_from_running_demo(settings, args)
        if fetched is not None:
            if fetched.startswith('{"error"'):   # the demo's refusal: a message, not a licence on stdout
                try:
                    message = orjson.loads(fetched)["error"]
                except (ValueError, KeyError, TypeError):
                    message = fetched
                print(f"错误 / error: {message}", file=sys.stderr)
                return 2
            sys.stdout.write(fetched + "\n")
            return 0
        services = build_services(settings)
        sim = services.simulator
        if args.state in ("revoked", "suspended"):
            print(f"注意 / note: no demo regions answered at {_demo_regions_url(settings)} (a demo on another port: "
                  "set GATEWAY_PORT to it); this licence uses a standing revoked/suspended status index",
                  file=sys.stderr)
        try:
            issued = sim.issue(args.region, args.type, args.state, dt.datetime.now(dt.timezone.utc))
        except ValueError as exc:
            print(f"错误 / error: {exc}", file=sys.stderr)
            return 2
        sys.stdout.write(orjson.dumps(issued.body()).decode() + "\n")
        return 0
    return 2


def _demo_regions_url(settings) -> str:
    return f"http://127.0.0.1:{settings.demo_regions_port or settings.port + 1}/"


def _issue_from_running_demo(settings, args: argparse.Namespace) -> str | None:
    """Ask a running demo's simulated regions to issue (so its status lists know the licence)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({k: v for k, v in (("region", args.region), ("type", args.type),
                                                      ("state", args.state)) if v})
    try:
        with urllib.request.urlopen(f"{_demo_regions_url(settings)}issue?{query}", timeout=10) as resp:
            return resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.read().decode("utf-8")
    except (urllib.error.URLError, OSError):
        return None


def _demo_token(args: argparse.Namespace) -> int:
    """Print a bearer token of a TEST partner (default demo-partner), exchanged in-process with
    the configured gateway key and token endpoint, so a gateway using the same settings accepts it."""
    from .auth import OAuthError, demo_token, load_signing_key
    from .config import ConfigError, load_settings

    try:
        settings = load_settings(args.config, demo=True)
        body = demo_token(settings.partners_dir, client_id=args.client_id, scope=args.scope,
                          gateway_key=load_signing_key(settings.gateway_key),
                          token_endpoint=settings.token_endpoint_url)
    except KeyError:
        print(f"错误 / error: no partner {args.client_id!r} in the partner registry", file=sys.stderr)
        return 2
    except (ConfigError, OAuthError, OSError) as exc:
        print(f"错误 / error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write((orjson.dumps(body).decode() if args.json else body["access_token"]) + "\n")
    return 0


def _specs(args: argparse.Namespace) -> int:
    from .bootstrap import load_static
    from .config import load_settings

    regions, specs, catalogue = load_static(load_settings(demo=True))
    print(f"ok: {len(specs)} region specs, {len(catalogue.types)} licence types, {len(catalogue.items)} items")
    return 0


def _is_held_record(data: bytes) -> bool:
    """Whether ``data`` is the gateway's held-version record (setting ``trust_state``), not a signed list."""
    from . import trustlist as tl

    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("type") == tl.FLOOR_TYPE


def _open_held(path: str, keys: list) -> object:
    """``trust verify --held FILE``: the signed list in force, or the gateway's held-version record
    (``trust_state``, what a restarted gateway judges against). Anything else used to read "refused:
    malformed: not a signed trust list" (exit 1, as if the list checked were refused), or a bare
    errno for a missing file: both now name --held, exit 2."""
    from pathlib import Path

    from . import trustlist as tl

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"--held {path}: 无法读取 / cannot read it: {exc.strerror or exc}") from None
    try:
        if _is_held_record(data):
            return tl.read_floor(path)
        return tl.open_signed(data, keys)
    except tl.TrustListRefused as exc:
        raise ValueError(f"--held {path}: 不是现行的信任列表 / not the trust list in force: {exc}; --held takes the "
                         "signed list the gateway serves, or its held-version record (trust_state)") from None


#: ``trust check``: some trust material expires within the warning window (cron and CI alert on it)
EXIT_TRUST_EXPIRING = 3


def _trust_check(args: argparse.Namespace) -> int:
    """``trust check``: the signed list's material expiring within ``--days`` (default the setting
    ``trust_expiry_warn_days``), as ``GET /v1/admin/trust`` lists it; exit 0 when nothing does, 3 when
    something does, 1 when the list is refused (its signature, or expired), 2 when it cannot be read.
    FILE and --pubkey default to the settings ``trust_list`` and ``trust_operator_keys`` (``--config``,
    ``GATEWAY_*``), so ``python -m gateway trust check --config gateway.toml`` checks what the gateway loads."""
    from pathlib import Path

    from . import trustlist as tl
    from .bootstrap import load_static
    from .config import load_settings
    from .trust import build_snapshot, material_expiry

    settings = load_settings(args.config, demo=True)   # demo: no trust_list / keys required to read the others
    path = args.file or settings.trust_list
    pubkeys = args.pubkey or list(settings.trust_operator_keys)
    days = settings.trust_expiry_warn_days if args.days is None else args.days
    if not path or not pubkeys:
        print("错误 / error: give the signed trust list (FILE, or the setting trust_list) and the operator's public "
              "key (--pubkey, or the setting trust_operator_keys)", file=sys.stderr)
        return 2
    if not 0 <= days <= 3650:
        print(f"错误 / error: --days must be 0..3650, not {days}", file=sys.stderr)
        return 2
    # each file named with what it is meant to be: a bare errno or cryptography's "Unable to load PEM file"
    # did not say whether the list or which of the keys was missing or wrong (exit 2 either way)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        print(f"错误 / error: 无法读取信任列表 / cannot read the signed trust list {path}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    keys = []
    for key_path in pubkeys:
        try:
            keys.append(tl.load_operator_key(key_path))
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            print(f"错误 / error: 无法读取操作方公钥 / cannot read the operator public key {key_path} "
                  f"(PEM, Ed25519 or P-256): {why}", file=sys.stderr)
            return 2
    signed = tl.open_signed(data, keys)
    now = dt.datetime.now(dt.timezone.utc)
    tl.judge(signed, None, now)   # an expired list is refused (exit 1), as the gateway refuses it
    regions, _, _ = load_static(settings)
    report = material_expiry(build_snapshot(signed.doc, regions), now, days)
    out = {"version": signed.version, "framework": signed.doc.get("framework"),
           "expires_at": signed.expires_at.isoformat(), "checked_at": now.isoformat(),
           "trust_expiry_warn_days": days, "expiring": [m.as_dict() for m in report.expiring],
           "expired_material": [m.as_dict() for m in report.expired]}
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    if report.expiring:
        first = report.expiring[0]
        print(f"即将到期 / expiring: {len(report.expiring)} item(s) within {days} days, the first "
              f"{first.not_after.isoformat()} ({' '.join(filter(None, (first.kind, first.region, first.subject)))})",
              file=sys.stderr)
        return EXIT_TRUST_EXPIRING
    return 0


def _trust(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import trustlist as tl

    try:
        if args.trust_cmd == "check":
            return _trust_check(args)
        if args.trust_cmd == "sign":
            doc = orjson.loads(Path(args.input).read_bytes())
            if isinstance(doc, dict) and doc.get("type") == tl.SIGNED_TYPE:
                doc = doc["trust_list"]  # re-sign the document of a signed list
            if not isinstance(doc, dict) or doc.get("type") != "elicence-trust-list":
                print("错误 / error: input is not an elicence-trust-list document", file=sys.stderr)
                return 2
            private_key = tl.load_operator_private_key(args.key)
            signed = tl.sign_trust_list(doc, private_key)
            Path(args.out).write_bytes(orjson.dumps(signed, option=orjson.OPT_INDENT_2))
            print(f"signed v{doc.get('version')} with key {tl.operator_key(private_key.public_key()).key_id} "
                  f"-> {args.out}")
            return 0
        data = Path(args.file).read_bytes()
        if args.trust_cmd == "inspect":
            doc, header, _, _ = tl.parse_signed(data)
            summary = {"signature_header": header, "signature_checked": False,
                       "version": doc.get("version"), "framework": doc.get("framework"),
                       "issued_at": doc.get("issued_at"), "expires_at": doc.get("expires_at"),
                       "digest_sha256": tl.digest_of(doc),
                       "regions": {code: {k: len(v) for k, v in r.items() if isinstance(v, list)}
                                   for code, r in (doc.get("regions") or {}).items() if isinstance(r, dict)}}
            sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
        if args.trust_cmd == "verify":
            from .bootstrap import load_static
            from .config import load_settings
            from .trust import build_snapshot

            keys = [tl.load_operator_key(p) for p in args.pubkey]
            if _is_held_record(data):
                print(f"错误 / error: {args.file} is the gateway's held-version record (trust_state), not a signed "
                      f"trust list to check: give it with --held, and as FILE the signed list to check",
                      file=sys.stderr)
                return 2
            signed = tl.open_signed(data, keys)
            held = _open_held(args.held, keys) if args.held else None
            verdict = tl.judge(signed, held, dt.datetime.now(dt.timezone.utc))
            regions, _, _ = load_static(load_settings(demo=True))
            snap = build_snapshot(signed.doc, regions)
            out = dict(tl.describe(signed), verdict=verdict,
                       dropped=[{"region": d.region, "subject": d.subject, "key_id": d.key_id, "reason": d.reason}
                                for d in snap.dropped])
            sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
            return 0
    except tl.TrustListRefused as exc:
        print(f"拒绝 / refused: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"错误 / error: {exc}", file=sys.stderr)
        return 2
    return 2


def _receipt(args: argparse.Namespace) -> int:
    """``receipt verify``: check a receipt against a published key set; print its claims."""
    import urllib.request
    from pathlib import Path

    from .errors import RequestRejected
    from .receipts import verify_receipt

    token = sys.stdin.read().strip() if args.token == "-" else args.token.strip()
    try:
        if args.url:
            with urllib.request.urlopen(args.url, timeout=10) as resp:  # noqa: S310 - an operator-given URL
                jwks = orjson.loads(resp.read())
        else:
            jwks = orjson.loads(Path(args.jwks).read_bytes())
        body = Path(args.body).read_bytes() if args.body else None
    except (OSError, ValueError) as exc:
        print(f"错误 / error: cannot read the key set or body: {exc}", file=sys.stderr)
        return 2
    try:
        claims = verify_receipt(token, jwks, request_body=body)
    except RequestRejected as exc:
        print(f"无效 / INVALID receipt: {exc.detail}{_body_hint(token, jwks, body)}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps({"valid": True, "claims": claims}, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _body_hint(token: str, jwks: object, body: bytes | None) -> str:
    """Why a body may not match: ``curl -d @FILE`` sends the file without its line breaks (the
    README's example once did), so the receipt covers the file's bytes minus CR/LF. Still invalid."""
    from .errors import RequestRejected
    from .receipts import request_digest, verify_receipt

    if body is None or b"\n" not in body and b"\r" not in body:
        return ""
    try:
        claims = verify_receipt(token, jwks)
    except RequestRejected:
        return ""
    if claims["request_digest"] == request_digest(body.replace(b"\r", b"").replace(b"\n", b"")):
        return ("; it matches the file with its line breaks removed, as curl -d @FILE sends it: the body sent was "
                "not the file's exact bytes (send with --data-binary @FILE) / 回执对应去掉换行后的文件内容"
                "（curl -d 会删除换行，请用 --data-binary）")
    return ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway", description="Cross-region e-licence gateway (电子证照互认网关)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the gateway")
    s.add_argument("--demo", action="store_true", help="TEST trust framework and simulated issuers")
    s.add_argument("--port", type=int)
    s.add_argument("--host")
    s.add_argument("--config", help="TOML settings file")
    s.add_argument("--workers", type=int, default=None,
                   help="serving processes sharing the port (SO_REUSEPORT); default the workers setting (1)")
    s.set_defaults(func=_serve)
    d = sub.add_parser("demo", help="issuer simulator")
    dsub = d.add_subparsers(dest="demo_cmd", required=True)
    di = dsub.add_parser("issue", help="print a simulated licence as {licence, encoding}")
    di.add_argument("--region", required=True, help="GB/T 2260 region code, e.g. 330500")
    di.add_argument("--type", help="licence type key, e.g. id_card (default: the region's first)")
    di.add_argument("--state", default="valid", help="valid|expired|not-yet-valid|revoked|suspended|tampered|"
                                                     "wrong-issuer|unknown-issuer|malformed")
    dsub.add_parser("cases", help="list the simulator's cases")
    dt_ = dsub.add_parser("token", help="print a bearer token of the demo partner (TEST keys)")
    dt_.add_argument("--scope", help="space-separated scopes (default: all the partner may request)")
    dt_.add_argument("--client-id", default="demo-partner", help="TEST partner in the registry")
    dt_.add_argument("--config", help="TOML settings file (partners_dir, gateway_key, token_endpoint)")
    dt_.add_argument("--json", action="store_true", help="print the whole token response")
    dc = dsub.add_parser("corpus", help="write a load-test corpus (JSONL, see load/README.md)")
    from .corpus import add_corpus_arguments

    add_corpus_arguments(dc)
    d.set_defaults(func=_demo)
    sp = sub.add_parser("specs", help="region specs and catalogues")
    spsub = sp.add_subparsers(dest="specs_cmd", required=True)
    spsub.add_parser("check", help="validate every spec and catalogue")
    sp.set_defaults(func=_specs)
    t = sub.add_parser("trust", help="signed trust lists (operator tooling)")
    tsub = t.add_subparsers(dest="trust_cmd", required=True)
    ts = tsub.add_parser("sign", help="sign a trust list document with the operator's private key")
    ts.add_argument("--key", required=True, help="operator private key (PEM, Ed25519 or P-256)")
    ts.add_argument("--in", dest="input", required=True, help="trust list document (JSON)")
    ts.add_argument("--out", required=True, help="where to write the signed trust list")
    ti = tsub.add_parser("inspect", help="summarise a signed trust list (the signature is NOT checked)")
    ti.add_argument("file")
    tv = tsub.add_parser("verify", help="check the signature with pinned keys, the dates and (with --held) rollback")
    tv.add_argument("file")
    tv.add_argument("--pubkey", required=True, action="append", help="pinned operator public key (PEM); repeatable")
    tv.add_argument("--held", help="the signed list currently in force, or the gateway's held-version record "
                                   "(setting trust_state, var/trust-held.json), to check for rollback")
    tc = tsub.add_parser("check", help="list what expires within the warning window; exit 3 when anything does")
    tc.add_argument("file", nargs="?", help="the signed trust list (default: the setting trust_list)")
    tc.add_argument("--pubkey", action="append", help="pinned operator public key (PEM); repeatable "
                                                      "(default: the setting trust_operator_keys)")
    tc.add_argument("--days", type=int, help="the warning window in days (default: the setting trust_expiry_warn_days)")
    tc.add_argument("--config", help="TOML settings file (trust_list, trust_operator_keys, trust_expiry_warn_days)")
    t.set_defaults(func=_trust)
    r = sub.add_parser("receipt", help="verification receipts")
    rsub = r.add_subparsers(dest="receipt_cmd", required=True)
    rv = rsub.add_parser("verify", help="check a receipt's signature with the gateway's published keys")
    rv.add_argument("token", help="the receipt (compact JWS), or - to read it from stdin")
    src = rv.add_mutually_exclusive_group(required=True)
    src.add_argument("--jwks", help="the key set saved from GET /v1/keys")
    src.add_argument("--url", help="fetch the key set, e.g. http://127.0.0.1:8080/v1/keys")
    rv.add_argument("--body", help="the exact request body the receipt was issued for (checks its digest)")
    r.set_defaults(func=_receipt)
    sub.add_parser("audit", help="audit trail: verify | search | prune (see python -m gateway audit -h)")
    from .console.cli import add_staff_parser

    add_staff_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "audit":  # its own parser (gateway/audit/cli.py)
        from .audit import audit_cli

        return audit_cli(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # a bad setting, spec or catalogue: its message, exit 2, no traceback
        status = _refused(exc)
        if status is None:
            raise
        return status


if __name__ == "__main__":
    raise SystemExit(main())
