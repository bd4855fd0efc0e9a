"""Source readers: `open_connector(name, config)` returns the connector for one configured source.

One module per source kind (csv, jsonl, sql, fhir); each applies a connector profile
(`emraudit.connectors.profile`) so that every batch it yields carries canonical column names.

Connector kinds are opened through entry points (datasette's habit): the built-in kinds are
entry points declared here, and a third party adds a kind by declaring one in the
`emraudit.connectors` group of its package, named by the kind and pointing at a `Connector`
subclass (`[project.entry-points."emraudit.connectors"] hl7 = "mypkg.hl7:Hl7Connector"`).
The kind is then a valid `connector = "hl7"` in `emraudit.toml`.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points

from emraudit.connectors.base import Batch, Connector
from emraudit.connectors.profile import ConnectorProfile, builtin_profiles, load_profile
from emraudit.errors import ConfigError

GROUP = "emraudit.connectors"

BUILTIN_KINDS = tuple(EntryPoint(kind, value, GROUP) for kind, value in (
    ("csv", "emraudit.connectors.csv:CsvConnector"),
    ("jsonl", "emraudit.connectors.jsonl:JsonlConnector"),
    ("sql", "emraudit.connectors.sql:SqlConnector"),
    ("fhir", "emraudit.connectors.fhir:FhirConnector"),
))


@lru_cache(maxsize=1)
def connector_kinds() -> dict[str, EntryPoint]:
    """Every connector kind, built-in first, then those of installed packages (read once)."""
    kinds = {ep.name: ep for ep in BUILTIN_KINDS}
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        if ep.name in kinds and kinds[ep.name].value != ep.value:
            raise ConfigError(f"connector '{ep.name}' is declared twice: {kinds[ep.name].value} "
                              f"and {ep.value} (entry points of the group {GROUP})",
                              key="connector")
        kinds[ep.name] = ep
    return kinds


def connector_class(kind: str) -> type[Connector]:
    kinds = connector_kinds()
    if kind not in kinds:
        raise ConfigError(f"unknown connector '{kind}' (expected one of "
                          f"{', '.join(sorted(kinds))})", key="connector")
    ep = kinds[kind]
    try:
        cls = ep.load()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"connector '{kind}' cannot be loaded from {ep.value}: {exc}",
                          key="connector") from None
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigError(f"connector '{kind}' ({ep.value}) is not a Connector class",
                          key="connector")
    return cls


def open_connector(name: str, config) -> Connector:
    """The connector for `config.sources[name]`, with its profile loaded and validated."""
    if name not in config.sources:
        raise ConfigError(f"no source '{name}' (configured: {', '.join(config.sources) or 'none'})",
                          file=str(config.path), key=f"sources.{name}")
    source = config.sources[name]
    table = config.source_table(name)
    ref = source.profile
    if source.connector == "fhir" and ref == "canonical" and \
            "profile" not in source.model_fields_set:
        ref = "fhir-auditevent"      # the natural default for FHIR sources
    try:
        profile = load_profile(ref, config.base)
    except ConfigError as err:
        if err.key == "profile" and not err.file:
            raise ConfigError(err.message, file=str(config.path),
                              key=f"sources.{name}.profile") from None
        raise
    try:
        cls = connector_class(source.connector)
    except ConfigError as err:
        raise ConfigError(err.message, file=str(config.path),
                          key=f"sources.{name}.connector") from None
    return cls(name, table, source, config, profile)


__all__ = ["open_connector", "connector_class", "connector_kinds", "Batch", "Connector",
           "ConnectorProfile", "load_profile", "builtin_profiles", "GROUP"]
