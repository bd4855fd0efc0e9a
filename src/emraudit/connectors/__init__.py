"""Source readers: `open_connector(name, config)` returns the connector for one configured source.

One module per source kind (csv, jsonl, sql, fhir); each applies a connector profile
(`emraudit.connectors.profile`) so that every batch it yields carries canonical column names.
"""

from __future__ import annotations

import importlib

from emraudit.connectors.base import Batch, Connector
from emraudit.connectors.profile import ConnectorProfile, builtin_profiles, load_profile
from emraudit.errors import ConfigError

KINDS = {
    "csv": ("emraudit.connectors.csv", "CsvConnector"),
    "jsonl": ("emraudit.connectors.jsonl", "JsonlConnector"),
    "sql": ("emraudit.connectors.sql", "SqlConnector"),
    "fhir": ("emraudit.connectors.fhir", "FhirConnector"),
}


def connector_class(kind: str) -> type[Connector]:
    if kind not in KINDS:
        raise ConfigError(f"unknown connector '{kind}' (expected one of {', '.join(KINDS)})",
                          key="connector")
    module, cls = KINDS[kind]
    return getattr(importlib.import_module(module), cls)


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
    cls = connector_class(source.connector)
    return cls(name, table, source, config, profile)


__all__ = ["open_connector", "connector_class", "Batch", "Connector", "ConnectorProfile",
           "load_profile", "builtin_profiles", "KINDS"]
