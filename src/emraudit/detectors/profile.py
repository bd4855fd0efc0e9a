"""Detector profiles: `detectors/<name>.toml` plus `[detectors]` overrides in emraudit.toml.

A profile has one table per detector id with its parameters and `enabled`. Everything is
checked against the detector declarations, strictly (no coercion: `"5"` is not a number nor
`1` a boolean): an unknown id or key, a wrong type (of a value or of a list's elements), a
value out of range, or a combination the detector itself refuses is a ConfigError naming the
file and the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from emraudit.detectors.base import Detector
from emraudit.detectors.registry import all_detectors
from emraudit.errors import ConfigError

RESERVED = {"enabled", "severity"}


@dataclass
class DetectorSetting:
    cls: type[Detector]
    enabled: bool
    params: dict[str, Any]
    severity: str | None = None

    def instantiate(self) -> Detector:
        det = self.cls(**self.params)
        if self.severity:
            det.severity = self.severity
        return det


def builtin_profile_path(name: str) -> Path:
    return Path(str(resources.files("emraudit") / "profiles" / "detectors" / f"{name}.toml"))


def find_profile(name_or_path: str, base: Path | None) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or "/" in name_or_path:
        if not p.is_absolute() and base is not None:
            p = base / p
        if not p.exists():
            raise ConfigError("detector profile not found", file=str(p))
        return p
    builtin = builtin_profile_path(name_or_path)
    if not builtin.exists():
        raise ConfigError(f"no built-in detector profile named '{name_or_path}'",
                          key="detectors.profile")
    return builtin


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from None


def _apply(settings: dict[str, DetectorSetting], data: dict, file: str, prefix: str,
           origin: dict[str, tuple[str, str]]) -> None:
    """Apply one file's tables; `origin` records, per detector, the file and key that last
    set something (to name them if the detector refuses the combination)."""
    from emraudit.model import SEVERITIES
    for det_id, table in data.items():
        key = f"{prefix}{det_id}"
        if det_id not in settings:
            raise ConfigError(f"unknown detector (known: {', '.join(settings)})", file=file,
                              key=key)
        if not isinstance(table, dict):
            raise ConfigError("expected a table of parameters", file=file, key=key)
        origin[det_id] = (file, key)
        st = settings[det_id]
        declared = {p.name: p for p in st.cls.params}
        for pname, value in table.items():
            pkey = f"{key}.{pname}"
            if pname == "enabled":
                if not isinstance(value, bool):
                    raise ConfigError(f"expected true or false, got {value!r}", file=file, key=pkey)
                st.enabled = value
            elif pname == "severity":
                if not isinstance(value, str) or value not in SEVERITIES:
                    raise ConfigError(f"expected one of {', '.join(SEVERITIES)}", file=file,
                                      key=pkey)
                st.severity = value
            elif pname not in declared:
                raise ConfigError(f"unknown parameter (known: {', '.join(declared) or 'none'})",
                                  file=file, key=pkey)
            else:
                try:
                    st.params[pname] = declared[pname].check(value)
                except ValueError as exc:
                    raise ConfigError(str(exc), file=file, key=pkey) from None


def resolve_detectors(section: dict | None, config_file: Path | None = None) -> dict[str, DetectorSetting]:
    """The settings in force: declared defaults, then the profile, then config overrides."""
    section = dict(section or {})
    profile_name = section.pop("profile", "default")
    if not isinstance(profile_name, str):
        raise ConfigError("expected a profile name or path", file=str(config_file),
                          key="detectors.profile")
    settings = {i: DetectorSetting(c, c.enabled_by_default,
                                   {p.name: p.default for p in c.params})
                for i, c in all_detectors().items()}
    path = find_profile(profile_name, config_file.parent if config_file else None)
    origin: dict[str, tuple[str, str]] = {}
    _apply(settings, _read_toml(path), str(path), "", origin)
    _apply(settings, section, str(config_file or "emraudit.toml"), "detectors.", origin)
    for det_id, (file, key) in origin.items():
        try:      # checks a detector makes across its parameters (e.g. IP ranges)
            settings[det_id].instantiate()
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc), file=file, key=key) from None
    return settings
