"""Inline SVG charts for case pages, written by hand (no chart library at runtime).

Two charts tell a reviewer whether the flagged activity stands out from the user's normal
behaviour: the user's accesses over the flagged day (hourly bars, every flagged access marked
in red on a time axis, office hours shaded) and the user's accesses per day over the last 30
days (the flagged days in red). Every text inside the SVG is escaped here; the result is
markup that templates insert as is.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from markupsafe import Markup, escape

FLAG = "#c62828"
BAR = "#90a4ae"
SHADE = "#e8f5e9"
AXIS = "#455a64"
# flagged accesses drawn one tick each up to this many; beyond, one tick per pixel column
MAX_TICKS = 300


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def day_chart(hours: Sequence[float], flagged_hours: Sequence[float], *,
              office_hours: tuple[int, int] = (8, 18), title: str = "",
              flagged_label: str = "flagged", office_label: str = "office hours",
              tooltips: Sequence[str] | None = None) -> Markup:
    """Accesses per hour of one day (0..24, site time) with the flagged ones marked.

    `hours`: the local time of every access of the user that day, as fractional hours;
    `flagged_hours`: those of the flagged accesses (drawn as red ticks below the bars, in
    time order; `tooltips`: their times, read only for the ticks drawn, see `_ticks`).
    """
    w, h, left, right, top, bottom = 720, 200, 36, 24, 22, 46
    pw, ph = w - left - right, h - top - bottom
    hrs = np.asarray(hours, dtype=float).reshape(-1)
    counts = np.bincount(np.clip(hrs.astype(int), 0, 23), minlength=24) if len(hrs) else \
        np.zeros(24, dtype=int)
    flagged = np.asarray(flagged_hours, dtype=float).reshape(-1)
    fcounts = np.bincount(np.clip(flagged.astype(int), 0, 23), minlength=24) if len(flagged) \
        else np.zeros(24, dtype=int)
    ymax = max(1, int(counts.max()) if len(counts) else 1)
    x = lambda hr: left + pw * hr / 24.0  # noqa: E731
    y = lambda n: top + ph - ph * n / ymax  # noqa: E731
    out = [f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" '
           f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)}</title>"]
    o0, o1 = office_hours
    out.append(f'<rect x="{_num(x(o0))}" y="{top}" width="{_num(x(o1) - x(o0))}" '
               f'height="{ph}" fill="{SHADE}"><title>{escape(office_label)}</title></rect>')
    bw = pw / 24.0
    for i in range(24):
        n = int(counts[i])
        if n:
            fill = FLAG if fcounts[i] else BAR
            out.append(f'<rect x="{_num(x(i) + 1)}" y="{_num(y(n))}" width="{_num(bw - 2)}" '
                       f'height="{_num(top + ph - y(n))}" fill="{fill}" fill-opacity="0.75">'
                       f"<title>{i:02d}:00–{i + 1:02d}:00: {n}"
                       + (f" ({int(fcounts[i])} {escape(flagged_label)})" if fcounts[i] else "")
                       + "</title></rect>")
    base = top + ph
    out.append(f'<line x1="{left}" y1="{base}" x2="{left + pw}" y2="{base}" '
               f'stroke="{AXIS}" stroke-width="1"/>')
    for xx, tip in _ticks(x, flagged, tooltips, flagged_label):
        out.append(f'<line class="flag" x1="{xx}" y1="{base + 3}" x2="{xx}" y2="{base + 15}" '
                   f'stroke="{FLAG}" stroke-width="2"><title>{escape(tip)}</title></line>')
    for i in range(0, 25, 3):
        out.append(f'<text x="{_num(x(i))}" y="{base + 29}" font-size="11" fill="{AXIS}" '
                   f'text-anchor="middle">{i:02d}:00</text>')
    out.append(f'<text x="{left - 4}" y="{top + 4}" font-size="11" fill="{AXIS}" '
               f'text-anchor="end">{ymax}</text>')
    out.append(f'<text x="{left - 4}" y="{base}" font-size="11" fill="{AXIS}" '
               f'text-anchor="end">0</text>')
    out.append(f'<rect x="{left}" y="{h - 12}" width="10" height="10" fill="{FLAG}"/>'
               f'<text x="{left + 14}" y="{h - 3}" font-size="11" fill="{AXIS}">'
               f"{escape(flagged_label)}</text>"
               f'<rect x="{left + 150}" y="{h - 12}" width="10" height="10" fill="{SHADE}" '
               f'stroke="{AXIS}" stroke-width="0.5"/>'
               f'<text x="{left + 164}" y="{h - 3}" font-size="11" fill="{AXIS}">'
               f"{escape(office_label)}</text>")
    out.append("</svg>")
    return Markup("".join(out))


def _ticks(x, flagged: np.ndarray, tooltips: Sequence[str] | None,
           flagged_label: str) -> list[tuple[str, str]]:
    """(x, tooltip) of each red tick: one per flagged access up to MAX_TICKS; beyond, one
    per pixel column, its tooltip the first and last time there and how many (a bulk
    user's day flags hundreds of thousands of accesses: one tick each made pages of 40 MB).
    `tooltips` is read only where a tick needs it."""
    if len(flagged) <= MAX_TICKS:
        tips = list(tooltips) if tooltips is not None else [""] * len(flagged)
        return [(_num(x(hr)), tip) for hr, tip in zip(flagged, tips)]
    px = np.round(x(flagged)).astype(np.int64)
    order = np.argsort(px, kind="stable")           # in time order already: no change
    col = px[order]
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    ends = np.r_[starts[1:], len(col)]
    out = []
    for a, b in zip(starts.tolist(), ends.tolist()):    # one per pixel column: at most ~700
        first, last = int(order[a]), int(order[b - 1])
        t0 = tooltips[first] if tooltips is not None else ""
        if b - a == 1:
            out.append((_num(col[a]), t0))
            continue
        t1 = tooltips[last] if tooltips is not None else ""
        span = t0 if t0 == t1 else f"{t0}–{t1}"
        out.append((_num(col[a]), f"{span} ({b - a} {flagged_label})".strip()))
    return out


def days_chart(days: Sequence[str], counts: Sequence[int], flagged_days: Iterable[str], *,
               title: str = "", flagged_label: str = "flagged day",
               median_label: str = "median") -> Markup:
    """Accesses per day (oldest first), flagged days in red, with the median as a line
    (`median_label`: its tooltip, in the page's language)."""
    w, h, left, right, top, bottom = 720, 170, 36, 10, 22, 40
    pw, ph = w - left - right, h - top - bottom
    flagged = set(flagged_days)
    n = max(1, len(days))
    vals = np.asarray(list(counts), dtype=float) if len(counts) else np.zeros(0)
    ymax = max(1.0, float(vals.max()) if len(vals) else 1.0)
    bw = pw / n
    y = lambda v: top + ph - ph * v / ymax  # noqa: E731
    out = [f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" '
           f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{escape(title)}</title>"]
    for i, (d, v) in enumerate(zip(days, vals)):
        fill = FLAG if d in flagged else BAR
        xx = left + i * bw
        out.append(f'<rect x="{_num(xx + 1)}" y="{_num(y(v))}" width="{_num(max(1, bw - 2))}" '
                   f'height="{_num(top + ph - y(v))}" fill="{fill}"'
                   + (' class="flag"' if d in flagged else "")
                   + f"><title>{escape(d)}: {int(v)}</title></rect>")
    base = top + ph
    if len(vals):
        med = float(np.median(vals))
        out.append(f'<line x1="{left}" y1="{_num(y(med))}" x2="{left + pw}" y2="{_num(y(med))}" '
                   f'stroke="{AXIS}" stroke-dasharray="4 3" stroke-width="1">'
                   f"<title>{escape(median_label)} {_num(med)}</title></line>")
    out.append(f'<line x1="{left}" y1="{base}" x2="{left + pw}" y2="{base}" '
               f'stroke="{AXIS}" stroke-width="1"/>')
    step = max(1, n // 6)
    for i in range(0, len(days), step):
        out.append(f'<text x="{_num(left + i * bw + bw / 2)}" y="{base + 14}" font-size="11" '
                   f'fill="{AXIS}" text-anchor="middle">{escape(str(days[i])[5:])}</text>')
    out.append(f'<text x="{left - 4}" y="{top + 4}" font-size="11" fill="{AXIS}" '
               f'text-anchor="end">{int(ymax)}</text>')
    if flagged_label:
        out.append(f'<rect x="{left}" y="{h - 12}" width="10" height="10" fill="{FLAG}"/>'
                   f'<text x="{left + 14}" y="{h - 3}" font-size="11" fill="{AXIS}">'
                   f"{escape(flagged_label)}</text>")
    out.append("</svg>")
    return Markup("".join(out))


def trend_chart(days: Sequence[str], counts: Sequence[int], highlight: Iterable[str], *,
                title: str = "", highlight_label: str = "this scan",
                median_label: str = "median") -> Markup:
    """Cases per day across scans (dashboard); the days of this scan highlighted."""
    return days_chart(days, counts, highlight, title=title, flagged_label=highlight_label,
                      median_label=median_label)
