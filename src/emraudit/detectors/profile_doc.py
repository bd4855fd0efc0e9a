"""Render a detector profile from the declarations: every detector, every parameter, each
with its documentation as a comment. `detectors/default.toml` is this output, kept in sync by
a test, so the default profile always documents every parameter.
"""

from __future__ import annotations

import json
from typing import Any

from emraudit.detectors.base import SECTIONS, Param
from emraudit.detectors.registry import all_detectors


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {_toml_value(x)}"
                                for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def _wrap(text: str, prefix: str = "# ", width: int = 96) -> list[str]:
    import textwrap
    return [prefix + line for line in textwrap.wrap(text, width - len(prefix))] or [prefix]


def render_default_profile() -> str:
    out = [
        "# emraudit default detector profile.",
        "#",
        "# Every detector and every parameter, with its default and what it means. Copy this",
        "# file, edit it, and point [detectors] profile = \"my-profile.toml\" at the copy, or",
        "# override single keys under [detectors.\"<id>\"] in emraudit.toml. Each table also",
        "# takes `enabled = false` and `severity = \"low|medium|high|critical\"`. The [explain]",
        "# and [schedule] tables set work several detectors share (override them under",
        "# [detectors.explain] and [detectors.schedule]).",
        "# Generated from the detector declarations (python -m emraudit.detectors.profile_doc);",
        "# a test keeps it in sync.",
        "",
    ]
    detectors = all_detectors()          # loads the modules that declare the sections
    for name, sec in sorted(SECTIONS.items()):
        out.append("# " + "-" * 94)
        out.append(f"# [{name}] — {sec.title}")
        out += _wrap(sec.description)
        moved = sorted(f"{d}.{old}" for d, c in detectors.items() for old, new in c.moved.items()
                       if new.split(".", 1)[0] == name)
        if moved:
            out += _wrap("deprecated keys that still set these: " + ", ".join(moved))
        out.append(f"[{name}]")
        out += _params(sec.params)
        out.append("")
    for det_id, cls in detectors.items():
        out.append("# " + "-" * 94)
        out.append(f"# {det_id} — {cls.name_en} / {cls.name_zh}")
        out.append(f"# rectification item {cls.item}; default severity {cls.severity}; "
                   f"kind {cls.kind}; needs {', '.join(cls.needs)}"
                   + (f"; uses {', '.join(cls.uses)}" if cls.uses else ""))
        if cls.description:
            out += _wrap(cls.description)
        if cls.false_positives:
            out.append("# known false positives:")
            for fp in cls.false_positives:
                out += _wrap(fp, "#   - ")
        out.append(f'["{det_id}"]')
        if not cls.enabled_by_default:
            out.append("# opt-in: see the description for why it is off by default")
        out.append(f"enabled = {_toml_value(cls.enabled_by_default)}")
        out += _params(cls.params)
        out.append("")
    return "\n".join(out)


def _params(params: tuple[Param, ...]) -> list[str]:
    out = []
    for p in params:
        rng = []
        if p.min is not None:
            rng.append(f">= {p.min}")
        if p.max is not None:
            rng.append(f"<= {p.max}")
        if p.choices:
            rng.append("one of " + ", ".join(map(str, p.choices)))
        meta = ", ".join(x for x in (p.unit, "; ".join(rng)) if x)
        out += _wrap(p.doc + (f" ({meta})" if meta else ""))
        out.append(f"{p.name} = {_toml_value(p.default)}")
    return out


if __name__ == "__main__":  # regenerate: python -m emraudit.detectors.profile_doc > default.toml
    print(render_default_profile())
