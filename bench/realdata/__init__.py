"""The real-data bench (issue 16): the MIMIC-III and MIMIC-IV demos turned into canonical
tables, planted misuse with a truth file, every detector run through `emraudit scan`, and the
FHIR AuditEvent examples and an OpenEMR `log` table scanned the same way.

    .venv/bin/python -m bench.realdata [--data ../shared/realdata] [--out /tmp/realdata]

See README.md beside this file for every modelling decision.
"""
