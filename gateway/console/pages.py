"""Server-rendered HTML of the console (pure functions: data in, escaped HTML out).

Pages carry no inline script or style (the Content-Security-Policy forbids both); the
dynamic check page is driven by ``static/console.js``, which reads the UI strings from a
``<script type="application/json">`` block rendered here from :mod:`.i18n`.
"""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any, Iterable

import orjson

from ..core import CHINA_TZ
from .accounts import PERMISSIONS
from .i18n import t, ui_strings
from .metrics import sparkline_svg
from .sessions import Session

ASSET_VERSION = "4"
CURRENT = ' aria-current="page"'


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def local_time(iso: str | None, lang: str) -> str:
    """A case's UTC time (ISO 8601) as people at the window read it: Beijing time to the second, saying so."""
    if not iso:
        return "-"
    at = dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(CHINA_TZ)
    return at.strftime("%Y-%m-%d %H:%M:%S") + t(lang, "beijing_time")


def layout(lang: str, title: str, body: str, session: Session | None = None, active: str = "",
           extra_head: str = "", path: str = "/console/") -> str:
    other = "en" if lang == "zh" else "zh"
    nav = ""
    if session is not None:
        perms = PERMISSIONS.get(session.role, frozenset())
        links = [("check", "/console/", "nav_check"), ("status", "/console/status", "nav_status"),
                 ("audit", "/console/audit", "nav_audit")]
        items = "".join(
            f'<li><a href="{href}"{CURRENT if key == active else ""}>{_e(t(lang, label))}</a></li>'
            for key, href, label in links if key in perms)
        nav = (f'<nav aria-label="{_e(t(lang, "app_short"))}"><ul class="nav">{items}</ul></nav>'
               f'<div class="who"><span>{_e(t(lang, "signed_in_as"))}{_e(t(lang, "colon"))}<strong id="who-user">{_e(session.username)}'
               f'</strong> · {_e(t(lang, "role_" + session.role))} · {_e(t(lang, "window"))} {_e(session.window)}</span>'
               f'<form method="post" action="/console/logout" class="inline">'
               f'<input type="hidden" name="csrf_token" value="{_e(session.csrf)}">'
               f'<button type="submit" class="link" id="logout">{_e(t(lang, "logout"))}</button></form></div>')
    csrf_meta = f'<meta name="csrf-token" content="{_e(session.csrf)}">' if session else ""
    return (
        f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">{csrf_meta}'
        f'<title>{_e(title)} · {_e(t(lang, "app_short"))}</title>'
        f'<link rel="stylesheet" href="/console/static/console.css?v={ASSET_VERSION}">{extra_head}</head><body>'
        f'<a class="skip" href="#main">{_e(t(lang, "skip_to_main"))}</a>'
        f'<header class="top"><div class="brand">{_e(t(lang, "app_title"))}</div>{nav}'
        f'<a class="lang" id="lang-switch" href="{_e(path)}?lang={other}" lang="{"en" if other == "en" else "zh-CN"}" '
        f'title="{_e(t(lang, "lang_switch_label"))}">{_e(t(lang, "lang_switch"))}</a></header>'
        f'<main id="main" tabindex="-1">{body}</main></body></html>')


def login_page(lang: str, nonce_token: str, message: str = "", demo: bool = False, username: str = "") -> str:
    msg = f'<p class="alert" role="alert" id="login-message">{_e(message)}</p>' if message else ""
    # the message belongs to the fields (read with them), and a sign-in that kept the user name has the
    # cursor where the clerk types next: the password
    said = ' aria-describedby="login-message"' if message else ""
    user_focus, password_focus = ("", " autofocus") if username else (" autofocus", "")
    note = f'<p class="note">{_e(t(lang, "demo_note"))}</p>' if demo else ""
    body = (f'<section class="card narrow"><h1>{_e(t(lang, "login_title"))}</h1>{msg}'
            f'<form method="post" action="/console/login" id="login-form">'
            f'<input type="hidden" name="csrf_token" value="{_e(nonce_token)}">'
            f'<label for="username">{_e(t(lang, "username"))}</label>'
            f'<input id="username" name="username" autocomplete="username" required{user_focus}{said} value="{_e(username)}">'
            f'<label for="password">{_e(t(lang, "password"))}</label>'
            f'<input id="password" name="password" type="password" autocomplete="current-password" required{password_focus}{said}>'
            f'<button type="submit" id="login-button">{_e(t(lang, "login"))}</button></form>{note}</section>')
    return layout(lang, t(lang, "login_title"), body, path="/console/login")


def check_page(lang: str, session: Session) -> str:
    strings = orjson.dumps(ui_strings(lang)).decode().replace("<", "\\u003c")
    s = lambda k: _e(t(lang, k))  # noqa: E731
    body = f'''
<script type="application/json" id="console-strings">{strings}</script>
<div class="grid">
<div class="steps">
<section class="card" aria-labelledby="step-item-h"><h2 id="step-item-h">{s("step_item")}</h2>
  <div id="item-picker">
    <label for="item-search">{s("item_search")}</label>
    <input id="item-search" type="search" autocomplete="off" role="combobox" aria-expanded="false"
      aria-controls="item-results" aria-autocomplete="list" aria-describedby="item-search-hint">
    <p class="hint" id="item-search-hint">{s("item_search_hint")}</p>
    <ul id="item-results" role="listbox" aria-label="{s("item_search")}"></ul>
  </div>
  <div id="item-chosen" hidden><p>{s("item_chosen")}{s("colon")}<strong id="item-name"></strong> <span id="item-code" class="code"></span></p>
    <p class="hint">{s("department")}{s("colon")}<span id="item-dept"></span></p>
    <button type="button" class="secondary" id="item-change">{s("item_change")}</button></div>
</section>
<section class="card" aria-labelledby="step-app-h"><h2 id="step-app-h">{s("step_applicant")}</h2>
  <form id="applicant-form" novalidate>
    <label for="applicant-type">{s("applicant_type")}</label>
    <select id="applicant-type"><option value="111">{s("applicant_type_111")}</option>
      <option value="001">{s("applicant_type_001")}</option></select>
    <label for="applicant-code">{s("applicant_code")}</label>
    <input id="applicant-code" autocomplete="off" spellcheck="false" maxlength="18" inputmode="text"
      aria-describedby="applicant-hint applicant-msg" disabled>
    <p class="hint" id="applicant-hint">{s("applicant_hint")}</p>
    <p id="applicant-msg" class="msg" aria-live="polite"></p>
    <button type="submit" id="applicant-confirm" disabled>{s("applicant_confirm")}</button>
    <button type="button" class="secondary" id="applicant-change" hidden>{s("applicant_change")}</button>
  </form>
</section>
<section class="card" aria-labelledby="step-lic-h"><h2 id="step-lic-h">{s("step_licences")}</h2>
  <form id="scan-form" novalidate>
    <label for="scan-input">{s("scan_label")}</label>
    <textarea id="scan-input" rows="3" spellcheck="false" aria-describedby="scan-hint busy" disabled></textarea>
    <p class="hint" id="scan-hint">{s("scan_hint")}</p>
    <button type="submit" id="scan-submit" disabled>{s("verify")}</button>
  </form>
  <form id="upload-form" novalidate>
    <label for="upload-input">{s("upload_label")}</label>
    <input id="upload-input" type="file" aria-describedby="busy" multiple accept=".ofd,.json,.xml,.jws,.txt,application/json,application/xml" disabled>
    <button type="submit" id="upload-submit" disabled>{s("upload")}</button>
  </form>
  <p id="busy" class="msg" aria-live="polite"></p>
  <form id="fetch-form" class="fetch" novalidate aria-labelledby="fetch-h">
    <h3 id="fetch-h">{s("fetch_title")}</h3>
    <p class="hint" id="fetch-hint">{s("fetch_hint")}</p>
    <label for="fetch-cause">{s("fetch_cause")}</label>
    <input id="fetch-cause" maxlength="200" autocomplete="off" aria-describedby="fetch-hint" disabled>
    <label class="check"><input type="checkbox" id="fetch-consent" aria-describedby="fetch-msg" disabled> {s("fetch_consent")}</label>
    <button type="submit" id="fetch-submit" aria-describedby="fetch-msg" disabled>{s("fetch_submit")}</button>
    <p id="fetch-msg" class="msg" aria-live="polite"></p>
    <ul id="fetch-regions" class="fetch-regions"></ul>
  </form>
</section>
</div>
<div class="results">
<section class="card" aria-labelledby="check-h"><h2 id="check-h">{s("checklist_title")}</h2>
  <ul id="checklist" class="checklist"></ul>
  <p id="summary" class="summary" aria-live="polite"></p>
  <p><a id="print-receipt" class="button" href="#" target="_blank" rel="noopener" hidden>{s("print_receipt")}</a></p>
</section>
<section aria-labelledby="cards-h"><h2 id="cards-h">{s("cards_title")}</h2>
  <p id="card-news" class="sr-only" aria-live="polite"></p>
  <div id="cards"><p class="hint" id="no-cards">{s("no_cards")}</p></div>
</section>
</div></div>'''
    head = f'<script src="/console/static/console.js?v={ASSET_VERSION}" defer></script>'
    return layout(lang, t(lang, "nav_check"), body, session, "check", head)


def message_page(lang: str, title: str, message: str, session: Session | None = None) -> str:
    return layout(lang, title, f'<section class="card narrow"><h1>{_e(title)}</h1>'
                               f'<p class="alert" role="alert">{_e(message)}</p></section>', session)


def receipt_page(lang: str, session: Session, view: dict[str, Any], jws: str, qr: str, digest: str, kid: str) -> str:
    s = lambda k: _e(t(lang, k))  # noqa: E731
    rows = "".join(
        f'<tr><td>{_e(c["n"])}</td><td>{_e(c["type_name"] or "-")}</td><td>{_e((c["region"] or {}).get("name", "-"))}'
        f'</td><td data-source="">{_e(c["source"])}</td><td class="verdict-{_e(c["verdict"])}">{_e(c["verdict_text"])}</td>'
        f'<td>{_e("; ".join(r["message"] for r in c["reasons"]))}</td></tr>' for c in view["cards"])
    checklist = "".join(
        f'<li class="{"ok" if r["satisfied"] else "no"}"><span aria-hidden="true">{"✔" if r["satisfied"] else "✘"}</span> '
        f'{_e(r["label"])}{s("paren_open")}{s("mandatory") if r["mandatory"] else s("optional")}{s("paren_close")} — '
        f'{s("satisfied") if r["satisfied"] else s("missing")}</li>' for r in view["checklist"])
    body = f'''<article class="receipt" id="receipt">
<h1>{s("receipt_title")}</h1>
<dl class="facts">
<dt>{s("receipt_case")}</dt><dd id="receipt-id">{_e(view["id"])}</dd>
<dt>{s("receipt_item")}</dt><dd id="receipt-item">{_e(view["item"]["code"])} {_e(view["item"]["name"])}</dd>
<dt>{s("receipt_applicant")}</dt><dd>{_e(view["applicant"]["masked"])}</dd>
<dt>{s("receipt_clerk")}</dt><dd>{_e(view["operator"])} · {s("window")} {_e(view["window"])}</dd>
<dt>{s("receipt_time")}</dt><dd id="receipt-time">{_e(local_time(view["checked_at"], lang))}</dd>
</dl>
<h2>{s("checklist_title")}</h2><ul class="checklist" id="receipt-checklist">{checklist}</ul>
<p class="summary" id="receipt-summary">{_e(view["summary"])}</p>
<h2>{s("receipt_licences")}</h2>
<table><thead><tr><th>#</th><th>{s("licence_type")}</th><th>{s("region")}</th><th>{s("source")}</th><th>{s("col_verdict")}</th>
<th>{s("reason")}</th></tr></thead><tbody>{rows}</tbody></table>
<figure class="qr-box" id="receipt-qr">{qr}<figcaption>{s("receipt_qr")}</figcaption></figure>
<p class="small">{s("receipt_digest")}{s("colon")}<code id="receipt-digest">{_e(digest)}</code><br>
{s("receipt_signed_by")}{s("colon")}<code>{_e(kid)}</code></p>
<details><summary>JWS</summary><code class="jws" id="receipt-jws">{_e(jws)}</code></details>
<p class="noprint"><button type="button" id="print-button">{s("receipt_print")}</button></p>
</article>'''
    head = f'<script src="/console/static/receipt.js?v={ASSET_VERSION}" defer></script>'
    return layout(lang, t(lang, "receipt_title"), body, session, "check", head, path=f"/console/receipt/{view['id']}")


def expiry_note(lang: str, kind: str, not_after: dt.datetime, days_left: int) -> str:
    """The amber note of one piece of trust material expiring soon (kind as
    :data:`gateway.trust.EXPIRY_KINDS`), its time in Beijing time to the minute."""
    at = not_after.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") + t(lang, "beijing_time")
    left = (t(lang, "expiry_days_left").replace("{days}", str(days_left)) if days_left > 1
            else t(lang, "expiry_one_day_left") if days_left == 1 else t(lang, "expiry_under_a_day"))
    return (t(lang, "expiry_note").replace("{kind}", t(lang, "expiry_kind_" + kind)).replace("{date}", at)
            .replace("{left}", left))


def _expiry_notes(lang: str, items: Iterable[dict[str, Any]], element: str = "span") -> str:
    return "".join(f'<{element} class="warn expiry-note" data-kind="{_e(m["kind"])}">'
                   f'{_e(expiry_note(lang, m["kind"], m["not_after"], m["days_left"]))}</{element}>' for m in items)


def status_page(lang: str, session: Session, trust_version: Any, rows: Iterable[dict[str, Any]],
                list_expiring: Iterable[dict[str, Any]] = ()) -> str:
    """``rows[i]["expiring"]`` and ``list_expiring``: the region's and the trust list's material expiring
    within ``trust_expiry_warn_days`` (kind, not_after, days_left), each shown as an amber note."""
    s = lambda k: _e(t(lang, k))  # noqa: E731
    body_rows = []
    for r in rows:
        st = r["status_list"]
        if st is None:
            st_text = f'<span class="bad">{s("absent")}</span>'
        else:
            st_text = (f'<span class="{"ok" if st["fresh"] else "bad"}">{s("fresh") if st["fresh"] else s("stale")}'
                       f'</span> v{_e(st["version"])} · {_e(st["age_seconds"])} {s("age_seconds")}')
        rate = "-" if r["error_rate"] is None else f'{r["error_rate"] * 100:.0f}%'
        label = f'{r["name"]}: {", ".join(str(v) for v in r["series"])}'
        body_rows.append(
            f'<tr data-region="{_e(r["code"])}"><th scope="row">{_e(r["name"])} <span class="code">{_e(r["code"])}</span></th>'
            f'<td>{_e(r["format"])}</td><td class="{"ok" if r["trust_state"] == "ok" else "bad"}">'
            f'{s("trust_" + r["trust_state"])}{_expiry_notes(lang, r.get("expiring", ()))}</td>'
            f'<td>{st_text}</td><td class="num">{_e(r["total"])}</td>'
            f'<td class="num">{_e(rate)}</td><td>{sparkline_svg(r["series"], label)}</td></tr>')
    body = (f'<section class="card"><h1>{s("status_title")}</h1><p>{s("status_trust_version")}{s("colon")}'
            f'<strong id="trust-version">{_e(trust_version if trust_version is not None else "-")}</strong></p>'
            f'{_expiry_notes(lang, list_expiring, "p")}'
            f'<table id="status-table"><thead><tr><th scope="col">{s("col_region")}</th><th scope="col">{s("col_format")}</th>'
            f'<th scope="col">{s("col_trust")}</th><th scope="col">{s("col_status_list")}</th>'
            f'<th scope="col">{s("col_count")}</th><th scope="col">{s("col_error_rate")}</th>'
            f'<th scope="col">{s("col_trend")}</th></tr></thead><tbody>{"".join(body_rows)}</tbody></table></section>')
    return layout(lang, t(lang, "nav_status"), body, session, "status", path="/console/status")


def audit_page(lang: str, session: Session, available: bool, records: list[dict[str, Any]], item: str = "") -> str:
    s = lambda k: _e(t(lang, k))  # noqa: E731
    if not available:
        inner = f'<p class="alert" role="status" id="audit-unavailable">{s("audit_unavailable")}</p>'
    else:
        rows = "".join(
            f'<tr><td>{_e(r.get("time"))}</td><td>{_e(r.get("operator"))}</td><td>{_e(r.get("item"))}</td>'
            f'<td>{_e(r.get("verdict"))}</td><td class="code">{_e(r.get("licence"))}</td></tr>' for r in records)
        inner = (f'<form method="get" action="/console/audit"><label for="audit-item">{s("audit_item")}</label>'
                 f'<input id="audit-item" name="item" value="{_e(item)}"><button type="submit">{s("audit_search")}'
                 f'</button></form><p class="hint">{s("audit_window_only")}</p>'
                 + (f'<table id="audit-table"><thead><tr><th>{s("col_time")}</th><th>{s("col_operator")}</th>'
                    f'<th>{s("col_item")}</th><th>{s("col_verdict")}</th><th>{s("col_licence")}</th></tr></thead>'
                    f'<tbody>{rows}</tbody></table>' if records else f'<p>{s("audit_none")}</p>'))
    return layout(lang, t(lang, "audit_title"), f'<section class="card"><h1>{s("audit_title")}</h1>{inner}</section>',
                  session, "audit", path="/console/audit")
