"""Compatibility module: the report lives in :mod:`robustmsa.reports` (tables, statistics, figures)."""
from __future__ import annotations

from .reports import collect_rows, write_report, write_report_data

__all__ = ["collect_rows", "write_report", "write_report_data"]
