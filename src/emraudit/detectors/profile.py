"""Detector profiles: `detectors/<name>.toml` plus `[detectors]` overrides in emraudit.toml.

A profile has one table per detector id with its parameters and `enabled`, and one table per
section of shared parameters (`[explain]`, `[schedule]`: base.SECTIONS). Everything is
checked against the declarations, strictly (no coercion: `"5"` is not a number nor
`1` a boolean): an unknown id or key, a wrong type (of a value or of a list's elements), a
value out of range, or a combination the detector itself refuses is a ConfigError naming the
file and the key. A key a detector's table held before it moved to a section (the detector's
`moved` declaration) still works: it sets the section's parameter, with a deprecation note.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from emraudit.detectors.base import SECTIONS, Detector, Param
from emraudit.detectors.registry import all_detectors
from emraudit.errors import ConfigError

RESERVED = {"enabled", "severity"}


@dataclass
class DetectorSetting:
    cls: type[Detector]
    enabled: bool
    params: dict[str, Any]
    severity: str | None = None
    # the sections' parameters set by the profile (shared by every setting of one profile)
    sections: dict[str, dict] = field(default_factory=dict)

    def instantiate(self) -> Detector:
        det = self.cls(**self.params)
        if self.severity:
            det.severity = self.severity
        det.sections = self.sections
        return det


class Settings(dict):
    """The settings in force, by detector id (a dict of DetectorSetting), with the sections'
    parameters set by the profile (`sections`: name -> {param: value}; the declared defaults
    are added by ctx.section) and the deprecation `notes` of old keys the profile used."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sections: dict[str, dict] = {}
        self.notes: list[str] = []


def context_args(settings: dict[str, DetectorSetting]) -> dict:
    """What a detection Context takes from the settings in force: each detector's parameters
    and the sections' ([explain], [schedule])."""
    sections = getattr(settings, "sections", None)
    if sections is None:         # a few settings picked from the profile's (tune's variants)
        sections = next((s.sections for s in settings.values()), {})
    return {"detector_params": {i: dict(s.params) for i, s in settings.items()},
            "sections": {n: dict(v) for n, v in sections.items()}}


def tunable_params(cls: type[Detector]) -> dict[str, Param]:
    """The keys a detector's table takes: its parameters, and the section parameters its old
    keys set (`moved`: care.no_relationship's grace_after_days is [explain]'s)."""
    out = {p.name: p for p in cls.params}
    for old, new in cls.moved.items():
        section, pname = new.split(".", 1)
        out.setdefault(old, next(p for p in SECTIONS[section].params if p.name == pname))
    return out


def with_value(st: DetectorSetting, key: str, value: Any) -> DetectorSetting:
    """A copy of `st` with one key of its table set (a moved key sets its section's
    parameter, in a copy of the sections)."""
    import copy
    out = copy.copy(st)
    if key in st.cls.moved and key not in {p.name for p in st.cls.params}:
        section, pname = st.cls.moved[key].split(".", 1)
        out.sections = {**st.sections, section: {**st.sections.get(section, {}), pname: value}}
    else:
        out.params = dict(st.params, **{key: value})
    return out


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


def _apply(settings: Settings, data: dict, file: str, prefix: str,
           origin: dict[str, tuple[str, str]]) -> None:
    """Apply one file's tables; `origin` records, per detector, the file and key that last
    set something (to name them if the detector refuses the combination)."""
    from emraudit.model import SEVERITIES
    moved: dict[tuple[str, str], list[tuple[str, Any]]] = {}   # (section, param) -> [(key, v)]
    for det_id, table in data.items():
        key = f"{prefix}{det_id}"
        if det_id in SECTIONS:
            _apply_section(settings, det_id, table, file, key)
            continue
        if det_id not in settings:
            raise ConfigError(f"unknown detector or section (detectors: {', '.join(settings)}; "
                              f"sections: {', '.join(SECTIONS)})", file=file, key=key)
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
            elif pname in st.cls.moved and pname not in declared:
                section, new = st.cls.moved[pname].split(".", 1)
                moved.setdefault((section, new), []).append((pkey, value))
            elif pname not in declared:
                raise ConfigError(f"unknown parameter (known: {', '.join(declared) or 'none'})",
                                  file=file, key=pkey)
            else:
                try:
                    st.params[pname] = declared[pname].check(value)
                except ValueError as exc:
                    raise ConfigError(str(exc), file=file, key=pkey) from None
    explicit = {(n, k) for n in SECTIONS if n in data and isinstance(data[n], dict)
                for k in data[n]}
    for (section, pname), given in moved.items():
        _apply_moved(settings, section, pname, given, file, prefix,
                     (section, pname) in explicit)


def _apply_section(settings: Settings, name: str, table: Any, file: str, key: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError("expected a table of parameters", file=file, key=key)
    declared = {p.name: p for p in SECTIONS[name].params}
    values = settings.sections.setdefault(name, {})
    for pname, value in table.items():
        if pname not in declared:
            raise ConfigError(f"unknown parameter (known: {', '.join(declared)})", file=file,
                              key=f"{key}.{pname}")
        try:
            values[pname] = declared[pname].check(value)
        except ValueError as exc:
            raise ConfigError(str(exc), file=file, key=f"{key}.{pname}") from None


def _apply_moved(settings: Settings, section: str, pname: str, given: list[tuple[str, Any]],
                 file: str, prefix: str, explicit: bool) -> None:
    """Old keys of one file for a section's parameter: checked as the parameter; they set it
    unless the file sets the section's own key; two that disagree are an error."""
    param = next(p for p in SECTIONS[section].params if p.name == pname)
    new_key = f"{prefix}{section}.{pname}"
    checked = []
    for pkey, value in given:
        try:
            checked.append((pkey, param.check(value)))
        except ValueError as exc:
            raise ConfigError(str(exc), file=file, key=pkey) from None
    keys = ", ".join(k for k, _ in checked)
    if explicit:
        settings.notes.append(f"{file}: {keys} deprecated and ignored: {new_key} is set")
        return
    if len({repr(v) for _, v in checked}) > 1:
        raise ConfigError(f"these deprecated keys disagree ({keys}); they are now one "
                          f"parameter: set {new_key} instead", file=file, key=checked[0][0])
    settings.sections.setdefault(section, {})[pname] = checked[0][1]
    settings.notes.append(f"{file}: {keys} deprecated: set {new_key} instead")


def resolve_detectors(section: dict | None, config_file: Path | None = None) -> Settings:
    """The settings in force: declared defaults, then the profile, then config overrides
    (`[detectors."<id>"]` and `[detectors.<section>]` in emraudit.toml)."""
    section = dict(section or {})
    profile_name = section.pop("profile", "default")
    if not isinstance(profile_name, str):
        raise ConfigError("expected a profile name or path", file=str(config_file),
                          key="detectors.profile")
    settings = Settings({i: DetectorSetting(c, c.enabled_by_default,
                                            {p.name: p.default for p in c.params})
                         for i, c in all_detectors().items()})
    for st in settings.values():
        st.sections = settings.sections
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
