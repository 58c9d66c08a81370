"""Analytics: the per-tenant DuckDB store kept up to date from the event log (store.py), the reports
over it (reports.py) and the summaries and alerts sent from them (schedules.py).

Nothing is imported here: store and reports load DuckDB, pyarrow and pandas, which processes that only
fold events (schedules' read model is in projections.registry()) should not pay for."""
