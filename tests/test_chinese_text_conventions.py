"""The Chinese a window clerk and a partner's engineer read: punctuation, terms, and what it says.

Every zh console string (gateway/console/i18n.py), every reason's message_zh (also the problem
``title_zh``) and advice_zh (gateway/errors.py), and the Chinese literals of the auth, console and
command-line modules that print or send it, are written as Chinese: full-width ，。：；（） inside
Chinese text, no space between two Chinese characters, the terms of 电子证照 / 政务服务 practice
used one way everywhere, and no Chinese text that says less (or something else) than its English twin.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from gateway import errors
from gateway.auth import OAuthError, TokenService, token_request_form
from gateway.auth.tokens import ASSERTION_TYPE_JWT_BEARER, MAX_JTI_CHARS
from gateway.console.i18n import ADVICE_EN, STRINGS, t

from .test_auth_support import assertion, token_service

ROOT = Path(__file__).resolve().parent.parent

#: a Chinese character, or Chinese (full-width) punctuation and quotes
_CJK = r"[\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff01-\uff5e“”‘’]"
_HAN = r"[\u3400-\u4dbf\u4e00-\u9fff]"
#: ASCII punctuation that is wrong directly next to Chinese text, and a space between two Chinese characters
_BAD = re.compile(rf"(?<={_CJK})[:,;()]|[:,;()](?={_CJK})|(?<={_HAN})[ \t\u00a0]+(?={_HAN})"
                  rf"|[ \t]+(?=[，。：；、）])|(?<=[，。：；、（])[ \t]+")

#: the source files whose Chinese string literals are shown to clerks, partners' engineers or operators
SOURCES = ("gateway/auth/tokens.py", "gateway/auth/middleware.py", "gateway/auth/shared.py",
           "gateway/console/routes.py", "gateway/console/fetch.py", "gateway/__main__.py",
           "gateway/audit/cli.py", "gateway/console/cli.py", "load/cli.py", "load/errors.py", "load/tokens.py")

#: where ASCII next to Chinese is right: Chinese quoted inside an English sentence, in English brackets
ALLOWED = {
    "Cross-region e-licence gateway (电子证照互认网关)",  # argparse description, an English sentence
    " (错误判定 / WRONG VERDICTS)",  # appended to the English "wrong verdicts N of M checked"
}


def _zh_texts() -> list[tuple[str, str]]:
    texts = [(f"i18n zh {key}", value) for key, value in STRINGS["zh"].items()]
    for r in errors.all_reasons():
        texts += [(f"{r.code}.message_zh (title_zh)", r.message_zh), (f"{r.code}.advice_zh", r.advice_zh)]
    return texts


def _source_literals() -> list[tuple[str, str]]:
    """Every string literal holding Chinese in SOURCES (docstrings left out; an f-string's literal parts)."""
    found: list[tuple[str, str]] = []
    for rel in SOURCES:
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and re.search(_HAN, node.value)):
                found.append((f"{rel}:{node.lineno}", node.value))
    return found


def _offences(texts: list[tuple[str, str]]) -> list[str]:
    out = []
    for where, text in texts:
        for allowed in ALLOWED:
            text = text.replace(allowed, "")
        out += [f"{where}: ...{text[max(0, m.start() - 6):m.end() + 6]!r}..." for m in _BAD.finditer(text)]
    return out


def test_console_and_reason_texts_use_full_width_punctuation_in_chinese() -> None:
    # a guard: no string broke the rule before this review either (checked: 0 offences), keep it so
    assert _offences(_zh_texts()) == []


def test_chinese_literals_of_the_auth_console_and_cli_modules_use_full_width_punctuation() -> None:
    literals = _source_literals()
    assert len(literals) > 40  # the scan finds them (OAuth messages, CLI prefixes, console details)
    assert _offences(literals) == []


def test_the_punctuation_check_catches_what_it_is_for() -> None:
    assert _offences([("x", "证照已过期,请换发")]) and _offences([("x", "发证机关:湖州")])
    assert _offences([("x", "持证主体(单位)")]) and _offences([("x", "证照 核验")])
    assert _offences([("x", "加入 ，")])
    assert not _offences([("x", "加入 {n} 份（未重复加入）"), ("x", "证照标识不符合 GB/T 36904。"),
                          ("x", "错误 / error: x"), ("x", "例如：户口迁移、KS-076、hkqy。")])


#: one thing, one term: (wrong, why) -- each was in a string shown to clerks or partners
GLOSSARY = [
    ("新鲜", "a status list within its age limit is 有效 (against 过期 / 缺失), not 'fresh produce'"),
    ("控制台", "the console is the 工作台 (app_short: 证照核验工作台)"),
    ("不被允许", "a passive calque of 'is not allowed': 不允许使用..."),
    ("隐藏显示", "a masked number is 脱敏显示 ('hidden shown' contradicts itself)"),
    ("证书已被吊销", "a certificate is 撤销 (证书撤销列表); 吊销 is a licence's, and LICENCE_REVOKED says 注销或吊销"),
    ("签发证书", "the issuer certificate is 签发机构证书, as in errors.py and the licence notes"),
]


@pytest.mark.parametrize("wrong, why", GLOSSARY, ids=["fresh", "console", "passive-allowed", "masked",
                                                      "certificate-revoked", "issuer-certificate"])
def test_terms_follow_the_glossary(wrong: str, why: str) -> None:
    assert [where for where, text in _zh_texts() if wrong in text] == [], why


def test_quoted_labels_in_chinese_texts_are_the_labels_on_screen() -> None:
    # CONSENT_REQUIRED told the clerk to tick “申请人已同意”: the box reads “申请人已同意调取其电子证照”
    labels = set(STRINGS["zh"].values())
    quoted = [(where, q) for where, text in _zh_texts() for q in re.findall(r"“([^”]+)”", text) if "{" not in q]
    assert quoted and [(where, q) for where, q in quoted if q not in labels] == []


def test_fetch_outcome_fragments_hold_no_comma_of_their_own() -> None:
    # console.js joins a region's fragments with "，": "调取出错，2 份未通过核验，或持有人、地区、类型不符，
    # 被拒收" could not be told apart; an explanation goes in brackets
    for key in ("fetch_added", "fetch_already", "fetch_over_limit", "fetch_rejected"):
        assert "，" not in re.sub(r"（[^）]*）", "", t("zh", key)), key


@pytest.mark.parametrize("key", ["fetch_unfetchable", "fetch_none_added"])
def test_an_instruction_after_a_chinese_clause_follows_a_comma_not_an_english_colon(key: str) -> None:
    assert "：请" not in t("zh", key)


def test_revoked_licence_advice_does_not_say_less_than_its_message() -> None:
    # the message says 注销或吊销; the advice said 已注销 -- wrong (and a different legal act) for a 吊销 licence
    r = errors.LICENCE_REVOKED
    assert "注销或吊销" in r.message_zh and "注销或吊销" in r.advice_zh


def test_a_licence_with_a_bad_holder_code_is_sent_to_its_issuing_authority() -> None:
    # the holder code is the signed licence's own data: checking the number the clerk typed changes nothing
    r = errors.HOLDER_CODE_INVALID
    assert "发证机关" in r.advice_zh and "核对申请人证件号码" not in r.advice_zh
    assert "issuing authority" in ADVICE_EN["HOLDER_CODE_INVALID"]


#: wording a native reader stumbles on, each with what it said wrong (where, bad fragment, why)
WORDING = [
    (lambda: t("zh", "logout_stale_page"), "已过期，未退出。", "does not say the clerk is still signed in, as the English does"),
    (lambda: t("zh", "not_applicant"), "不能用于本申请人", "a licence is used for an application, not for a person"),
    (lambda: t("zh", "fetch_unfetchable"), "法定代表人身份）", "the example must be a material: 法定代表人的身份证件"),
    (lambda: errors.UNTRUSTED_CHAIN.message_zh, "无法验证到", "calque of 'does not chain to': 证书链无法追溯到"),
    (lambda: errors.RECEIPT_INVALID.message_zh, "或非本网关公布的密钥签发", "needs 由: 并非由...签发"),
    (lambda: errors.APPLICANT_INVALID.message_zh, "（校验位）", "the bracket made it unclear what is wrong"),
    (lambda: errors.REQUEST_TIMEOUT.message_zh, "传完", "colloquial in an error message: 传输完毕"),
]


@pytest.mark.parametrize("text, bad, why", WORDING, ids=["logout_stale_page", "not_applicant", "fetch_unfetchable",
                                                          "UNTRUSTED_CHAIN", "RECEIPT_INVALID", "APPLICANT_INVALID",
                                                          "REQUEST_TIMEOUT"])
def test_reviewed_wording_stays_fixed(text, bad: str, why: str) -> None:
    assert bad not in text(), why


def _oauth_error(service: TokenService, form: dict[str, str]) -> OAuthError:
    with pytest.raises(OAuthError) as info:
        service.issue(form, 1_780_000_000.0)
    return info.value


def test_oauth_chinese_description_names_the_value_the_english_one_names() -> None:
    # it said "client_assertion_type 必须为 jwt-bearer": an engineer reading the Chinese sends "jwt-bearer"
    form = token_request_form(assertion()) | {"client_assertion_type": "jwt-bearer"}
    err = _oauth_error(token_service(), form)
    assert ASSERTION_TYPE_JWT_BEARER in err.description and ASSERTION_TYPE_JWT_BEARER in err.description_zh


def test_oauth_chinese_description_does_not_call_a_present_jti_missing() -> None:
    err = _oauth_error(token_service(), token_request_form(assertion(jti="j" * (MAX_JTI_CHARS + 1))))
    assert "usable jti" in err.description and "可用的 jti" in err.description_zh


def test_oauth_chinese_descriptions_name_every_protocol_field_the_english_ones_name() -> None:
    # e.g. "(nbf)" was in the English only; the claim's name is what the partner's engineer looks for
    ident = re.compile(r"urn:[\w:.-]*\w|\b(?:[a-z]+_[a-z_]+|iss|sub|aud|exp|iat|nbf|jti)\b")
    pairs = []
    for rel in ("gateway/auth/tokens.py", "gateway/auth/middleware.py", "gateway/auth/shared.py"):
        for node in ast.walk(ast.parse((ROOT / rel).read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "OAuthError" and len(node.args) >= 3:
                en, zh = (ast.unparse(a) if not isinstance(a, ast.Constant) else a.value for a in node.args[1:3])
                pairs.append((f"{rel}:{node.lineno}", en, zh))
    assert len(pairs) > 20
    assert [(where, name) for where, en, zh in pairs for name in set(ident.findall(en)) if name not in zh] == []
