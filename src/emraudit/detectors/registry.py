"""The detector registry: built-ins register through the same mechanism a plugin would.

Built-in modules are listed in BUILTIN_MODULES (datasette's DEFAULT_PLUGINS habit); third
parties can add detectors through the `emraudit.detectors` entry-point group. Importing a
module runs its `@register` decorators.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from emraudit.detectors.base import Detector

_REGISTRY: dict[str, type[Detector]] = {}
_LOADED = False

BUILTIN_MODULES = (
    "emraudit.detectors.care",
    "emraudit.detectors.cred",
    "emraudit.detectors.bulk",
    "emraudit.detectors.copy",
    "emraudit.detectors.snoop",
    "emraudit.detectors.btg",
    "emraudit.detectors.anomaly.user_day",
    "emraudit.detectors.anomaly.relational",
    "emraudit.detectors.rights",
    "emraudit.detectors.rights_use",
    "emraudit.detectors.accounts",
)


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: add a detector to the registry under its id."""
    for attr in ("id", "name_en", "name_zh", "item"):
        if not getattr(cls, attr, None):
            raise TypeError(f"{cls.__name__} must declare '{attr}'")
    if cls.id in _REGISTRY and _REGISTRY[cls.id] is not cls:
        raise TypeError(f"detector id {cls.id!r} registered twice")
    _REGISTRY[cls.id] = cls
    return cls


def load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    for name in BUILTIN_MODULES:
        importlib.import_module(name)     # a built-in that fails to import is a bug: raise
    for ep in entry_points(group="emraudit.detectors"):
        ep.load()
    _LOADED = True


def all_detectors() -> dict[str, type[Detector]]:
    load_builtins()
    return dict(sorted(_REGISTRY.items()))


def get(detector_id: str) -> type[Detector]:
    return all_detectors()[detector_id]


def check_id(detector_id: str, option: str = "--detector", *, families: bool = False) -> str:
    """`detector_id` when a registered detector has it (with `families`, also a `family.*`
    pattern matching one); otherwise a user mistake naming `option`, with the closest ids
    as suggestions: a typo must not quietly select nothing."""
    import difflib

    from emraudit.errors import UserError

    known = list(all_detectors())
    value = (detector_id or "").strip()
    if value in known:
        return value
    if families and value.endswith(".*") and any(k.startswith(value[:-1]) for k in known):
        return value
    family = families and value.endswith(".*")
    pool = sorted({k.split(".")[0] + ".*" for k in known}) if family else known
    close = difflib.get_close_matches(value, pool, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else \
        " (see `emraudit detectors list`)"
    what = "no detector in that family" if family else "unknown detector"
    raise UserError(f"{option}: {what} '{value}'{hint}")
