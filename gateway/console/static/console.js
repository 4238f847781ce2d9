// Service-window console: item search, applicant ID, scan / upload / paste, result cards and checklist.
// Plain browser JavaScript written for this project: no library, no build step, works offline.
// All text comes from the server's i18n table (the #console-strings JSON block); data from the
// server is inserted with textContent only.
"use strict";
(() => {
  const S = JSON.parse(document.getElementById("console-strings").textContent);
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  const state = { item: null, caseId: null, results: [], active: -1, searchSeq: 0 };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }

  async function call(method, url, body) {
    const opts = { method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-CSRF-Token"] = CSRF;
      opts.body = JSON.stringify(body);
    }
    let resp;
    try { resp = await fetch(url, opts); }
    catch (e) { throw new Error(S.error_network); }  // no answer at all (network down, gateway stopped): not the browser's English text
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      const zh = document.documentElement.lang.startsWith("zh");
      let msg = S.error_generic;
      if (resp.status === 401) msg = S.error_session;
      else if (data && (data.title_zh || data.title)) msg = (zh ? data.title_zh : data.title) || msg;
      // a detail the console wrote for the clerk, "中文 / English", says more than the title
      const detail = data && typeof data.detail === "string" ? data.detail : "";
      const cut = detail.indexOf(" / ");
      if (cut > 0 && /^[\u3400-\u9fff]/.test(detail)) msg = zh ? detail.slice(0, cut) : detail.slice(cut + 3);
      throw new Error(msg);
    }
    return data;
  }

  // --- check digits (the same rules as gateway/identifiers.py) -------------------------
  function citizenIdState(code) {
    if (!/^[0-9]{0,17}[0-9X]?$/.test(code)) return "bad";
    if (code.length < 18) return "short";
    const w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum = 0;
    for (let i = 0; i < 17; i++) sum += Number(code[i]) * w[i];
    return "10X98765432"[sum % 11] === code[17] ? "ok" : "bad";
  }
  const USCC = "0123456789ABCDEFGHJKLMNPQRTUWXY";
  function usccState(code) {
    for (const c of code) if (!USCC.includes(c)) return "bad";
    if (code.length < 18) return "short";
    const w = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
    let sum = 0;
    for (let i = 0; i < 17; i++) sum += USCC.indexOf(code[i]) * w[i];
    return USCC[(31 - (sum % 31)) % 31] === code[17] ? "ok" : "bad";
  }

  // --- step 1: item ----------------------------------------------------------------------
  const search = $("item-search"), list = $("item-results");
  let timer = null;
  search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(runSearch, 120); });
  async function runSearch() {
    const q = search.value.trim();
    const seq = ++state.searchSeq;
    if (!q) { renderResults([]); return; }
    try {
      const data = await call("GET", "/console/api/items?q=" + encodeURIComponent(q));
      if (seq === state.searchSeq) { $("item-search-hint").textContent = S.item_search_hint; renderResults(data.items); }
    } catch (e) { $("item-search-hint").textContent = e.message; }
  }
  function renderResults(items) {
    state.results = items;
    state.active = items.length ? 0 : -1;
    list.replaceChildren();
    if (!items.length && search.value.trim()) list.append(el("li", { role: "option", "aria-disabled": "true" }, S.item_none));
    items.forEach((it, i) => {
      const li = el("li", { role: "option", id: "item-opt-" + i, "data-code": it.code, "aria-selected": String(i === 0) },
        el("span", { class: "code" }, it.code), " ", it.name);
      li.addEventListener("click", () => choose(i));
      list.append(li);
    });
    search.setAttribute("aria-expanded", String(items.length > 0));
    markActive();
  }
  function markActive() {
    [...list.children].forEach((li, i) => li.setAttribute("aria-selected", String(i === state.active)));
    if (state.active >= 0) {
      search.setAttribute("aria-activedescendant", "item-opt-" + state.active);
      const li = $("item-opt-" + state.active);
      if (li && li.scrollIntoView) li.scrollIntoView({ block: "nearest" });
    } else search.removeAttribute("aria-activedescendant");
  }
  search.addEventListener("keydown", (ev) => {
    const n = state.results.length;
    if (ev.key === "ArrowDown" && n) { state.active = (state.active + 1) % n; markActive(); ev.preventDefault(); }
    else if (ev.key === "ArrowUp" && n) { state.active = (state.active - 1 + n) % n; markActive(); ev.preventDefault(); }
    else if (ev.key === "Enter") { ev.preventDefault(); if (state.active >= 0) choose(state.active); }
    else if (ev.key === "Escape" && list.children.length) {
      // closes the list and keeps the text (a second Escape clears the search box, as the browser does);
      // the list closed this way is not a search that found nothing
      ev.preventDefault(); state.searchSeq++; clearTimeout(timer);
      state.results = []; state.active = -1; list.replaceChildren();
      search.setAttribute("aria-expanded", "false"); markActive();
    }
    else if (ev.key === "ArrowDown" && !n && search.value.trim()) { ev.preventDefault(); runSearch(); }  // opens it again
  });
  function choose(i) {
    const it = state.results[i];
    state.item = it;
    $("item-name").textContent = it.name;
    $("item-code").textContent = it.code;
    $("item-dept").textContent = it.department;
    $("item-picker").hidden = true;
    $("item-chosen").hidden = false;
    resetApplicant();
    $("applicant-code").disabled = false;
    $("applicant-code").focus();
  }
  $("item-change").addEventListener("click", () => {
    state.item = null;
    resetApplicant();
    $("applicant-code").disabled = true;
    $("item-chosen").hidden = true;
    $("item-picker").hidden = false;
    search.focus();
  });

  const FETCH_INPUTS = ["fetch-cause", "fetch-consent", "fetch-submit"];

  // --- step 2: applicant ----------------------------------------------------------------
  const code = $("applicant-code"), msg = $("applicant-msg"), ctype = $("applicant-type");
  function validateApplicant() {
    const v = code.value.toUpperCase().replace(/\s+/g, "");
    if (v !== code.value) code.value = v;
    const st = ctype.value === "111" ? citizenIdState(v) : usccState(v);
    code.setAttribute("aria-invalid", String(st === "bad"));
    msg.className = "msg " + (st === "ok" ? "ok" : st === "bad" ? "bad" : "");
    msg.textContent = !v ? "" : st === "ok" ? S.applicant_ok : st === "bad" ? S.applicant_bad : S.applicant_incomplete;
    $("applicant-confirm").disabled = st !== "ok";
    return st === "ok";
  }
  code.addEventListener("input", validateApplicant);
  ctype.addEventListener("change", validateApplicant);
  $("applicant-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (state.caseId || !state.item || !validateApplicant()) return;
    try {
      const view = await call("POST", "/console/api/cases",
        { item: state.item.code, applicant: { code_type: ctype.value, code: code.value } });
      caseOpened(view);
      $("fetch-cause").value = S.fetch_cause_default.replace("{item}", state.item.name);
      $("scan-input").focus();
    } catch (e) { msg.className = "msg bad"; msg.textContent = e.message; }
  });
  function caseOpened(view) {
    state.caseId = view.id;
    code.value = view.applicant.masked;          // masked once confirmed: the number is not shown again
    ctype.value = view.applicant.code_type;
    code.readOnly = true;
    ctype.disabled = true;
    code.removeAttribute("aria-invalid");
    $("applicant-confirm").hidden = true;
    $("applicant-change").hidden = false;
    for (const id of ["scan-input", "scan-submit", "upload-input", "upload-submit", ...FETCH_INPUTS]) $(id).disabled = false;
    $("fetch-consent").checked = false;
    keepCaseAcrossLanguages(view.id);
    render(view);
  }
  // the language switch reloads the page: it carries the open case (its id, in the fragment, never
  // sent to the server) so the clerk finds the case, its cards and its receipt in the other language
  function keepCaseAcrossLanguages(id) {
    const link = $("lang-switch");
    if (link) link.href = link.href.split("#")[0] + (id ? "#case=" + encodeURIComponent(id) : "");
  }
  async function restoreCase() {
    const m = /^#case=([A-Za-z0-9_-]+)$/.exec(location.hash);
    if (!m) return;
    history.replaceState(null, "", location.pathname + location.search);
    try {
      const view = await call("GET", "/console/api/cases/" + encodeURIComponent(m[1]));
      state.results = [view.item];
      choose(0);
      caseOpened(view);
      $("fetch-cause").value = S.fetch_cause_default.replace("{item}", view.item.name);
      $("scan-input").focus();
    } catch (e) { /* a case of another sign-in, or gone with a restart: start afresh */ }
  }
  function resetApplicant() {
    state.caseId = null;
    keepCaseAcrossLanguages(null);
    code.value = ""; code.readOnly = false; ctype.disabled = false;
    msg.textContent = ""; msg.className = "msg";
    $("applicant-confirm").hidden = false; $("applicant-confirm").disabled = true;
    $("applicant-change").hidden = true;
    for (const id of ["scan-input", "scan-submit", "upload-input", "upload-submit", ...FETCH_INPUTS]) $(id).disabled = true;
    $("fetch-consent").checked = false; $("fetch-cause").value = "";
    $("fetch-msg").textContent = ""; $("fetch-regions").replaceChildren();
    $("checklist").replaceChildren(); $("summary").textContent = "";
    $("print-receipt").hidden = true;
    $("cards").replaceChildren(el("p", { class: "hint", id: "no-cards" }, S.no_cards));
  }
  $("applicant-change").addEventListener("click", () => { resetApplicant(); code.focus(); });

  // --- step 3: licences -------------------------------------------------------------------
  const scan = $("scan-input"), busy = $("busy");
  async function submitLicence(licence, encoding, source) {
    busy.className = "msg"; busy.textContent = S.checking;
    try {
      const view = await call("POST", "/console/api/cases/" + encodeURIComponent(state.caseId) + "/licences",
        { licence, encoding, source });
      busy.textContent = "";
      render(view, true);
      return true;
    } catch (e) {
      busy.className = "msg bad"; busy.textContent = e.message;
      reveal(busy);  // below the upload form: on a small or zoomed screen out of sight under the scan box
      return false;
    }
  }
  // bring an element that has just changed into sight if it is not (the focus stays where it is); one
  // taller than the window shows its top, where a card's verdict is
  function reveal(node) {
    const r = node.getBoundingClientRect();
    if (r.top >= 0 && r.bottom <= window.innerHeight) return;
    node.scrollIntoView({ block: r.height <= window.innerHeight ? "nearest" : "start" });
  }
  scan.addEventListener("keydown", (ev) => {
    // a scanner types the licence and ends with Enter; Shift+Enter keeps a new line when pasting by hand
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("scan-form").requestSubmit(); }
  });
  $("scan-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = scan.value.trim();
    if (!text || !state.caseId) return;
    // a file's bytes pasted as base64 (an OFD package, a GB 18030 XML licence) are sent as base64; a
    // JWS has dots, JSON and XML open with { and <, so none of them is read so
    const b64 = text.replace(/\s+/g, "");
    const base64 = /^[A-Za-z0-9+/]+={0,2}$/.test(b64) && b64.length % 4 === 0 && b64.length >= 64;
    // the text stays until the gateway has answered for it: a failed request must not lose a pasted licence
    if (await submitLicence(base64 ? b64 : text, base64 ? "base64" : "utf-8", "scan") && scan.value.trim() === text) scan.value = "";
    scan.focus({ preventScroll: true });  // the verdict (or the error) brought into sight stays in sight
  });
  function toBase64(buf) {
    const bytes = new Uint8Array(buf);
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(bin);
  }
  $("upload-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("upload-input");
    for (const file of input.files) await submitLicence(toBase64(await file.arrayBuffer()), "base64", "upload");
    input.value = "";
    scan.focus({ preventScroll: true });
  });

  // fetch from the issuing regions (the federated query), with the applicant's consent
  $("fetch-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!state.caseId) return;
    const fmsg = $("fetch-msg"), submit = $("fetch-submit");
    fmsg.className = "msg"; fmsg.textContent = S.fetching;
    $("fetch-regions").replaceChildren();
    submit.disabled = true;
    try {
      const view = await call("POST", "/console/api/cases/" + encodeURIComponent(state.caseId) + "/fetch",
        { use_cause: $("fetch-cause").value, consent: $("fetch-consent").checked });
      render(view, true);
      renderFetch(view.fetch, view.complete);
      // the button had the focus and was disabled while the regions were asked, which left the focus on
      // the page itself: ready for the next scan, as after a scan or an upload
      submit.disabled = !state.caseId;
      scan.focus({ preventScroll: true });  // the new cards, brought into sight above, stay in sight
    } catch (e) {
      fmsg.className = "msg bad"; fmsg.textContent = e.message;
      submit.disabled = !state.caseId;
      // back where the clerk can put it right (the consent box when it was not ticked)
      ($("fetch-consent").checked ? submit : $("fetch-consent")).focus();
    }
  });
  function renderFetch(f, complete) {
    const fmsg = $("fetch-msg");
    if (!f.regions.length) {  // nobody asked: all met, or what is missing cannot be fetched by the applicant's ID
      fmsg.className = "msg " + (complete ? "ok" : "bad");
      fmsg.textContent = complete ? S.fetch_nothing : S.fetch_unfetchable;
      return;
    }
    fmsg.className = "msg " + (f.added ? "ok" : "bad");
    fmsg.textContent = f.added ? "" : S.fetch_none_added;
    if (!f.complete) fmsg.textContent = (fmsg.textContent ? fmsg.textContent + S.sentence_gap : "") + S.fetch_incomplete;
    $("fetch-regions").replaceChildren(...f.regions.map((r) => {
      const zh = document.documentElement.lang.startsWith("zh");
      const parts = [S["fetch_status_" + r.status] || r.status];
      if (r.added) parts.push(S.fetch_added.replace("{n}", r.added));
      if (r.already) parts.push(S.fetch_already.replace("{n}", r.already));
      if (r.over_limit) parts.push(S.fetch_over_limit.replace("{n}", r.over_limit));
      if (r.rejected) parts.push(S.fetch_rejected.replace("{n}", r.rejected));
      const ok = r.status === "ok" || r.status === "not_found";
      return el("li", { class: r.added ? "ok" : ok ? "" : "warn", "data-region": r.region, "data-status": r.status },
        r.name + S.paren_open + r.region + S.paren_close + S.colon + parts.join(zh ? "，" : ", "));
    }));
  }

  // --- rendering --------------------------------------------------------------------------
  function render(view, revealNew) {
    const cl = $("checklist");
    cl.replaceChildren(...view.checklist.map((r) => el("li", { class: r.satisfied ? "ok" : "no", "data-requirement": r.id },
      el("span", { class: "tick", "aria-hidden": "true" }, r.satisfied ? "✔" : "✘"),
      r.label + S.paren_open + (r.mandatory ? S.mandatory : S.optional) + S.paren_close + " — " + (r.satisfied ? S.satisfied : S.missing)
      + (r.by.length ? " #" + r.by.join(", #") : ""))));
    const summary = $("summary");
    summary.textContent = view.cards.length ? view.summary : "";
    summary.className = "summary " + (view.complete ? "ok" : "bad");
    const link = $("print-receipt");
    link.href = "/console/receipt/" + encodeURIComponent(view.id);
    link.hidden = !view.cards.length;
    const cards = $("cards");
    if (!view.cards.length) { cards.replaceChildren(el("p", { class: "hint", id: "no-cards" }, S.no_cards)); return; }
    // the cards are re-drawn on every change; a screen reader is told only what the new ones say
    // (#cards itself is not a live region: it read every card again after each scan)
    const shown = cards.querySelectorAll("article").length;
    $("card-news").textContent = view.cards.slice(shown).map((c) => "#" + c.n + " " + c.verdict_text).join(S.sentence_gap || "；");
    cards.replaceChildren(...view.cards.slice().reverse().map(card));
    // the newest card's verdict in sight after a scan, an upload or a fetch: on a small or zoomed screen it
    // is below the steps (one column) or scrolled away with the scan box
    if (revealNew && view.cards.length > shown) reveal(cards.querySelector("article"));
  }
  function card(c) {
    const facts = el("dl", { class: "facts" },
      el("dt", {}, S.licence_type), el("dd", {}, c.type_name || "-"),
      el("dt", {}, S.region), el("dd", {}, c.region ? c.region.name + S.paren_open + c.region.code + S.paren_close : "-"),
      el("dt", {}, S.issuer), el("dd", {}, c.issuer || "-"),
      el("dt", {}, S.source), el("dd", { "data-source": "" }, c.source || "-"));
    const node = el("article", { class: "card licence verdict-" + c.verdict, id: "card-" + c.n, "data-verdict": c.verdict,
                                 "aria-labelledby": "card-h-" + c.n },
      el("h3", { id: "card-h-" + c.n, class: "banner-" + c.banner }, "#" + c.n + " " + c.verdict_text),
      facts);
    if (c.fields.length) {
      node.append(el("h4", {}, S.fields_title),
        el("dl", { class: "facts fields" }, ...c.fields.flatMap((f) => [el("dt", {}, f.label), el("dd", { "data-field": f.name }, f.value)])));
    }
    for (const r of c.reasons) {
      node.append(el("div", { class: "reason", "data-reason": r.code },
        el("p", {}, el("strong", {}, S.reason + S.colon), r.message),
        r.advice ? el("p", {}, el("strong", {}, S.advice + S.colon), r.advice) : null));
    }
    if (c.note) node.append(el("p", { class: "hint" }, c.note));
    return node;
  }

  search.focus();
  restoreCase();
})();
