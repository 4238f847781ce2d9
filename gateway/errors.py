"""The one errors module of the gateway.

Two roots, and only two:

* :class:`Rejected` -- the licence or the request is at fault. A licence that fails a
  check becomes verdict ``invalid``; a request that is not well formed becomes a 4xx.
* :class:`InfrastructureError` -- *we* failed (a stale revocation source, the audit
  store is down, an upstream region timed out). A verification becomes verdict
  ``indeterminate``; a request becomes a 5xx.

Every error carries a stable :class:`Reason`: a code that never changes meaning, an
English and a Chinese message, and (for the window console) advice for the clerk.
Handlers never invent messages: they raise one of these and the HTTP layer renders
RFC 9457 ``application/problem+json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str
    message_zh: str
    advice_zh: str = ""
    status: int = 400  # HTTP status when this reason rejects a whole request

    def as_dict(self, detail: str | None = None) -> dict[str, Any]:
        d = {"code": self.code, "message": self.message, "message_zh": self.message_zh}
        if detail:
            d["detail"] = detail
        return d


_REASONS: dict[str, Reason] = {}


def _r(code: str, message: str, message_zh: str, advice_zh: str = "", status: int = 400) -> Reason:
    reason = Reason(code, message, message_zh, advice_zh, status)
    if code in _REASONS:  # pragma: no cover - programming error
        raise RuntimeError(f"duplicate reason code {code}")
    _REASONS[code] = reason
    return reason


def reason(code: str) -> Reason:
    return _REASONS[code]


def all_reasons() -> list[Reason]:
    return list(_REASONS.values())


# --- licence verdict reasons (verdict "invalid") ------------------------------------
MALFORMED = _r("MALFORMED", "The licence could not be parsed.", "证照数据格式错误，无法解析。",
               "请让申请人重新出示证照，或改用文件上传。")
UNSUPPORTED_FORMAT = _r("UNSUPPORTED_FORMAT", "The licence format is not supported.",
                        "不支持的证照格式。", "请确认证照来自长三角或合作地区的电子证照系统。")
UNKNOWN_REGION = _r("UNKNOWN_REGION", "The issuing region is not recognised.",
                    "发证地区不在互认范围内。", "该地区证照暂不互认，请申请人提供纸质材料。")
UNKNOWN_ISSUER = _r("UNKNOWN_ISSUER", "The signing key is not a registered issuer.",
                    "签发机构不在信任列表中。", "证照来源不可信，请勿受理，并联系管理员。")
UNTRUSTED_CHAIN = _r("UNTRUSTED_CHAIN", "The signer certificate does not chain to the region's trust anchor.",
                     "签名证书的证书链无法追溯到该地区的信任根。", "证照来源不可信，请勿受理，并联系管理员。")
SIGNATURE_INVALID = _r("SIGNATURE_INVALID", "The signature does not verify: the licence was altered or forged.",
                       "签名验证失败：证照可能被篡改或伪造。", "证照疑似被篡改，请勿受理，必要时上报。")
ALGORITHM_NOT_ALLOWED = _r("ALGORITHM_NOT_ALLOWED", "The signature algorithm is not allowed.",
                           "不允许使用该签名算法。", "证照来源不可信，请勿受理。")
ISSUER_CERT_EXPIRED = _r("ISSUER_CERT_EXPIRED", "The issuer certificate was not valid at the relevant time.",
                         "签发机构证书已过期或尚未生效。", "请申请人联系发证机关重新签发证照。")
ISSUER_CERT_REVOKED = _r("ISSUER_CERT_REVOKED", "The issuer certificate has been revoked.",
                         "签发机构证书已被撤销。", "请申请人联系发证机关重新签发证照。")
ISSUER_REGION_MISMATCH = _r("ISSUER_REGION_MISMATCH",
                            "The licence claims an area or issuing authority outside the signer's region.",
                            "证照声明的属地或发证机关与签名地区不符。", "证照疑似伪造，请勿受理，必要时上报。")
IDENTIFIER_INVALID = _r("IDENTIFIER_INVALID", "The licence identifier (GB/T 36904) is malformed or its check character is wrong.",
                        "证照标识不符合 GB/T 36904 或校验位错误。", "请申请人联系发证机关核实证照。")
HOLDER_CODE_INVALID = _r("HOLDER_CODE_INVALID", "The holder's ID number or credit code has a wrong check character.",
                         "持证主体代码（身份证号或统一社会信用代码）校验位错误。",
                         "证照上的持证主体代码有误，请申请人联系发证机关核实证照。")
FIELD_INVALID = _r("FIELD_INVALID", "A licence field is missing or has an invalid value.",
                   "证照字段缺失或取值无效。", "请申请人联系发证机关核实证照。")
LICENCE_NOT_YET_VALID = _r("LICENCE_NOT_YET_VALID", "The licence is not yet valid.",
                           "证照尚未生效。", "请在证照生效后再办理。")
LICENCE_EXPIRED = _r("LICENCE_EXPIRED", "The licence has expired.",
                     "证照已过有效期。", "证照已过期，请申请人先办理证照换发。")
LICENCE_REVOKED = _r("LICENCE_REVOKED", "The licence has been revoked by its issuer.",
                     "证照已注销或吊销。", "证照已注销或吊销，请申请人联系发证机关。")
LICENCE_SUSPENDED = _r("LICENCE_SUSPENDED", "The licence is suspended by its issuer.",
                       "证照已被暂停使用。", "证照暂停使用，请申请人联系发证机关。")

# --- infrastructure reasons (verdict "indeterminate", HTTP 5xx) -----------------------
STATUS_UNAVAILABLE = _r("STATUS_UNAVAILABLE", "The region's revocation status is unavailable or too old to rely on.",
                        "无法获取该地区的证照状态（或状态数据已过期），暂不能确认证照有效。",
                        "请稍后重试；如持续出现请联系管理员。", status=503)
TRUST_UNAVAILABLE = _r("TRUST_UNAVAILABLE", "Trust material is not loaded or has expired.",
                       "信任列表未加载或已过期。", "请联系管理员更新信任列表。", status=503)
AUDIT_UNAVAILABLE = _r("AUDIT_UNAVAILABLE", "The audit store is unavailable; no answer is given without an audit record.",
                       "审计存储不可用，未留痕前不予答复。", "请稍后重试；如持续出现请联系管理员。", status=503)
UPSTREAM_UNAVAILABLE = _r("UPSTREAM_UNAVAILABLE", "The issuing region's service did not answer in time.",
                          "发证地区的共享服务未能及时响应。", "请稍后重试或请申请人出示证照。", status=504)
INTERNAL = _r("INTERNAL", "Internal error.", "系统内部错误。", "请稍后重试；如持续出现请联系管理员。", status=500)

# --- request reasons (HTTP 4xx) --------------------------------------------------------
BAD_REQUEST = _r("BAD_REQUEST", "The request is not well formed.", "请求格式错误。")
BODY_TOO_LARGE = _r("BODY_TOO_LARGE", "The request body is too large.", "请求体过大。", status=413)
REQUEST_TIMEOUT = _r("REQUEST_TIMEOUT", "The request body did not arrive in time.", "请求体未在规定时间内传输完毕。",
                     "请检查网络后重新提交。", status=408)
BATCH_TOO_LARGE = _r("BATCH_TOO_LARGE", "Too many licences in one batch.", "批量核验的证照数量超过上限。", status=413)
UNSUPPORTED_MEDIA_TYPE = _r("UNSUPPORTED_MEDIA_TYPE", "Send application/json.", "请使用 application/json 提交。", status=415)
NOT_FOUND = _r("NOT_FOUND", "No such resource.", "资源不存在。", status=404)
METHOD_NOT_ALLOWED = _r("METHOD_NOT_ALLOWED", "Method not allowed.", "不支持该请求方法。", status=405)
UNAUTHENTICATED = _r("UNAUTHENTICATED", "A valid bearer token is required.", "需要有效的访问令牌。", status=401)
FORBIDDEN = _r("FORBIDDEN", "This action is not granted to you (token scope, partner rights or staff role).",
               "无权执行该操作（访问令牌范围、合作方权限或工作人员角色）。", status=403)
PAGE_EXPIRED = _r("PAGE_EXPIRED", "This console page is out of date, or was not sent from your signed-in console.",
                  "页面已过期，或并非来自当前登录的工作台。", "请刷新页面后重试。", status=403)
RATE_LIMITED = _r("RATE_LIMITED", "Too many requests.", "请求过于频繁，请稍后再试。", status=429)
RECEIPT_INVALID = _r("RECEIPT_INVALID", "The verification receipt is malformed, altered or not signed by a published gateway key.",
                     "核验回执格式错误、被篡改，或并非由本网关公布的密钥签发。", "请以网关重新出具的回执为准。")
APPLICANT_INVALID = _r("APPLICANT_INVALID", "The applicant's code type is unknown or the code's check character is wrong.",
                       "申请人证件类型无法识别，或证件号码校验位错误。", "请核对申请人证件类型与号码。")
CONSENT_REQUIRED = _r("CONSENT_REQUIRED", "Fetching the applicant's licences from the issuing regions needs the applicant's "
                      "consent, confirmed by the clerk.", "向发证地调取申请人的证照须经申请人同意。",
                      "请征得申请人同意，并勾选“申请人已同意调取其电子证照”后再调取。")

# --- item check reasons (per licence in POST /v1/items/{code}/check) -----------------
HOLDER_MISMATCH = _r("HOLDER_MISMATCH",
                     "The licence is held by someone else and does not name the applicant in a role the item accepts.",
                     "证照持有人不是申请人，且证照未载明申请人为本事项认可的身份（如法定代表人）。",
                     "请核对申请人身份，或请申请人提供本人（本单位）名下的证照。")
TYPE_NOT_ACCEPTED = _r("TYPE_NOT_ACCEPTED", "The item does not ask for this type of licence.",
                       "本事项不需要此类证照。", "该证照与本事项无关，无需提交。")

# --- trust administration (POST /v1/admin/trust/reload) ---------------------------------
TRUST_LIST_REFUSED = _r("TRUST_LIST_REFUSED",
                        "The new trust list was refused (bad signature, rollback, conflict or expired); "
                        "the previous one stays in force.",
                        "新的信任列表被拒绝（签名无效、版本回退、内容冲突或已过期），继续使用原信任列表。",
                        "请核对信任列表的签名、版本号和有效期后重新发布。", status=409)


def shown(value: Any, limit: int = 80) -> str:
    """A value taken from presented (untrusted) data, as a rejection's detail may quote it: the repr of
    a scalar (a string cut at ``limit`` characters), only the kind of an array or object -- whose repr
    could be megabytes long, or raise RecursionError when nested as deep as a JSON parser reads (~1,000)."""
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}..."
    return {dict: "an object", list: "an array"}.get(type(value), f"a {type(value).__name__}")


class GatewayError(Exception):
    """Base of everything the gateway raises on purpose."""

    reason: Reason

    def __init__(self, reason: Reason, detail: str | None = None, **extra: Any) -> None:
        super().__init__(f"{reason.code}: {detail or reason.message}")
        self.reason = reason
        self.detail = detail
        self.extra = extra

    @property
    def code(self) -> str:
        return self.reason.code

    def as_reason_dict(self) -> dict[str, Any]:
        return self.reason.as_dict(self.detail)


class Rejected(GatewayError):
    """The licence or the request is at fault (verdict invalid / HTTP 4xx)."""


class LicenceRejected(Rejected):
    """A licence failed a check. Verdict ``invalid``; never an HTTP error by itself."""


class RequestRejected(Rejected):
    """The request itself is not acceptable (HTTP 4xx with problem+json). ``detail_zh``: the detail in
    Chinese, answered as the problem's ``detail_zh`` (a partner's mistake named in both languages)."""

    def __init__(self, reason: Reason, detail: str | None = None, *, headers: dict[str, str] | None = None,
                 detail_zh: str | None = None, **extra: Any) -> None:
        super().__init__(reason, detail, **extra)
        self.headers = headers or {}
        self.detail_zh = detail_zh


class InfrastructureError(GatewayError):
    """Our side failed (verdict indeterminate / HTTP 5xx)."""
