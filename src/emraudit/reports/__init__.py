"""Reports: the per-scan folder (dashboard, case pages, findings.jsonl, problem ledger), the
patient access report and the period summary, in Chinese or English.

The scan pipeline calls `write_scan_reports(config, store, lake, scan_id, unmask=False)`.
"""

from __future__ import annotations


def write_scan_reports(config, store, lake, scan_id: str, *, unmask: bool = False,
                       workers: int | None = None):
    """Write reports/<scan_id>/ and point reports/latest at it; returns the folder. Case
    pages are written by `workers` processes (default: the scan's, for large scans)."""
    from emraudit.reports.render import write_scan_reports as _write
    return _write(config, store, lake, scan_id, unmask=unmask, workers=workers)


__all__ = ["write_scan_reports"]
