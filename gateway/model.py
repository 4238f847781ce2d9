"""The canonical licence model (GB/T 36903 metadata, GB/T 36904 identifier).

Every region adapter normalises into :class:`Licence`. Field names are the project's
English names; ``FIELD_LABELS_ZH`` gives the GB/T 36903 Chinese names used in the
console and in disclosure lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date
from typing import Any, Callable, TypeVar

_T = TypeVar("_T")

#: canonical field name -> GB/T 36903 Chinese name
FIELD_LABELS_ZH: dict[str, str] = {
    "identifier": "证照标识",
    "name": "证照名称",
    "type_code": "证照类型代码",
    "type_name": "证照类型名称",
    "number": "证照编号",
    "issuer_name": "证照颁发机构",
    "issuer_code": "证照颁发机构代码",
    "issue_date": "证照颁发日期",
    "holder_name": "持证主体",
    "holder_code": "持证主体代码",
    "holder_code_type": "持证主体代码类型代码",
    "valid_from": "证照有效期起始日期",
    "valid_until": "证照有效期截止日期",
    "area_code": "证照所属管辖属地编码",
    "status_index": "状态列表索引",
}

#: the canonical fields every licence must carry (valid_until may be null = long-term)
REQUIRED_FIELDS = ("identifier", "name", "type_code", "number", "issuer_name", "issuer_code",
                   "issue_date", "holder_name", "holder_code", "holder_code_type", "valid_from",
                   "area_code")
CANONICAL_FIELDS = tuple(FIELD_LABELS_ZH)


@dataclass(frozen=True, slots=True)
class Licence:
    identifier: str
    name: str
    type_code: str
    type_name: str
    number: str
    issuer_name: str
    issuer_code: str
    issue_date: date
    holder_name: str
    holder_code: str
    holder_code_type: str
    valid_from: date
    valid_until: date | None
    area_code: str
    surface: dict[str, Any] = field(default_factory=dict)  # 照面信息, type-specific
    status_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "name": self.name,
            "type_code": self.type_code,
            "type_name": self.type_name,
            "number": self.number,
            "issuer_name": self.issuer_name,
            "issuer_code": self.issuer_code,
            "issue_date": self.issue_date.isoformat(),
            "holder_name": self.holder_name,
            "holder_code": self.holder_code,
            "holder_code_type": self.holder_code_type,
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat() if self.valid_until else None,
            "area_code": self.area_code,
            "status_index": self.status_index,
            "surface": dict(self.surface),
        }


def positional_builder(cls: type[_T]) -> Callable[..., _T]:
    """A constructor for the frozen slots dataclass ``cls`` taking EVERY field positionally
    (no defaults, no ``__post_init__``): it stores through the slot descriptors directly,
    about half the cost of the dataclass ``__init__`` (which goes through
    ``object.__setattr__`` per field). For hot paths that already hold every value; the
    result is equal to ``cls(*values)``."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    if any(not f.init for f in fields(cls)) or hasattr(cls, "__post_init__"):  # type: ignore[arg-type]
        raise TypeError(f"{cls.__name__}: every field must be an __init__ field and there may be no __post_init__")
    env: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    env.update({f"_set_{n}": getattr(cls, n).__set__ for n in names})
    body = "".join(f"    _set_{n}(o, {n})\n" for n in names)
    exec(f"def build({', '.join(names)}):\n    o = _new(_cls)\n{body}    return o\n", env)  # noqa: S102 -- fixed field names
    build = env["build"]
    build.__doc__ = f"{cls.__name__}({', '.join(names)}), every field given"
    return build


#: ``Licence(...)`` with all 16 fields in declaration order (normalisation's hot path)
make_licence: Callable[..., Licence] = positional_builder(Licence)
