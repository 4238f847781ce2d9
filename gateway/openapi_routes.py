"""The OpenAPI description (``specs/openapi.yaml``, the source of truth) served as JSON at
``GET /v1/openapi.json`` and as a browsable page at ``GET /v1/docs`` (both public).

The docs page is self-contained: a small HTML file with inline CSS and JavaScript that
fetches ``/v1/openapi.json`` and renders operations, parameters, request bodies, responses
and schemas. Nothing is loaded from a CDN, so it works on an offline government network.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from .app import FEATURES

SPEC_PATH = Path(__file__).resolve().parent.parent / "specs" / "openapi.yaml"


class OpenAPIError(ValueError):
    """``specs/openapi.yaml`` is missing or not a mapping with ``openapi`` and ``paths``."""


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise OpenAPIError(f"{path}: {exc}") from None
    if not isinstance(doc, dict) or not str(doc.get("openapi", "")).startswith("3.1") or not isinstance(
            doc.get("paths"), dict):
        raise OpenAPIError(f"{path}: not an OpenAPI 3.1 document with paths")
    return doc


@lru_cache(maxsize=4)
def _spec_bytes(path: Path, mtime_ns: int) -> bytes:
    return orjson.dumps(load_spec(path))


def spec_json(path: Path = SPEC_PATH) -> bytes:
    """The spec as JSON bytes (re-read when the file changes)."""
    return _spec_bytes(path, path.stat().st_mtime_ns)


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=spec_json(), content_type="application/json",
                        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"})


async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_HTML, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "public, max-age=300",
                                 "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                                                            "style-src 'unsafe-inline'; connect-src 'self'"})


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/openapi.json", openapi_json)
    app.router.add_get("/v1/docs", docs_page)


if setup not in FEATURES:
    FEATURES.append(setup)


#: the browsable docs page: self-contained (inline CSS + JS, no CDN), renders /v1/openapi.json
DOCS_HTML = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>电子证照互认网关 API / e-licence gateway API</title>
<style>
body{font:14px/1.5 system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#1f4e79;color:#fff;padding:16px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;opacity:.85}main{display:flex;gap:16px;padding:16px 24px}
nav{flex:0 0 260px;position:sticky;top:8px;align-self:flex-start;max-height:95vh;overflow:auto}
nav a{display:block;color:#1f4e79;text-decoration:none;padding:2px 0;font-size:13px}
nav h3{margin:12px 0 4px;font-size:13px;text-transform:uppercase;color:#667}
section{flex:1;min-width:0}.op{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:0 0 14px;padding:12px 16px}
.m{display:inline-block;min-width:56px;text-align:center;border-radius:4px;color:#fff;font-weight:600;padding:1px 6px;margin-right:8px}
.get{background:#2f7d32}.post{background:#1565c0}.put{background:#ef6c00}.delete{background:#c62828}.patch{background:#6a1b9a}
code,pre{font-family:ui-monospace,Consolas,monospace;font-size:12.5px}pre{background:#f0f2f5;padding:8px;overflow:auto;border-radius:4px}
table{border-collapse:collapse;width:100%;margin:6px 0}td,th{border:1px solid #e3e6ea;padding:4px 6px;text-align:left;vertical-align:top}
.scope{background:#fff3cd;border-radius:3px;padding:0 4px;font-size:12px}.muted{color:#667}
h4{margin:10px 0 4px}#q{width:100%;box-sizing:border-box;padding:6px;margin-bottom:8px}
</style>
</head>
<body>
<header><h1 id="title">API</h1><p id="desc"></p></header>
<main>
<nav><input id="q" placeholder="filter / 筛选" aria-label="filter"><div id="toc"></div></nav>
<section id="ops"><p class="muted">loading /v1/openapi.json ...</p></section>
</main>
<script>
"use strict";
const el = (tag, attrs, ...kids) => { const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k ?? "")));
  return e; };
const refName = r => r.split("/").pop();
function schemaNode(s) {
  if (!s) return el("span", {class: "muted"}, "-");
  if (s.$ref) return el("a", {href: "#schema-" + refName(s.$ref)}, refName(s.$ref));
  return el("pre", {}, JSON.stringify(s, null, 2));
}
function render(spec) {
  document.getElementById("title").textContent = spec.info.title + "  v" + spec.info.version;
  document.getElementById("desc").textContent = (spec.info.description || "").split("\\n")[0];
  const toc = document.getElementById("toc"), ops = document.getElementById("ops");
  ops.textContent = ""; toc.append(el("h3", {}, "operations"));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of ["get", "post", "put", "patch", "delete"]) {
      const op = item[method]; if (!op) continue;
      const id = "op-" + (op.operationId || method + path);
      toc.append(el("a", {href: "#" + id, "data-k": (method + " " + path + " " + (op.summary || "")).toLowerCase()},
                    method.toUpperCase() + " " + path));
      const box = el("div", {class: "op", id: id, "data-k": (method + " " + path + " " + (op.summary || "")).toLowerCase()},
        el("div", {}, el("span", {class: "m " + method}, method.toUpperCase()), el("code", {}, path)),
        el("p", {}, el("b", {}, op.summary || ""), " ", op.description || ""));
      const sec = op.security === undefined ? spec.security : op.security;
      if (sec && sec.length) {
        const scopes = sec.flatMap(s => Object.values(s).flat());
        box.append(el("p", {}, "auth: bearer ", ...scopes.map(s => el("span", {class: "scope"}, s))));
      } else box.append(el("p", {class: "muted"}, "public (no token)"));
      const params = [...(item.parameters || []), ...(op.parameters || [])];
      if (params.length) {
        const t = el("table", {}, el("tr", {}, el("th", {}, "parameter"), el("th", {}, "in"), el("th", {}, "schema"),
                                     el("th", {}, "description")));
        for (const p of params) t.append(el("tr", {}, el("td", {}, el("code", {}, p.name + (p.required ? " *" : ""))),
                                           el("td", {}, p.in), el("td", {}, schemaNode(p.schema)),
                                           el("td", {}, p.description || "")));
        box.append(el("h4", {}, "parameters"), t);
      }
      if (op.requestBody) for (const [ct, media] of Object.entries(op.requestBody.content || {}))
        box.append(el("h4", {}, "request body (" + ct + ")"), schemaNode(media.schema));
      const rt = el("table", {}, el("tr", {}, el("th", {}, "status"), el("th", {}, "description"), el("th", {}, "body")));
      for (const [code, r0] of Object.entries(op.responses || {})) {
        const r = r0.$ref ? spec.components.responses[refName(r0.$ref)] : r0;
        const bodies = Object.entries(r.content || {}).map(([ct, m]) => el("div", {}, el("span", {class: "muted"}, ct + ": "),
                                                                            schemaNode(m.schema)));
        rt.append(el("tr", {}, el("td", {}, code), el("td", {}, r.description || ""), el("td", {}, ...bodies)));
      }
      box.append(el("h4", {}, "responses"), rt);
      ops.append(box);
    }
  }
  toc.append(el("h3", {}, "schemas"));
  for (const [name, s] of Object.entries((spec.components || {}).schemas || {})) {
    toc.append(el("a", {href: "#schema-" + name, "data-k": name.toLowerCase()}, name));
    ops.append(el("div", {class: "op", id: "schema-" + name, "data-k": name.toLowerCase()},
                  el("h4", {}, name), el("p", {}, s.description || ""), el("pre", {}, JSON.stringify(s, null, 2))));
  }
  document.getElementById("q").addEventListener("input", ev => {
    const q = ev.target.value.toLowerCase();
    for (const n of document.querySelectorAll("[data-k]")) n.style.display = n.dataset.k.includes(q) ? "" : "none";
  });
}
fetch("openapi.json").then(r => r.json()).then(render).catch(e => {
  document.getElementById("ops").textContent = "cannot load openapi.json: " + e; });
</script>
</body>
</html>
"""
