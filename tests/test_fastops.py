"""The fast helpers agree with pandas' own (slow) route."""

import numpy as np
import pandas as pd

from emraudit.fastops import isin, local_days


def test_local_days_match_strftime_across_midnight():
    ts = pd.Series(pd.to_datetime(["2025-06-30T15:59:59Z", "2025-06-30T16:00:00Z", None],
                                  utc=True))
    got = local_days(ts, "Asia/Shanghai")
    assert list(got[:2]) == ["2025-06-30", "2025-07-01"] and pd.isna(got[2])
    ref = ts.dt.tz_convert("Asia/Shanghai").dt.strftime("%Y-%m-%d")
    assert list(got[:2]) == list(ref[:2])


def test_isin_matches_pandas():
    a = pd.Series(["a", "b", None, "d"], dtype="string")
    assert list(isin(a, pd.Index(["b", "d", "x"], dtype="string"))) == [False, True, False, True]
    assert list(isin(a, set())) == [False] * 4
    assert np.array_equal(isin(a, {"a"}), a.isin(["a"]).fillna(False).to_numpy(bool))
