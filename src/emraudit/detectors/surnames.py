"""Chinese surnames and how common they are, to weigh "same surname" as family evidence.

A handful of surnames are shared by a large part of China's population (王, 李, 张 each by
about 7%), so a shared surname is weak evidence on its own (FORMATS.md "Surnames"). The table
gives approximate population shares (percent) of the most common surnames, rounded from the
2020 census tables published by the Ministry of Public Security; any surname not listed is
taken as rare (RARE_SHARE). `surname_bits` turns a share into information (bits): the rarer,
the stronger the evidence.
"""

from __future__ import annotations

import math
import re
import unicodedata

import pandas as pd

SHARE_PERCENT = {
    "王": 7.1, "李": 7.0, "张": 6.7, "刘": 5.4, "陈": 4.5, "杨": 3.1, "黄": 2.2, "赵": 2.2,
    "吴": 2.0, "周": 1.9, "徐": 1.6, "孙": 1.5, "马": 1.3, "朱": 1.3, "胡": 1.2, "郭": 1.1,
    "何": 1.0, "林": 1.0, "高": 1.0, "罗": 0.9, "郑": 0.8, "梁": 0.7, "谢": 0.7, "宋": 0.6,
    "唐": 0.6, "许": 0.6, "韩": 0.6, "冯": 0.6, "邓": 0.6, "曹": 0.5, "彭": 0.5, "曾": 0.5,
    "肖": 0.5, "田": 0.5, "董": 0.5, "袁": 0.4, "潘": 0.4, "于": 0.4, "蒋": 0.4, "蔡": 0.4,
    "余": 0.4, "杜": 0.4, "叶": 0.4, "程": 0.4, "苏": 0.4, "魏": 0.4, "吕": 0.3, "丁": 0.3,
    "任": 0.3, "沈": 0.3, "姚": 0.3, "卢": 0.3, "姜": 0.3, "崔": 0.3, "钟": 0.3, "谭": 0.3,
    "陆": 0.3, "汪": 0.3, "范": 0.3, "金": 0.3, "石": 0.3, "廖": 0.3, "贾": 0.3, "夏": 0.2,
    "韦": 0.2, "付": 0.2, "方": 0.2, "白": 0.2, "邹": 0.2, "孟": 0.2, "熊": 0.2, "秦": 0.2,
    "邱": 0.2, "江": 0.2, "尹": 0.2, "薛": 0.2, "闫": 0.2, "段": 0.2, "雷": 0.2, "侯": 0.2,
    "龙": 0.2, "史": 0.2, "陶": 0.2, "黎": 0.2, "贺": 0.2, "顾": 0.2, "毛": 0.2, "郝": 0.2,
    "龚": 0.2, "邵": 0.2, "万": 0.2, "钱": 0.2, "严": 0.2, "覃": 0.1, "武": 0.1, "戴": 0.1,
    "莫": 0.1, "孔": 0.1, "向": 0.1, "汤": 0.1,
}
RARE_SHARE = 0.05           # percent, for any surname not in the table
COMMON_SHARE = 1.0          # percent: at or above this a surname counts as common

COMPOUND = ("欧阳", "司马", "诸葛", "上官", "司徒", "东方", "夏侯", "皇甫", "尉迟", "公孙",
            "慕容", "长孙", "宇文", "令狐", "澹台", "端木", "南宫", "万俟", "闻人", "独孤",
            "轩辕", "呼延", "申屠", "太史", "西门", "钟离", "赫连", "拓跋", "百里", "东郭")

_SPACE = re.compile(r"[\s\u3000·•.]+")


def normalize_name(name) -> str:
    # pd.NA too: str(pd.NA) would make every missing name the same name "<na>"
    if name is None or name is pd.NA or (isinstance(name, float) and math.isnan(name)):
        return ""
    s = unicodedata.normalize("NFKC", str(name)).strip().lower()
    return _SPACE.sub(" ", s).strip()


def surname(name) -> str:
    """The family name: the leading character of a Chinese name (two for compound surnames);
    for names in Latin letters, the part before a comma, else the last word."""
    s = normalize_name(name)
    if not s:
        return ""
    if re.match(r"[a-z]", s):
        if "," in s:
            return s.split(",", 1)[0].strip()
        return s.split(" ")[-1]
    s = s.replace(" ", "")
    if s[:2] in COMPOUND:
        return s[:2]
    return s[:1]


def surname_share(sn: str) -> float:
    """Approximate share of the population (percent) with this surname."""
    return SHARE_PERCENT.get(sn, RARE_SHARE)


def surname_bits(sn: str) -> float:
    """Evidence of a shared surname in bits: -log2(share). 王 ≈ 3.8, a rare one ≈ 11."""
    return round(-math.log2(surname_share(sn) / 100.0), 2)


def is_common(sn: str) -> bool:
    return surname_share(sn) >= COMMON_SHARE
