"""The vocabulary of access rights: permissions, scopes and sensitive record classes.

HIS permission exports name the same right in many ways (查阅, 浏览, 只读, view …). The
canonical tables `grants`, `roles`, `patients` and `care_relations` carry these values as
short lists separated by ';', normalized here onto stable codes so that detectors and reports
compare like with like. A word no synonym covers is kept as written (lower-cased): a
hospital's own class (涉密) or menu function stays visible instead of being guessed or
rejected.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# record classes that need a grant of their own (分级分类): codes, in display order
SENSITIVE_CLASSES = ("psychiatric", "infectious", "reproductive", "minor", "vip", "sealed")
SENSITIVE_CLASS_SYNONYMS = {
    "psychiatric": "psychiatric", "mental": "psychiatric", "mental health": "psychiatric",
    "精神": "psychiatric", "精神科": "psychiatric", "精神病": "psychiatric",
    "精神疾病": "psychiatric", "心理": "psychiatric", "精神心理": "psychiatric",
    "infectious": "infectious", "hiv": "infectious", "aids": "infectious", "std": "infectious",
    "传染病": "infectious", "传染病/hiv": "infectious", "传染": "infectious",
    "艾滋病": "infectious", "艾滋": "infectious", "性病": "infectious", "结核": "infectious",
    "reproductive": "reproductive", "reproductive health": "reproductive",
    "生殖": "reproductive", "生殖健康": "reproductive", "生殖医学": "reproductive",
    "计划生育": "reproductive", "不孕不育": "reproductive", "辅助生殖": "reproductive",
    "minor": "minor", "minors": "minor", "未成年": "minor", "未成年人": "minor",
    "vip": "vip", "贵宾": "vip", "保健对象": "vip", "重要保健对象": "vip",
    "sealed": "sealed", "封存": "sealed", "病历封存": "sealed", "已封存": "sealed",
}

# what a grant or a role allows; each canonical access action falls under one permission
PERMISSIONS = ("read", "write", "print", "export", "break_glass", "grant", "all")
PERMISSION_SYNONYMS = {
    "read": "read", "view": "read", "query": "read", "r": "read", "readonly": "read",
    "查阅": "read", "浏览": "read", "查看": "read", "阅读": "read", "调阅": "read",
    "查询": "read", "只读": "read", "病历查阅": "read", "病历浏览": "read",
    "write": "write", "edit": "write", "w": "write", "书写": "write", "编辑": "write",
    "修改": "write", "录入": "write", "新建": "write", "签名": "write", "病历书写": "write",
    "读写": "read;write", "rw": "read;write",
    "print": "print", "打印": "print", "病历打印": "print",
    "export": "export", "copy": "export", "download": "export", "导出": "export",
    "复制": "export", "拷贝": "export", "下载": "export", "病历导出": "export",
    "break_glass": "break_glass", "break-glass": "break_glass", "emergency": "break_glass",
    "紧急授权": "break_glass", "破窗": "break_glass", "紧急访问": "break_glass",
    "grant": "grant", "admin": "grant", "授权": "grant", "权限管理": "grant",
    "授权管理": "grant", "用户管理": "grant", "系统管理": "grant",
    "all": "all", "*": "all", "full": "all", "全部": "all", "所有": "all", "完全": "all",
    "全部权限": "all",
}
PERMISSION_ACTIONS = {
    "read": ("view", "query"),
    "write": ("create", "update", "delete", "sign"),
    "print": ("print",),
    "export": ("export", "copy", "download"),
    "break_glass": ("break_glass",),
}
ACTION_PERMISSION = {a: p for p, acts in PERMISSION_ACTIONS.items() for a in acts}

# how far a right reaches: the holder's own department or ward, or the whole hospital; any
# other value (a department's name) is kept as written
SCOPES = ("own", "all")
SCOPE_SYNONYMS = {
    "own": "own", "department": "own", "ward": "own", "本科": "own", "本科室": "own",
    "科室": "own", "本病区": "own", "本部门": "own", "本人科室": "own",
    "all": "all", "hospital": "all", "*": "all", "全院": "all", "全部": "all", "所有": "all",
}

_SPLIT = re.compile(r"\s*[;；,，、|]\s*")


def _normalize_lists(s: pd.Series, synonyms: dict[str, str], order: tuple[str, ...]
                     ) -> pd.Series:
    """Each value split into its parts, each part mapped through `synonyms` (unmatched parts
    kept lower-cased), deduplicated and joined with ';' in a stable order: known codes in
    `order`, then the rest alphabetically. Worked out once per distinct value."""
    st = s.astype("string")
    codes, uniq = pd.factorize(st)
    rank = {c: i for i, c in enumerate(order)}
    out = []
    for v in uniq:                    # once per distinct value, not per row
        parts = []
        for raw in _SPLIT.split(str(v).strip()):
            key = raw.strip().lower()
            if not key:
                continue
            parts += synonyms.get(key, key).split(";")
        uniq_parts = sorted(set(parts), key=lambda x: (rank.get(x, len(order)), x))
        out.append(";".join(uniq_parts) if uniq_parts else None)
    lookup = np.array(out + [None], dtype=object)
    vals = lookup[np.where(codes < 0, len(out), codes)]
    return pd.Series(pd.array(vals, dtype="string"), index=s.index)


def normalize_classes(s: pd.Series) -> pd.Series:
    return _normalize_lists(s, SENSITIVE_CLASS_SYNONYMS, SENSITIVE_CLASSES)


def normalize_permissions(s: pd.Series) -> pd.Series:
    return _normalize_lists(s, PERMISSION_SYNONYMS, PERMISSIONS)


def normalize_scope(s: pd.Series) -> pd.Series:
    """One scope per value: own, all, or the value as written (a department)."""
    st = s.astype("string").str.strip()
    mapped = st.str.lower().map(SCOPE_SYNONYMS)
    return mapped.where(mapped.notna(), st).astype("string")


def split_list(value) -> list[str]:
    """The parts of a normalized list value ('' and missing give [])."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return []
    return [p for p in str(value).split(";") if p]


def covers(permission: str, action_permission: str) -> bool:
    """Does a right `permission` allow what `action_permission` needs ('all' allows all)."""
    return permission == "all" or permission == action_permission
