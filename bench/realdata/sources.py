"""Charting rows and hospital movements read from the MIMIC demos, one frame shape for both.

`charting` frames: user_id, patient_id, stored (the STORETIME: when the caregiver entered the
row, the audit-like time; CHARTTIME is the clinical time), source (table). `movements`:
patient_id, start, end, ward (care unit) or department (service), kind. Times are naive; the
demos shift dates per patient (see timeline.py).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

# MIMIC-III CAREGIVERS.LABEL / DESCRIPTION -> canonical role (lower-cased match; first hit)
ROLE_OF_LABEL = {
    "rn": "nurse", "rns": "nurse", "nurs": "nurse", "ns": "nurse", "rnc": "nurse",
    "pct": "nurse", "pca": "nurse", "pct/na": "nurse", "lpn": "nurse", "np": "nurse",
    "md": "physician", "mds": "physician", "res": "physician", "imd": "physician",
    "attending": "physician", "resident/fellow/pa/np": "physician", "pa": "physician",
    "rrt": "technician", "rt": "technician", "srt": "technician", "respiratory": "technician",
    "rph": "pharmacist", "pharmacist": "pharmacist", "pharmd": "pharmacist",
    "ms": "trainee", "medstu": "trainee", "student": "trainee", "sn": "trainee",
    "uco": "admin", "administrator": "admin",
}

M3_CHARTING = {   # table -> (file, user column, time column)
    "chartevents": ("CHARTEVENTS", "cgid", "storetime"),
    "datetimeevents": ("DATETIMEEVENTS", "cgid", "storetime"),
    "inputevents_cv": ("INPUTEVENTS_CV", "cgid", "storetime"),
    "inputevents_mv": ("INPUTEVENTS_MV", "cgid", "storetime"),
    "outputevents": ("OUTPUTEVENTS", "cgid", "storetime"),
    "procedureevents_mv": ("PROCEDUREEVENTS_MV", "cgid", "storetime"),
}
M4_CHARTING = {
    "icu/datetimeevents": ("caregiver_id", "storetime"),
    "icu/inputevents": ("caregiver_id", "storetime"),
    "icu/ingredientevents": ("caregiver_id", "storetime"),
    "icu/outputevents": ("caregiver_id", "storetime"),
    "icu/procedureevents": ("caregiver_id", "storetime"),
    "hosp/poe": ("order_provider_id", "ordertime"),
    "hosp/emar": ("enter_provider_id", "storetime"),
}


def _read(path: Path, cols: list[str]) -> pd.DataFrame:
    head = pd.read_csv(path, nrows=0).columns
    low = {c.lower(): c for c in head}
    df = pd.read_csv(path, usecols=[low[c] for c in cols], dtype=str)
    df.columns = [c.lower() for c in df.columns]
    return df


def _id(s: pd.Series) -> pd.Series:
    return s.str.replace(r"\.0$", "", regex=True)


def _charting(df: pd.DataFrame, user: str, time: str, source: str, prefix: str) -> pd.DataFrame:
    df = df.dropna(subset=[user, time, "subject_id", "hadm_id"])
    return pd.DataFrame({"user_id": prefix + _id(df[user]), "patient_id": _id(df["subject_id"]),
                         "hadm_id": _id(df["hadm_id"]), "stored": pd.to_datetime(df[time]),
                         "source": source})


def mimic3(root: Path) -> dict[str, pd.DataFrame]:
    """Charting by caregiver (CGID), caregivers with their role, patients, movements."""
    parts = [_charting(_read(root / f"{f}.csv.gz", ["subject_id", "hadm_id", u, t]), u, t, name,
                       "cg")
             for name, (f, u, t) in M3_CHARTING.items()]
    cg = _read(root / "CAREGIVERS.csv.gz", ["cgid", "label", "description"])
    lab = cg["label"].str.strip().str.lower().map(ROLE_OF_LABEL)
    desc = cg["description"].str.strip().str.lower().map(ROLE_OF_LABEL)
    users = pd.DataFrame({"user_id": "cg" + cg["cgid"], "role": lab.fillna(desc).fillna("other"),
                          "role_raw": cg["label"].fillna("") + "/" + cg["description"].fillna(""),
                          "name": cg["label"]})
    pats = _read(root / "PATIENTS.csv.gz", ["subject_id", "gender", "dod"])
    patients = pd.DataFrame({"patient_id": pats["subject_id"], "sex": pats["gender"],
                             "deceased_date": pd.to_datetime(pats["dod"])})
    tr = _read(root / "TRANSFERS.csv.gz", ["subject_id", "hadm_id", "eventtype", "curr_careunit",
                                           "curr_wardid", "intime", "outtime"])
    tr = tr.dropna(subset=["intime", "hadm_id"])
    ward = tr["curr_careunit"].fillna("WARD " + tr["curr_wardid"].fillna("?"))
    moves = pd.DataFrame({"patient_id": tr["subject_id"], "hadm_id": _id(tr["hadm_id"]),
                          "start": pd.to_datetime(tr["intime"]),
                          "end": pd.to_datetime(tr["outtime"]), "ward": ward,
                          "department": None,
                          "kind": tr["eventtype"].map({"admit": "admission"}).fillna("transfer")})
    adm = _read(root / "ADMISSIONS.csv.gz", ["subject_id", "hadm_id", "dischtime"])
    sv = _read(root / "SERVICES.csv.gz", ["subject_id", "hadm_id", "transfertime",
                                          "curr_service"])
    return {"charting": pd.concat(parts, ignore_index=True), "users": users,
            "patients": patients,
            "movements": pd.concat([moves, _services(sv, adm)], ignore_index=True)}


def _services(sv: pd.DataFrame, adm: pd.DataFrame) -> pd.DataFrame:
    """Service periods: from a service transfer to the next one, else to discharge."""
    sv = sv.assign(t=pd.to_datetime(sv["transfertime"])).sort_values(["hadm_id", "t"])
    nxt = sv.groupby("hadm_id")["t"].shift(-1)
    dis = sv["hadm_id"].map(adm.drop_duplicates("hadm_id").set_index("hadm_id")["dischtime"])
    return pd.DataFrame({"patient_id": sv["subject_id"], "hadm_id": sv["hadm_id"],
                         "start": sv["t"],
                         "end": nxt.fillna(pd.to_datetime(dis)), "ward": None,
                         "department": sv["curr_service"], "kind": "admission"})


def mimic4(root: Path) -> dict[str, pd.DataFrame]:
    """ICU charting by caregiver_id, order entry and eMAR by provider_id. The demo has no
    role column: an id that enters orders (POE) is taken as a prescriber (physician), an id
    that charts in the ICU or on the eMAR as a nurse; caregiver and provider ids are two id
    systems and stay two users ("cg…", "pr…")."""
    parts = []
    for name, (u, t) in M4_CHARTING.items():
        prefix = "cg" if u == "caregiver_id" else "pr"
        raw = _read(root / f"{name}.csv.gz", ["subject_id", "hadm_id", u, t])
        parts.append(_charting(raw, u, t,
                               name.split("/")[1], prefix))
    ch = pd.concat(parts, ignore_index=True)
    orders = set(ch.loc[ch["source"] == "poe", "user_id"])
    ids = pd.Index(ch["user_id"].unique()).sort_values()
    users = pd.DataFrame({"user_id": ids,
                          "role": ["physician" if u in orders else "nurse" for u in ids],
                          "role_raw": ["order entry" if u in orders else "charting"
                                       for u in ids]})
    pats = _read(root / "hosp/patients.csv.gz", ["subject_id", "gender", "dod"])
    patients = pd.DataFrame({"patient_id": pats["subject_id"], "sex": pats["gender"],
                             "deceased_date": pd.to_datetime(pats["dod"])})
    tr = _read(root / "hosp/transfers.csv.gz", ["subject_id", "hadm_id", "eventtype", "careunit",
                                                "intime", "outtime"])
    tr = tr[tr["eventtype"] != "discharge"].dropna(subset=["intime", "hadm_id"])
    moves = pd.DataFrame({"patient_id": tr["subject_id"], "hadm_id": _id(tr["hadm_id"]),
                          "start": pd.to_datetime(tr["intime"]),
                          "end": pd.to_datetime(tr["outtime"]),
                          "ward": tr["careunit"].fillna("UNKNOWN"), "department": None,
                          "kind": tr["eventtype"].map({"admit": "admission",
                                                       "ED": "admission"}).fillna("transfer")})
    adm = _read(root / "hosp/admissions.csv.gz", ["subject_id", "hadm_id", "dischtime"])
    sv = _read(root / "hosp/services.csv.gz", ["subject_id", "hadm_id", "transfertime",
                                               "curr_service"])
    return {"charting": ch, "users": users, "patients": patients,
            "movements": pd.concat([moves, _services(sv, adm)], ignore_index=True)}
