"""Charts as PNG images for documents, drawn with matplotlib, with a CJK font for Chinese.

Word cannot show SVG inline, so the charts of the self-inspection report are PNG images,
the same bytes in its DOCX and in its HTML page. Chinese text needs a CJK font: the first
installed of CJK_FONTS is used (Debian's fonts-noto-cjk gives Noto Sans CJK). Matplotlib's
font list is cached on first use and misses a font installed afterwards, so the system's
font files are also looked at once. Without any CJK font `cjk_font()` is None and callers
label their charts in English (`can_draw`) rather than print boxes; the report says which
font to install.
"""

from __future__ import annotations

import io
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Sequence

log = logging.getLogger("emraudit.reports")

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
             "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei",
             "PingFang SC", "Noto Sans CJK JP")
_CJK_FILES = re.compile(r"(?i)(notosanscjk|notosanssc|sourcehansans|wqy|msyh|simhei|pingfang)")
INSTALL_HINT = "fonts-noto-cjk (Debian/Ubuntu: apt-get install fonts-noto-cjk)"
PALETTE = ("#c62828", "#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#607d8b")


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


@lru_cache(maxsize=None)
def cjk_font() -> str | None:
    """The family name of an installed CJK font, or None."""
    from matplotlib import font_manager as fm

    def known() -> str | None:
        names = {f.name for f in fm.fontManager.ttflist}
        return next((n for n in CJK_FONTS if n in names), None)

    name = known()
    if name is None:
        for path in fm.findSystemFonts():
            if _CJK_FILES.search(Path(path).name):
                try:
                    fm.fontManager.addfont(path)
                except (OSError, RuntimeError, ValueError):
                    continue
        name = known()
    if name is None:
        log.warning("no CJK font found; charts are labelled in English (install %s)",
                    INSTALL_HINT)
    return name


def can_draw(text: str) -> bool:
    """Whether `text` can be drawn without boxes: ASCII always, other text with a CJK font."""
    return text.isascii() or cjk_font() is not None


def _figure(title: str, width: float = 7.5, height: float = 3.2):
    plt = _plt()
    font = cjk_font()
    rc = {"font.family": [font, "DejaVu Sans"] if font else ["DejaVu Sans"],
          "axes.unicode_minus": False, "font.size": 9}
    with plt.rc_context(rc):
        fig, ax = plt.subplots(figsize=(width, height), dpi=150)
        ax.set_title(title, fontsize=11, loc="left")
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="y", color="#eceff1", linewidth=0.8)
        ax.set_axisbelow(True)
    return plt, fig, ax, rc


def _png(plt, fig, rc) -> bytes:
    buf = io.BytesIO()
    with plt.rc_context(rc):
        fig.tight_layout()
        fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def stacked_bars(labels: Sequence[str], series: dict[str, Sequence[float]], *, title: str,
                 ylabel: str = "") -> bytes:
    """One bar per label (e.g. a week), stacked by series (e.g. rectification item)."""
    plt, fig, ax, rc = _figure(title)
    with plt.rc_context(rc):
        bottom = [0.0] * len(labels)
        x = list(range(len(labels)))
        for i, (name, vals) in enumerate(series.items()):
            ax.bar(x, vals, bottom=bottom, label=name, color=PALETTE[i % len(PALETTE)],
                   width=0.7)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_xticks(x, labels, rotation=45 if len(labels) > 8 else 0, ha="right"
                      if len(labels) > 8 else "center")
        ax.set_ylabel(ylabel)
        ax.yaxis.get_major_locator().set_params(integer=True)
        if len(series) > 1:
            ax.legend(frameon=False, fontsize=8)
    return _png(plt, fig, rc)


def lines(labels: Sequence[str], series: dict[str, Sequence[float]], *, title: str,
          ylabel: str = "") -> bytes:
    """One line per series over the labels (cumulative progress)."""
    plt, fig, ax, rc = _figure(title)
    with plt.rc_context(rc):
        x = list(range(len(labels)))
        for i, (name, vals) in enumerate(series.items()):
            ax.plot(x, vals, label=name, color=PALETTE[i % len(PALETTE)], marker="o",
                    markersize=3, linewidth=1.6)
        ax.set_xticks(x, labels, rotation=45 if len(labels) > 8 else 0, ha="right"
                      if len(labels) > 8 else "center")
        ax.set_ylabel(ylabel)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(frameon=False, fontsize=8)
    return _png(plt, fig, rc)


def horizontal_bars(labels: Sequence[str], values: Sequence[float], *, title: str,
                    xlabel: str = "") -> bytes:
    """Ranked bars, the largest on top (e.g. cases by department)."""
    plt, fig, ax, rc = _figure(title, height=max(2.2, 0.32 * len(labels) + 1.0))
    with plt.rc_context(rc):
        y = list(range(len(labels)))[::-1]
        ax.barh(y, values, color=PALETTE[1], height=0.6)
        ax.set_yticks(y, labels)
        ax.set_xlabel(xlabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(axis="x", color="#eceff1", linewidth=0.8)
        ax.grid(axis="y", visible=False)
    return _png(plt, fig, rc)


__all__ = ["cjk_font", "can_draw", "stacked_bars", "lines", "horizontal_bars", "INSTALL_HINT"]
