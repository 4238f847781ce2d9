"""Generate the 45 region spec files (specs/regions/<code>.toml) from regions.csv.

Run once to (re)create the modelled specs; the committed TOML files are the source of
truth, and an operator edits or replaces one file when a region's real interface
document becomes available (then set interface_status = "documented").

Usage: python specs/tools/gen_region_specs.py [--force] [--jws-only]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPECS = HERE.parent
VOCAB = {
    # pinyin initials, the style of many provincial 电子证照库 schemas
    "pinyin": {
        "identifier": "zzbs", "name": "zzmc", "type_code": "zzlxdm", "type_name": "zzlxmc", "number": "zzbh",
        "issuer_name": "zzbfjg", "issuer_code": "zzbfjgdm", "issue_date": "zzbfrq", "holder_name": "czzt",
        "holder_code": "czztdm", "holder_code_type": "czztdmlx", "valid_from": "yxqqsrq",
        "valid_until": "yxqjzrq", "area_code": "sdbm", "status_index": "ztsy",
    },
    # Chinese field names: GB/T 36903's metadata names as the reference lists them (facts §3, [thin];
    # official field codes [open]); 证照类型名称 and 状态索引 are not in that list: MODELLED
    "chinese": {
        "identifier": "证照标识", "name": "证照名称", "type_code": "证照类型代码", "type_name": "证照类型名称",
        "number": "证照编号", "issuer_name": "证照颁发机构", "issuer_code": "证照颁发机构代码",
        "issue_date": "证照颁发日期", "holder_name": "持证主体", "holder_code": "持证主体代码",
        "holder_code_type": "持证主体代码类型", "valid_from": "证照有效期起始日期",
        "valid_until": "证照有效期截止日期", "area_code": "证照所属管辖属地编码", "status_index": "状态索引",
    },
    # English camelCase, as some newer platforms expose
    "english": {
        "identifier": "licenceId", "name": "licenceName", "type_code": "typeCode", "type_name": "typeName",
        "number": "licenceNo", "issuer_name": "issuerName", "issuer_code": "issuerCode",
        "issue_date": "issueDate", "holder_name": "holderName", "holder_code": "holderCode",
        "holder_code_type": "holderCodeType", "valid_from": "validFrom", "valid_until": "validUntil",
        "area_code": "areaCode", "status_index": "statusIdx",
    },
}
SURFACE = {"pinyin": "zmxx", "chinese": "照面信息", "english": "surface"}
HOLDER_TYPES = {
    "numeric": {"111": "111", "001": "001", "414": "414", "516": "516", "511": "511", "999": "999"},
    "words": {"身份证": "111", "统一社会信用代码": "001", "普通护照": "414", "港澳通行证": "516",
              "台湾通行证": "511", "其他": "999"},
}
DATE_FORMATS = ["%Y-%m-%d", "%Y%m%d", "%Y年%m月%d日"]


def plan(code: str, province: str, group: str) -> dict:
    """The project's model of how each region's system differs (recorded in the spec)."""
    if province == "浙江省":
        return {"family": "sm2-json", "algorithms": ["SM2"], "vocab": "pinyin",
                "notes": "Zhejiang: licence fields as JSON with a detached SM2 data signature (DB33/T 2233 style)."}
    if province == "上海市":
        return {"family": "ofd-seal", "algorithms": ["SM2"], "vocab": "chinese",
                "notes": "Shanghai: national OFD file with a GB/T 38540 electronic seal."}
    if province == "江苏省":
        n = int(code[2:4])
        if n % 3 == 0:
            return {"family": "ofd-seal", "algorithms": ["SM2"], "vocab": "chinese",
                    "encoding": "gb18030" if n % 2 else "utf-8",
                    "notes": "Jiangsu (OFD cities): OFD file with a GB/T 38540 seal; licence data part in the "
                             "region's text encoding."}
        return {"family": "sm2-xml", "algorithms": ["SM2"], "vocab": "pinyin", "encoding": "gb18030" if n % 2 else "utf-8",
                "notes": "Jiangsu: XML licence data with an SM2 signature over the canonical byte form."}
    if province == "安徽省":
        n = int(code[2:4])
        if n % 2:
            return {"family": "jws", "algorithms": ["ES256"], "vocab": "english",
                    "notes": "Anhui (odd cities): JWS compact, ES256, REST platform."}
        return {"family": "sm2-xml", "algorithms": ["SM2"], "vocab": "chinese", "encoding": "gb18030",
                "notes": "Anhui (even cities): XML in GB 18030 with an SM2 signature."}
    # partner regions, each different
    return {
        "652929": {"family": "jws", "algorithms": ["EdDSA"], "vocab": "english",
                   "notes": "柯坪县 (Xinjiang partner): JWS compact signed with Ed25519."},
        "220600": {"family": "sm2-json", "algorithms": ["SM2"], "vocab": "chinese", "key_ref": "kid",
                   "notes": "白山市 (Jilin partner): JSON with Chinese field names and a detached SM2 signature."},
        "500102": {"family": "ofd-seal", "algorithms": ["SM2"], "vocab": "chinese", "signature_type": "Sign",
                   "notes": "涪陵区 (Chongqing partner): OFD with a plain SM2 digital signature (Type=Sign)."},
        "511600": {"family": "jws", "algorithms": ["ES256"], "vocab": "pinyin",
                   "notes": "广安市 (Sichuan partner): JWS compact, ES256, pinyin field names."},
    }[code]


def options(p: dict, idx: int) -> dict[str, str]:
    """Family-specific settings (see the family modules' docstrings)."""
    fam = p["family"]
    if fam in ("sm2-json", "sm2-xml"):
        return {
            # the simulator alternates the two signature forms the family accepts
            "signature_encoding": "raw" if idx % 2 else "der",
            # signing time inside the signed data: 签名时间, or its pinyin initials
            "signing_time_field": "签名时间" if p["vocab"] == "chinese" else "qmsj",
            # how the signature names its certificate: serial + region code, or thumbprint
            "key_ref": p.get("key_ref", "serial"),
        }
    if fam == "ofd-seal":
        return {"signature_type": p.get("signature_type", "Seal")}
    return {}


def render(row: dict, p: dict, idx: int) -> str:
    vocab = VOCAB[p["vocab"]]
    holder = HOLDER_TYPES["words" if idx % 2 else "numeric"]
    date_format = DATE_FORMATS[idx % 3] if p["family"] != "ofd-seal" else "%Y-%m-%d"
    lines = [
        f"# Region spec: {row['name']} ({row['code']}), {row['province']}.",
        "# MODELLED: the region's real interface document is not available to the project;",
        "# this file is the project's model of it and is replaced when the document is.",
        f'code = "{row["code"]}"',
        f'name = "{row["name"]}"',
        f'family = "{p["family"]}"',
        "algorithms = [" + ", ".join(f'"{a}"' for a in p["algorithms"]) + "]",
        f'text_encoding = "{p.get("encoding", "utf-8")}"',
        f'date_format = "{date_format}"',
        'interface_status = "modelled"',
        f'notes = "{p["notes"]}"',
        'licence_types = ["*"]',
        "",
        "[fields]  # canonical field -> this region's field name",
    ]
    lines += [f'{k} = "{v}"' for k, v in vocab.items()]
    lines += ["", "[holder_code_types]  # this region's vocabulary -> GB/T 36903 holder code type"]
    lines += [f'"{k}" = "{v}"' for k, v in holder.items()]
    lines += ["", "[surface]", f'container = "{SURFACE[p["vocab"]]}"', ""]
    opts = options(p, idx)
    if opts:
        lines += ["[options]  # family-specific settings (see adapters/<family>.py)"]
        lines += [f'{k} = "{v}"' for k, v in opts.items()] + [""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    jws_only = "--jws-only" in argv  # bootstrap: every region on the JWS family
    out = SPECS / "regions"
    out.mkdir(exist_ok=True)
    with (SPECS / "regions.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for idx, row in enumerate(rows):
        path = out / f"{row['code']}.toml"
        if path.exists() and "--force" not in argv:
            continue
        p = plan(row["code"], row["province"], row["group"])
        if jws_only and p["family"] != "jws":
            p = {**p, "family": "jws", "algorithms": ["ES256"], "encoding": "utf-8",
                 "notes": p["notes"] + " (bootstrap: served as JWS until its own family lands)"}
        path.write_text(render(row, p, idx), encoding="utf-8")
    print(f"{len(rows)} region specs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
