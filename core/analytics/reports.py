"""The analysts' reports, answered by DuckDB over one tenant's analytic store (core/analytics/store.py).

Every report takes a connection from `open_store` (which checks the role), the tenant's time zone and a
`Period`: days are the shop's local days, so "today" and "this month" mean what the owner means. The
definitions, the same everywhere (tests compute them again in SQL on PostgreSQL's read models):

- an order counts from its placement; rejected orders (nothing could be reserved) are left out;
- revenue = what was paid less what was refunded; average order value = revenue / paid orders;
- item sales (by product, category, warehouse) = quantity x unit price of the lines of paid orders;
- cancellation rate = cancelled / orders; return rate = orders with a return / delivered orders;
- payment failure rate = failed gateway attempts / gateway attempts made in the period.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import duckdb
import pandas as pd

from core.analytics import store
from core.analytics.kpis import Period, add_months, ratio
from core.commands import Actor, require
from core.errors import ValidationError

GRAINS = ("day", "week", "month")
DIMENSIONS = ("channel", "category", "product", "warehouse", "customer")
LOW_COVER_DAYS = 14  # a SKU that runs out within this many days at the last 30 days' pace is low


def require_reader(actor: Actor) -> None:
    require(actor, "reports.view")


def open_store(actor: Actor, tenant_id: object, data_dir=None) -> duckdb.DuckDBPyConnection:
    """The tenant's analytic data for someone who may read reports (checked here, not by the page)."""
    require_reader(actor)
    return store.connect(tenant_id, data_dir)


@dataclass(frozen=True)
class Filters:
    """What the analyst narrowed the reports to; empty means everything."""

    channels: tuple[str, ...] = ()
    skus: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    warehouses: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()


# The orders of the period, in local time, with the filters applied. Every report starts from here.
SELECTED = """
WITH o AS (
    SELECT *, timezone($tz, placed_at AT TIME ZONE 'UTC') AS local_at FROM orders WHERE status <> 'rejected'
), allocations AS (  -- an order reserved again (after a failed payment) counts its last reservation
    SELECT * FROM order_allocations QUALIFY position = max(position) OVER (PARTITION BY order_id)
), matching AS (SELECT o.* FROM o WHERE {filters}
), sel AS (SELECT * FROM matching WHERE local_at >= $start AND local_at < $end)
"""
# Each filter's condition, in the query only when the filter is set (a condition on an empty filter
# would still cost its subquery).
FILTER_SQL = {
    "channels": "list_contains($channels, o.channel)",
    "customers": "list_contains($customers, o.customer_id)",
    "statuses": "list_contains($statuses, o.status)",
    "skus": "o.order_id IN (SELECT order_id FROM order_lines WHERE list_contains($skus, sku))",
    "categories": "o.order_id IN (SELECT l.order_id FROM order_lines l JOIN products p USING (sku)"
    " WHERE list_contains($categories, p.category))",
    "warehouses": "o.order_id IN (SELECT order_id FROM allocations"
    " WHERE list_contains($warehouses, warehouse))",
}


def _params(tz: str, period: Period, filters: Filters | None) -> dict[str, Any]:
    """The query parameters: the zone, the period and the filters that are set."""
    f = filters or Filters()
    chosen = {k: list(getattr(f, k)) for k in FILTER_SQL if getattr(f, k)}
    start, end = datetime.combine(period.start, time.min), datetime.combine(period.end, time.min)
    return {"tz": tz, "start": start, "end": end, **chosen}


def _selected(params: dict[str, Any]) -> str:
    return SELECTED.format(filters=" AND ".join(c for k, c in FILTER_SQL.items() if k in params) or "true")


def _df(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    return con.execute(_selected(params) + sql, params).df()


# KPI cards

KPIS = """
, returned AS (SELECT DISTINCT order_id FROM order_facts WHERE event_type = 'ReturnReceived')
, attempts AS (
    SELECT a.outcome FROM payment_attempts a JOIN matching USING (order_id)
    WHERE timezone($tz, a."at" AT TIME ZONE 'UTC') >= $start
      AND timezone($tz, a."at" AT TIME ZONE 'UTC') < $end
)
SELECT
    (SELECT count(*) FROM sel) AS orders,
    (SELECT coalesce(sum(paid_amount - refunded_amount), 0)::BIGINT FROM sel) AS revenue,
    (SELECT count(*) FROM sel WHERE paid_amount > 0) AS paid_orders,
    (SELECT coalesce(sum(l.quantity), 0)::BIGINT FROM order_lines l JOIN sel USING (order_id)) AS units,
    (SELECT count(*) FROM sel WHERE status = 'cancelled') AS cancelled,
    (SELECT count(*) FROM sel WHERE delivered_at IS NOT NULL) AS delivered,
    (SELECT count(*) FROM sel WHERE order_id IN (SELECT order_id FROM returned)) AS returned,
    (SELECT count(*) FROM attempts) AS attempts,
    (SELECT count(*) FROM attempts WHERE outcome <> 'captured') AS failed_attempts
"""


def kpis(con: duckdb.DuckDBPyConnection, tz: str, period: Period, filters: Filters | None = None) -> dict:
    """The KPI cards' figures for a period (rates are fractions; None when there is nothing to divide)."""
    params = _params(tz, period, filters)
    row = con.execute(_selected(params) + KPIS, params).fetchone()
    orders, revenue, paid, units, cancelled, delivered, returned, attempts, failed = (int(v) for v in row)
    return {
        "revenue": revenue,
        "orders": orders,
        "average_order_value": round(revenue / paid) if paid else None,
        "units": units,
        "cancellation_rate": ratio(cancelled, orders),
        "return_rate": ratio(returned, delivered),
        "payment_failure_rate": ratio(failed, attempts),
    }


# Over time, by a dimension

OVER_TIME_ORDER = """
SELECT date_trunc('{grain}', local_at)::date AS period, {key} AS "key",
       count(*) AS orders, sum(paid_amount - refunded_amount)::BIGINT AS revenue
FROM sel {join} GROUP BY ALL ORDER BY period, "key"
"""
OVER_TIME_LINES = """
, paid_lines AS (
    SELECT sel.local_at, sel.order_id, l.sku, l.name, l.quantity, l.line_total,
           coalesce(p.category, '') AS category
    FROM order_lines l JOIN sel USING (order_id) LEFT JOIN products p USING (sku)
    WHERE sel.paid_amount > 0
)
SELECT date_trunc('{grain}', local_at)::date AS period, {key} AS "key",
       count(DISTINCT order_id) AS orders, sum(line_total)::BIGINT AS revenue, sum(quantity)::BIGINT AS units
FROM paid_lines GROUP BY ALL ORDER BY period, "key"
"""
OVER_TIME_WAREHOUSE = """
, paid_alloc AS (
    SELECT sel.local_at, sel.order_id, a.warehouse, a.quantity,
           a.quantity * (SELECT max(l.unit_price) FROM order_lines l
                         WHERE l.order_id = a.order_id AND l.sku = a.sku) AS amount
    FROM allocations a JOIN sel USING (order_id) WHERE sel.paid_amount > 0
)
SELECT date_trunc('{grain}', local_at)::date AS period, warehouse AS "key",
       count(DISTINCT order_id) AS orders, sum(amount)::BIGINT AS revenue, sum(quantity)::BIGINT AS units
FROM paid_alloc GROUP BY ALL ORDER BY period, "key"
"""


def over_time(
    con: duckdb.DuckDBPyConnection,
    tz: str,
    period: Period,
    grain: str = "day",
    by: str = "channel",
    filters: Filters | None = None,
) -> pd.DataFrame:
    """Orders and revenue per day/week/month (local) split by a dimension: columns period, key, orders,
    revenue (and units for line dimensions). By channel or customer, revenue is paid less refunded; by
    product, category or warehouse it is item sales of paid orders."""
    if grain not in GRAINS:
        raise ValidationError(f"Group by one of: {', '.join(GRAINS)}.")
    if by not in DIMENSIONS:
        raise ValidationError(f"Split by one of: {', '.join(DIMENSIONS)}.")
    params = _params(tz, period, filters)
    if by == "channel":
        sql = OVER_TIME_ORDER.format(grain=grain, key="channel", join="")
    elif by == "customer":
        sql = OVER_TIME_ORDER.format(grain=grain, key="customer_name", join="")
    elif by == "warehouse":
        sql = OVER_TIME_WAREHOUSE.format(grain=grain)
    else:
        sql = OVER_TIME_LINES.format(grain=grain, key="sku" if by == "product" else "category")
    return _df(con, sql, params)


TOP_PRODUCTS = """
SELECT l.sku, any_value(l.name) AS name, coalesce(any_value(p.category), '') AS category,
       sum(l.quantity)::BIGINT AS units, sum(l.line_total)::BIGINT AS revenue,
       count(DISTINCT l.order_id) AS orders
FROM order_lines l JOIN sel USING (order_id) LEFT JOIN products p USING (sku)
WHERE sel.paid_amount > 0
GROUP BY l.sku ORDER BY revenue DESC, l.sku LIMIT $limit
"""


def top_products(
    con, tz: str, period: Period, filters: Filters | None = None, limit: int = 10
) -> pd.DataFrame:
    """The best-selling SKUs by item sales of paid orders."""
    return _df(con, TOP_PRODUCTS, _params(tz, period, filters) | {"limit": limit})


# The funnel and fulfilment

FUNNEL = """
SELECT count(*) AS placed,
       count(paid_at) AS paid,
       count(shipped_at) AS shipped,
       count(delivered_at) AS delivered,
       median(epoch(paid_at - placed_at)) / 3600 AS hours_to_pay,
       median(epoch(shipped_at - paid_at)) / 3600 AS hours_to_ship,
       median(epoch(delivered_at - shipped_at)) / 3600 AS hours_to_deliver
FROM sel
"""
STEPS = ("placed", "paid", "shipped", "delivered")


def funnel(con, tz: str, period: Period, filters: Filters | None = None) -> pd.DataFrame:
    """Orders placed in the period that went on to be paid, shipped, delivered: count per step, the
    conversion from the step before and the median hours the step took."""
    row = _df(con, FUNNEL, _params(tz, period, filters)).iloc[0]
    hours = {"paid": "hours_to_pay", "shipped": "hours_to_ship", "delivered": "hours_to_deliver"}
    out, before = [], None
    for step in STEPS:
        n = int(row[step])
        out.append(
            {
                "step": step,
                "orders": n,
                "conversion": ratio(n, before) if before is not None else None,
                "median_hours": None
                if step == "placed" or pd.isna(row[hours[step]])
                else float(row[hours[step]]),
            }
        )
        before = n
    return pd.DataFrame(out)


FULFILMENT = """
SELECT number, epoch(shipped_at - paid_at) / 3600 AS hours_to_ship,
       epoch(delivered_at - placed_at) / 3600 AS hours_to_deliver
FROM sel WHERE shipped_at IS NOT NULL AND paid_at IS NOT NULL ORDER BY number
"""


def fulfilment_times(con, tz: str, period: Period, filters: Filters | None = None) -> pd.DataFrame:
    """Per shipped order: hours from payment to shipment and from placement to delivery."""
    return _df(con, FULFILMENT, _params(tz, period, filters))


# Payments

PAYMENT_FAILURES = """
SELECT coalesce(regexp_replace(a.gateway, '^gateway:', ''), '') AS gateway, count(*) AS attempts,
       count(*) FILTER (WHERE a.outcome <> 'captured') AS failures,
       count(*) FILTER (WHERE a.outcome = 'declined') AS declines,
       count(*) FILTER (WHERE a.outcome = 'transient') AS transient,
       (count(*) FILTER (WHERE a.outcome <> 'captured'))::double / count(*) AS failure_rate
FROM payment_attempts a JOIN matching USING (order_id)
WHERE timezone($tz, a."at" AT TIME ZONE 'UTC') >= $start AND timezone($tz, a."at" AT TIME ZONE 'UTC') < $end
GROUP BY 1 ORDER BY 1
"""


def payment_failures(con, tz: str, period: Period, filters: Filters | None = None) -> pd.DataFrame:
    """Gateway attempts made in the period, and how many failed (declined or transient), per gateway
    (a capture names its gateway as the payment method "gateway:NAME")."""
    return _df(con, PAYMENT_FAILURES, _params(tz, period, filters))


# Stock

STOCK_COVER = """
WITH levels AS (
    SELECT sku, warehouse, sum(on_hand_change)::BIGINT AS on_hand, sum(reserved_change)::BIGINT AS reserved
    FROM stock_movements GROUP BY ALL
), pace AS (
    SELECT sku, warehouse, -sum(on_hand_change) / 30.0 AS per_day FROM stock_movements
    WHERE kind = 'ship' AND "at" >= $now - INTERVAL 30 DAY GROUP BY ALL
)
SELECT l.sku, coalesce(p2.name, '') AS name, l.warehouse, l.on_hand, l.reserved,
       l.on_hand - l.reserved AS available, coalesce(pace.per_day, 0) AS units_per_day,
       CASE WHEN coalesce(pace.per_day, 0) > 0 THEN (l.on_hand - l.reserved) / pace.per_day
       END AS days_of_cover
FROM levels l LEFT JOIN pace USING (sku, warehouse) LEFT JOIN products p2 USING (sku)
ORDER BY days_of_cover NULLS LAST, l.sku, l.warehouse
"""


def stock_cover(con, now: datetime) -> pd.DataFrame:
    """Stock per SKU and warehouse now, the units shipped per day over the last 30 days, the days that
    lasts, and whether it is low (out, or gone within LOW_COVER_DAYS at that pace)."""
    frame = con.execute(STOCK_COVER, {"now": _utc_naive(now)}).df()
    frame["low"] = (frame["available"] <= 0) | (frame["days_of_cover"].fillna(float("inf")) < LOW_COVER_DAYS)
    return frame


def _utc_naive(at: datetime) -> datetime:
    from datetime import UTC

    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


# Cohorts

COHORTS = """
WITH o AS (
    SELECT customer_id, date_trunc('month', timezone($tz, placed_at AT TIME ZONE 'UTC'))::date AS month
    FROM orders WHERE status <> 'rejected'
), firsts AS (SELECT customer_id, min(month) AS cohort FROM o GROUP BY 1),
activity AS (
    SELECT DISTINCT f.cohort, o.customer_id, datediff('month', f.cohort, o.month) AS months_after
    FROM o JOIN firsts f USING (customer_id)
)
SELECT cohort, months_after, count(*) AS customers FROM activity
WHERE cohort >= $first AND cohort < $end
GROUP BY ALL ORDER BY cohort, months_after
"""


def cohorts(con, tz: str, period: Period) -> pd.DataFrame:
    """Customers by the month of their first order (cohorts starting in the period), and how many of
    them ordered again 0, 1, 2 ... months later; retention = that count / the cohort's size."""
    frame = con.execute(
        COHORTS,
        {"tz": tz, "first": period.start.replace(day=1), "end": period.end},
    ).df()
    if frame.empty:
        return frame.assign(retention=pd.Series(dtype=float))
    size = frame[frame["months_after"] == 0].set_index("cohort")["customers"]
    frame["retention"] = frame["customers"] / frame["cohort"].map(size)
    return frame


# Drill-down: the orders behind a number

ORDERS_BEHIND = """
SELECT number, local_at AS placed, customer_name AS customer, channel, status, total,
       paid_amount AS paid, refunded_amount AS refunded
FROM sel WHERE ($day_start IS NULL OR (local_at >= $day_start AND local_at < $day_end))
ORDER BY number DESC LIMIT $limit
"""


def orders_behind(
    con,
    tz: str,
    period: Period,
    filters: Filters | None = None,
    bucket: date | None = None,
    grain: str = "day",
    limit: int = 1000,
) -> pd.DataFrame:
    """The orders a figure was made of: the period and filters, narrowed to one day/week/month bucket."""
    if bucket is None:
        day_start = day_end = None
    else:
        day_start = datetime.combine(bucket, time.min)
        nxt = {"day": bucket + timedelta(days=1), "week": bucket + timedelta(days=7)}.get(grain)
        day_end = datetime.combine(nxt or add_months(bucket, 1), time.min)
    params = _params(tz, period, filters) | {"day_start": day_start, "day_end": day_end, "limit": limit}
    return _df(con, ORDERS_BEHIND, params)


# The SQL workbench


class QueryRefused(ValidationError):
    pass


def run_sql(
    con: duckdb.DuckDBPyConnection, sql: str, limit: int = 1000, timeout: float = 10.0
) -> tuple[pd.DataFrame, bool]:
    """One read-only SELECT over the tenant's tables; at most `limit` rows (and whether there were more);
    interrupted after `timeout` seconds. The connection holds only this tenant's data and can reach no
    file or setting (store.connect); refusing anything but a SELECT keeps the tables unchanged too."""
    text = (sql or "").strip()
    if not text:
        raise QueryRefused("Write a SELECT query first.")
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        raise QueryRefused(f"The query does not parse: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryRefused("Run one statement at a time.")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise QueryRefused("Only SELECT queries run here: the workbench reads, it never changes anything.")
    cur = con.cursor()
    timer = threading.Timer(timeout, cur.interrupt)
    timer.start()
    try:
        rows = cur.sql(statements[0].query).limit(limit + 1).df()
    except duckdb.InterruptException:
        raise QueryRefused(f"The query ran longer than {timeout:g} s and was stopped.") from None
    except duckdb.Error as exc:
        raise QueryRefused(_first_line(exc)) from None
    finally:
        timer.cancel()
        cur.close()
    return rows.head(limit), len(rows) > limit


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300]


def schema(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The tables and views a workbench query can read, with their columns."""
    return con.execute(
        'SELECT table_name AS "table", column_name AS "column", data_type AS type'
        " FROM information_schema.columns"
        " WHERE table_schema = 'main' ORDER BY table_name, ordinal_position"
    ).df()
