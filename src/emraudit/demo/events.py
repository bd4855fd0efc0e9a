"""Vocabularies and a columnar buffer for generated events (no per-event Python objects).

Events are integer-coded numpy columns (time in local epoch seconds, user and patient
indexes, action and module codes, location index, …) appended in blocks and concatenated
once; strings are only produced when writing.
"""

from __future__ import annotations

import numpy as np

from emraudit.model import ACTIONS

A = {a: i for i, a in enumerate(ACTIONS)}
MODULES = ["病历", "病程记录", "医嘱", "护理记录", "体温单", "检验", "影像", "病案首页", "会诊记录",
           "出院小结", "处方", "门诊病历", "康复记录", "呼吸治疗记录", "费用", "手术记录", ""]
M = {m: i for i, m in enumerate(MODULES)}
REASONS = ["", "抢救：患者昏迷，需查阅既往病史", "急诊抢救，紧急查看既往检查结果", "患者意识不清，急需过敏史",
           "病情危重，紧急会诊前查阅", "紧急情况", "临时查看"]
ACTION_ZH = {"view": "查看", "query": "查询", "create": "新建", "update": "修改", "delete": "删除",
             "sign": "签名", "print": "打印", "export": "导出", "copy": "复制", "download": "下载",
             "login": "登录", "logout": "登出", "login_failed": "登录失败", "break_glass": "紧急授权"}

COLUMNS = ("ts", "user", "patient", "action", "module", "loc", "enc", "rc", "acting", "reason",
           "src", "ws", "case")
SRC = {name: i for i, name in enumerate([
    "nurse", "nurse_day", "trainee", "round", "oncall", "icu_doc", "consult", "lab", "imaging",
    "radiologist", "pharmacy", "rehab", "resp", "discharge", "followup", "records", "qc",
    "insurance", "admin", "clinic", "clinic_lab", "clinic_pharm", "btg", "session",
    "watch_team", "violation"])}


class EventBuf:
    """Blocks of event columns; `add` takes equal-length arrays or scalars."""

    def __init__(self):
        self.blocks: list[dict[str, np.ndarray]] = []

    def add(self, ts, user, patient=-1, action=0, module=None, loc=-1, enc=-1, rc=1,
            acting=-1, reason=0, src=0, ws=-1, case=-1):
        ts = np.asarray(ts, np.int64)
        n = len(ts)
        if n == 0:
            return
        if module is None:
            module = M[""]

        def col(x, dt=np.int64):
            a = np.asarray(x, dt)
            return np.full(n, a, dt) if a.ndim == 0 else a

        self.blocks.append({"ts": ts, "user": col(user), "patient": col(patient),
                            "action": col(action, np.int16), "module": col(module, np.int16),
                            "loc": col(loc, np.int32), "enc": col(enc), "rc": col(rc, np.int32),
                            "acting": col(acting), "reason": col(reason, np.int16),
                            "src": col(src, np.int16), "ws": col(ws, np.int32),
                            "case": col(case, np.int32)})

    def concat(self) -> dict[str, np.ndarray]:
        if not self.blocks:
            return {c: np.zeros(0, np.int64) for c in COLUMNS}
        return {c: np.concatenate([b[c] for b in self.blocks]) for c in COLUMNS}


def choose(rng, n: int, options: dict) -> np.ndarray:
    """Draw codes from {code: weight}."""
    keys = np.array(list(options.keys()))
    w = np.array(list(options.values()), float)
    return keys[rng.choice(len(keys), n, p=w / w.sum())]


def expand(counts: np.ndarray) -> np.ndarray:
    """Row index repeated `counts` times (the np.repeat expansion used everywhere)."""
    return np.repeat(np.arange(len(counts)), counts)


def take(ev: dict, mask: np.ndarray) -> dict:
    return {k: v[mask] for k, v in ev.items()}


class Groups:
    """key -> set of values, from one sort (no per-group Python work up front); `.get` like a
    dict of sets."""

    def __init__(self, keys, values):
        keys = np.asarray(keys)
        if keys.dtype == object:
            keys = keys.astype(str)
        values = np.asarray(values)
        if values.dtype == object:
            values = values.astype(str)
        o = np.argsort(keys, kind="stable")
        self.k = keys[o]
        self.v = values[o]

    def get(self, key, default=None) -> set:
        if key is None or (isinstance(key, float) and key != key):
            return set() if default is None else default
        lo = np.searchsorted(self.k, key, "left")
        hi = np.searchsorted(self.k, key, "right")
        if hi == lo:
            return set() if default is None else default
        return set(self.v[lo:hi].tolist())
