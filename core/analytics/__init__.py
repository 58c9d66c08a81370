"""The per-tenant DuckDB analytic store, kept up to date from the event log (see store.py)."""

from core.analytics.store import connect, revenue_by_day, sync

__all__ = ["connect", "revenue_by_day", "sync"]
