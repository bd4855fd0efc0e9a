"""The user-day model behind `anomaly.user_day`: peer scaling, scorers, persistence.

Pipeline of one model, fitted on a baseline window of user-day features:

1. *Transform*: counts become log1p(count); shares stay in 0..1.
2. *Peer scaling*: each feature is centred on the peer group's median and divided by a robust
   spread (IQR/1.349, floored per feature kind so a group where everyone has zero VIP
   accesses does not divide by zero). Peer group = role + department when that group has at
   least `min_peer_users` users in the baseline, else the role, else everyone: a group of one
   falls back cleanly. Optionally, the same feature is also compared with the user's own
   baseline median ("own" columns), so a therapist who always covers every ward, or an ICU
   nurse whose nights are always busy, is unremarkable against herself.
3. *Clip below at 0*: being quieter than one's peers is not a privacy risk; only the upper
   side counts. Missing values (an engine not installed, a new user with no own history)
   become 0, i.e. "like the peers".
4. *Score* with ECOD (default), COPOD, IForest, HBOS, or "ensemble" (mean of each model's
   baseline rank). ECOD and COPOD are rebuilt from per-column ECDF tables (sorted knots with
   P(X<=v) and P(X>=v), dense in the tails) instead of PyOD's fitted object, which keeps the
   whole training matrix: for a single new row the scores equal PyOD's
   `ECOD().fit(train).decision_function(row)`. IForest and HBOS are PyOD objects with their
   per-training-row arrays removed before they are stored.
5. *Calibrate*: every score is also expressed as a *baseline rank* (share of baseline
   user-days scoring lower; above the baseline maximum it keeps growing by the excess over the
   baseline's max-minus-median), so thresholds are percentiles of the baseline and the
   ensemble averages ranks.

The fitted state is a small JSON-able dict plus a compressed npz blob (`to_row`/`from_row`),
never the training rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from emraudit.detectors.anomaly.features import FEATURE_NAMES, FEATURES

MODEL_KINDS = ("ecod", "copod", "iforest", "hbos", "ensemble")
ENSEMBLE_MEMBERS = ("ecod", "copod", "iforest", "hbos")
SPREAD_FLOOR = {"count": 0.5, "share": 0.05}     # in transformed units
# features whose deviation from the user's own baseline is also modelled
OWN_FEATURES = ("events", "patients", "new_patients", "unexplained", "unexplained_share",
                "off_duty_share", "outputs", "output_records", "departments", "wards",
                "workstations", "burst_patients", "queries")
FORMAT_VERSION = 1


# ECDF tables ------------------------------------------------------------------------------
def ecdf_table(x: np.ndarray, max_knots: int = 1024) -> dict[str, np.ndarray]:
    """Knots v with P(X<=v) and P(X>=v) of a sample; thinned, dense in both tails."""
    x = np.sort(np.asarray(x, float)[np.isfinite(x)])
    n = len(x)
    if n == 0:
        return {"n": np.array([0]), "v": np.array([0.0]), "le": np.array([1.0]),
                "ge": np.array([1.0])}
    u, first = np.unique(x, return_index=True)
    cnt = np.diff(np.append(first, n))
    le = (first + cnt) / n
    ge = (n - first) / n
    if len(u) > max_knots:
        half = max_knots // 2
        lo = np.geomspace(1.0 / n, 0.5, half)
        levels = np.concatenate([lo, 1.0 - lo])
        idx = np.clip(np.searchsorted(le, levels), 0, len(u) - 1)
        idx = np.unique(np.concatenate([idx, [0, len(u) - 1]]))
        u, le, ge = u[idx], le[idx], ge[idx]
    return {"n": np.array([n]), "v": u, "le": le, "ge": ge}


def p_le(t: dict, x: np.ndarray) -> np.ndarray:
    i = np.searchsorted(t["v"], x, side="right") - 1
    return np.where(i >= 0, t["le"][np.clip(i, 0, None)], 0.0)


def p_ge(t: dict, x: np.ndarray) -> np.ndarray:
    j = np.searchsorted(t["v"], x, side="left")
    k = len(t["v"])
    return np.where(j < k, t["ge"][np.clip(j, None, k - 1)], 0.0)


def tail_scores(tables: list[dict], X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-log left and right tail probabilities per cell, as PyOD's ECOD computes them for a
    row added to the training sample: (n * P + 1) / (n + 1)."""
    U_l = np.empty_like(X, dtype=float)
    U_r = np.empty_like(X, dtype=float)
    for j, t in enumerate(tables):
        n = float(t["n"][0])
        U_l[:, j] = -np.log((n * p_le(t, X[:, j]) + 1.0) / (n + 1.0))
        U_r[:, j] = -np.log((n * p_ge(t, X[:, j]) + 1.0) / (n + 1.0))
    return U_l, U_r


def ecod_cells(tables, skew_sign, X) -> np.ndarray:
    U_l, U_r = tail_scores(tables, X)
    s = np.asarray(skew_sign, float)
    U_skew = U_l * -1 * np.sign(s - 1) + U_r * np.sign(s + 1)
    return np.maximum(np.maximum(U_l, U_r), U_skew)


def copod_cells(tables, skew_sign, X) -> np.ndarray:
    U_l, U_r = tail_scores(tables, X)
    s = np.asarray(skew_sign, float)
    U_skew = U_l * -1 * np.sign(s - 1) + U_r * np.sign(s + 1)
    return np.maximum(U_skew, (U_l + U_r) / 2)


def baseline_rank(t: dict, s: np.ndarray) -> np.ndarray:
    """Share of baseline scores below s; beyond the maximum, 1 + excess / (max - median)."""
    s = np.asarray(s, float)
    r = p_le(t, s)
    vmax = t["v"][-1]
    med = t["v"][np.searchsorted(t["le"], 0.5)] if len(t["v"]) > 1 else vmax
    spread = max(float(vmax - med), 1e-9)
    return np.where(s > vmax, 1.0 + (s - vmax) / spread, r)


# peer scaling -------------------------------------------------------------------------------
def transform(df: pd.DataFrame, feats: list[str]) -> np.ndarray:
    X = df[feats].to_numpy(float, copy=True)
    for j, f in enumerate(feats):
        if FEATURES[f]["kind"] == "count":
            X[:, j] = np.log1p(np.clip(X[:, j], 0, None))
    return X


@dataclass
class PeerStats:
    """Per peer group and feature: median and spread (transformed units), raw median and p99."""

    keys: list[str]
    med: np.ndarray      # groups x features, transformed
    spread: np.ndarray
    raw_med: np.ndarray
    raw_p99: np.ndarray
    users: list[int]     # distinct users per group

    def index(self) -> dict[str, int]:
        return {k: i for i, k in enumerate(self.keys)}


def skewness(X: np.ndarray) -> np.ndarray:
    """Each column's biased sample skewness, as scipy.stats.skew(X, axis=0) computes it (the
    same operations in the same order, so the same floats; NaN for a constant column)
    without importing scipy.stats, which costs every command a second at start-up."""
    mean = np.mean(X, axis=0, keepdims=True)
    d = X - mean
    m2 = np.mean(d**2, axis=0)
    m3 = np.mean(d**2 * d, axis=0)
    with np.errstate(all="ignore"):
        zero = m2 <= (np.finfo(m2.dtype).eps * np.squeeze(mean, axis=0))**2
        return np.where(zero, np.nan, m3 / m2**1.5)


def peer_keys(role: pd.Series, dept: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    r = role.astype("string").fillna("other").reset_index(drop=True)
    d = dept.astype("string").fillna("").reset_index(drop=True)
    return (r + "|" + d).to_numpy(dtype=object), r.to_numpy(dtype=object)


def fit_peers(base: pd.DataFrame, feats: list[str], min_users: int) -> PeerStats:
    """Peer statistics for everyone ("*"), each role, and each role|department, keeping only
    groups with at least `min_users` users (everyone is always kept). Vectorized: one
    group-by quantile per level."""
    rd, r = peer_keys(base["role"], base["department"])
    Xt = pd.DataFrame(transform(base, feats), columns=feats)
    Xr = pd.DataFrame(base[feats].to_numpy(float), columns=feats)
    uid = base["user_id"].astype("string").reset_index(drop=True)
    floors = np.array([SPREAD_FLOOR[FEATURES[f]["kind"]] for f in feats])
    keys, meds, spreads, rmeds, rp99s, nusers = [], [], [], [], [], []
    for labels in (np.full(len(base), "*", dtype=object), r, rd):
        lab = pd.Series(labels)
        n_u = uid.groupby(lab).nunique()
        ok = n_u[(n_u >= min_users) | (n_u.index == "*")].index
        if len(ok) == 0:
            continue
        qt = Xt.groupby(lab).quantile([0.25, 0.5, 0.75])
        qr = Xr.groupby(lab).quantile([0.5, 0.99])
        for key in sorted(ok):
            q = qt.loc[key].to_numpy(float)
            rq = qr.loc[key].to_numpy(float)
            keys.append(str(key))
            meds.append(np.nan_to_num(q[1]))
            spreads.append(np.maximum(np.nan_to_num((q[2] - q[0]) / 1.349), floors))
            rmeds.append(rq[0])
            rp99s.append(rq[1])
            nusers.append(int(n_u[key]))
    return PeerStats(keys, np.array(meds), np.array(spreads), np.array(rmeds),
                     np.array(rp99s), nusers)


def peer_group_of(peers: PeerStats, df: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Row -> group index: role|department, else role, else everyone."""
    rd, r = peer_keys(df["role"], df["department"])
    keys = pd.Index(peers.keys, dtype=object)
    if keys.is_unique:      # always, unless a role is itself spelled "role|department"
        g_rd, g_r = keys.get_indexer(rd), keys.get_indexer(r)
        g = np.where(g_rd >= 0, g_rd, np.where(g_r >= 0, g_r, keys.get_loc("*")))
    else:
        idx = peers.index()
        g = pd.Series(rd).map(idx).fillna(pd.Series(r).map(idx)).fillna(idx["*"]) \
            .astype(int).to_numpy()
    g = np.asarray(g, dtype=np.int64)
    return g, [peers.keys[i] for i in g]


def own_medians(base: pd.DataFrame, feats: list[str], min_days: int) -> pd.DataFrame:
    """Each user's median (raw units) of each feature over the baseline, and days seen."""
    g = base.groupby(base["user_id"].astype("string"))
    med = g[feats].median()
    med["_days"] = g.size()
    med.loc[med["_days"] < min_days, feats] = np.nan
    return med


# the model ---------------------------------------------------------------------------------
@dataclass
class UserDayModel:
    kind: str = "ecod"
    feats: list[str] = field(default_factory=lambda: list(FEATURE_NAMES))
    own: bool = True
    min_peer_users: int = 5
    min_own_days: int = 5
    seed: int = 0
    window: tuple[str, str] = ("", "")
    peers: PeerStats | None = None
    tables: list[dict] = field(default_factory=list)   # per input column (explainer + ECOD)
    skew_sign: np.ndarray | None = None
    pyod: dict[str, Any] = field(default_factory=dict)   # name -> fitted PyOD detector
    score_tables: dict[str, dict] = field(default_factory=dict)  # member -> baseline scores
    final_table: dict | None = None
    requested: list[str] = field(default_factory=list)  # features asked for (before dropping
    #                                                    those with no values in the baseline)

    def __post_init__(self):
        if not self.requested:
            self.requested = list(self.feats)

    # inputs -----------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        cols = [f"peer:{f}" for f in self.feats]
        if self.own:
            cols += [f"own:{f}" for f in self.feats if f in OWN_FEATURES]
        return cols

    def matrix(self, df: pd.DataFrame, own_med: pd.DataFrame | None) -> np.ndarray:
        """Model inputs: peer-scaled (and own-baseline) deviations, clipped below at 0."""
        g, _ = peer_group_of(self.peers, df)
        Xt = transform(df, self.feats)
        med = self.peers.med[g]
        spread = self.peers.spread[g]
        Z = (Xt - med) / spread
        parts = [Z]
        if self.own:
            of = [f for f in self.feats if f in OWN_FEATURES]
            j = [self.feats.index(f) for f in of]
            if own_med is not None and len(own_med):
                om = own_med.reindex(df["user_id"].astype("string").to_numpy())[of]
                omt = transform(om.reset_index(drop=True), of)
            else:
                omt = np.full((len(df), len(of)), np.nan)
            parts.append((Xt[:, j] - omt) / spread[:, j])
        X = np.concatenate(parts, axis=1)
        X = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)
        return np.clip(X, 0.0, None)

    # fitting ----------------------------------------------------------------------------
    def fit(self, base: pd.DataFrame, own_med: pd.DataFrame | None) -> "UserDayModel":
        usable = [f for f in self.feats if base[f].notna().any()]
        self.feats = usable
        self.peers = fit_peers(base, self.feats, self.min_peer_users)
        X = self.matrix(base, own_med)
        self.tables = [ecdf_table(X[:, j]) for j in range(X.shape[1])]
        self.skew_sign = np.sign(np.nan_to_num(skewness(X))) if len(X) > 2 else \
            np.zeros(X.shape[1])
        members = ENSEMBLE_MEMBERS if self.kind == "ensemble" else (self.kind,)
        train_scores: dict[str, np.ndarray] = {}
        for name in members:
            if name == "iforest":
                from pyod.models.iforest import IForest
                m = IForest(n_estimators=100, max_samples=min(256, len(X)),
                            random_state=self.seed, n_jobs=1)
            elif name == "hbos":
                from pyod.models.hbos import HBOS
                m = HBOS(n_bins=10)
            else:
                continue
            m.fit(X)
            train_scores[name] = np.asarray(m.decision_scores_, float)  # PyOD scored them
            self.pyod[name] = _strip(m)
        raw = self._member_scores(X, skip=tuple(train_scores))
        raw.update(train_scores)
        raw = {k: raw[k] for k in members}
        self.score_tables = {k: ecdf_table(v) for k, v in raw.items()}
        final = self._combine(raw)
        self.final_table = ecdf_table(final)
        return self

    def _member_scores(self, X: np.ndarray, skip: tuple = ()) -> dict[str, np.ndarray]:
        members = ENSEMBLE_MEMBERS if self.kind == "ensemble" else (self.kind,)
        out = {}
        for name in members:
            if name in skip:
                continue
            if name == "ecod":
                out[name] = ecod_cells(self.tables, self.skew_sign, X).sum(axis=1)
            elif name == "copod":
                out[name] = copod_cells(self.tables, self.skew_sign, X).sum(axis=1)
            else:
                out[name] = np.asarray(self.pyod[name].decision_function(X), float)
        return out

    def _combine(self, raw: dict[str, np.ndarray]) -> np.ndarray:
        if self.kind != "ensemble":
            return raw[self.kind]
        ranks = [baseline_rank(self.score_tables[k], v) for k, v in raw.items()]
        return np.mean(ranks, axis=0)

    # scoring ----------------------------------------------------------------------------
    def score(self, df: pd.DataFrame, own_med: pd.DataFrame | None) -> dict[str, np.ndarray]:
        """score (higher = more abnormal), rank (baseline rank), cells (per-input upper-tail
        -log p, for explanations) and the input matrix."""
        X = self.matrix(df, own_med)
        raw = self._member_scores(X)
        s = self._combine(raw)
        _, U_r = tail_scores(self.tables, X)
        return {"score": s, "rank": baseline_rank(self.final_table, s), "cells": U_r, "X": X}

    def threshold(self, percentile: float) -> float:
        """The final score at a percentile of the baseline (the alert budget's floor)."""
        t = self.final_table
        i = np.searchsorted(t["le"], percentile / 100.0)
        return float(t["v"][min(i, len(t["v"]) - 1)])

    # persistence ------------------------------------------------------------------------
    def config_key(self) -> str:
        return hashlib.sha1(json.dumps([self.kind, self.own, self.min_peer_users,
                                        self.min_own_days, self.seed, self.requested],
                                       sort_keys=True).encode()).hexdigest()[:12]

    def to_row(self, detector_id: str, trained_at) -> dict:
        arrays: dict[str, np.ndarray] = {
            "peer_med": self.peers.med, "peer_spread": self.peers.spread,
            "peer_raw_med": self.peers.raw_med, "peer_raw_p99": self.peers.raw_p99,
            "skew_sign": np.asarray(self.skew_sign, float),
        }
        for j, t in enumerate(self.tables):
            for k, v in t.items():
                arrays[f"t{j}_{k}"] = v
        for name, t in self.score_tables.items():
            for k, v in t.items():
                arrays[f"s_{name}_{k}"] = v
        for k, v in self.final_table.items():
            arrays[f"f_{k}"] = v
        for name, m in self.pyod.items():
            arrays[f"pyod_{name}"] = np.frombuffer(pickle.dumps(m, protocol=5), np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        params = {"format": FORMAT_VERSION, "kind": self.kind, "own": self.own,
                  "min_peer_users": self.min_peer_users, "min_own_days": self.min_own_days,
                  "seed": self.seed, "config_key": self.config_key(),
                  "requested": self.requested,
                  "peer_keys": self.peers.keys, "peer_users": self.peers.users,
                  "columns": self.columns,
                  "versions": _versions() if self.pyod else {}}
        mid = hashlib.sha1(f"{detector_id}|{self.window[0]}|{self.window[1]}|"
                           f"{self.config_key()}".encode()).hexdigest()[:24]
        return {"model_id": "M" + mid, "detector": detector_id, "trained_at": trained_at,
                "window_start": self.window[0], "window_end": self.window[1],
                "features": list(self.feats), "params": params, "blob": buf.getvalue()}

    @classmethod
    def from_row(cls, row: dict) -> "UserDayModel":
        params = row["params"] if isinstance(row["params"], dict) else json.loads(row["params"])
        feats = row["features"] if isinstance(row["features"], list) else json.loads(
            row["features"])
        if params.get("format") != FORMAT_VERSION:
            raise ValueError("model format changed")
        z = np.load(io.BytesIO(row["blob"]), allow_pickle=False)
        m = cls(kind=params["kind"], feats=list(feats), own=params["own"],
                min_peer_users=params["min_peer_users"], min_own_days=params["min_own_days"],
                seed=params["seed"], window=(row["window_start"], row["window_end"]),
                requested=list(params.get("requested") or feats))
        m.peers = PeerStats(list(params["peer_keys"]), z["peer_med"], z["peer_spread"],
                            z["peer_raw_med"], z["peer_raw_p99"], list(params["peer_users"]))
        m.skew_sign = z["skew_sign"]
        ncol = len(params["columns"])
        m.tables = [{k: z[f"t{j}_{k}"] for k in ("n", "v", "le", "ge")} for j in range(ncol)]
        members = ENSEMBLE_MEMBERS if m.kind == "ensemble" else (m.kind,)
        m.score_tables = {n: {k: z[f"s_{n}_{k}"] for k in ("n", "v", "le", "ge")}
                          for n in members}
        m.final_table = {k: z[f"f_{k}"] for k in ("n", "v", "le", "ge")}
        for name in members:
            if name in ("iforest", "hbos"):
                if params.get("versions") != _versions():
                    raise ValueError("PyOD/scikit-learn version changed since the model was "
                                     "fitted")
                m.pyod[name] = pickle.loads(z[f"pyod_{name}"].tobytes())
        if m.columns != params["columns"]:
            raise ValueError("stored model columns do not match")
        return m


def _strip(m):
    """Drop what a fitted PyOD detector keeps per training row: scoring does not need it.

    PyOD's fitted-check looks for `decision_scores_` and `labels_`, so they stay as
    one-element placeholders; `threshold_` (from contamination) is never used here."""
    if hasattr(m, "X_train"):
        delattr(m, "X_train")
    m.decision_scores_ = np.zeros(1)
    m.labels_ = np.zeros(1, dtype=int)
    return m


def _versions() -> dict[str, str]:
    import pyod
    import sklearn
    return {"pyod": pyod.__version__, "sklearn": sklearn.__version__,
            "numpy": np.__version__}
