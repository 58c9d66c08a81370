-- Scheduled summaries and threshold alerts (core/analytics/schedules.py). Both are read models of
-- their events: ReportSubscriptionChanged / ReportSummaryQueued fold into report_subscriptions,
-- AlertRuleSaved / AlertRuleRemoved / AlertTriggered / AlertCleared into alert_rules.

-- One row per user who asked for summaries or alerts by email; last_summary_start is the first day
-- of the last period a summary was queued for, so the worker knows what is due without a search.
CREATE TABLE report_subscriptions (
    tenant_id          uuid NOT NULL,
    username           text NOT NULL,
    email              text NOT NULL,
    frequency          text NOT NULL CHECK (frequency IN ('off', 'daily', 'weekly')),
    alerts             boolean NOT NULL,
    last_summary_start date,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, username)
);

-- A KPI watched over a window; breached_at is set while it is past its threshold. A change decided on
-- a store that held fewer events than as_of (a worker whose copy was behind) is refused.
CREATE TABLE alert_rules (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    metric      text NOT NULL,
    direction   text NOT NULL CHECK (direction IN ('above', 'below')),
    threshold   double precision NOT NULL,
    window_name text NOT NULL,
    active      boolean NOT NULL DEFAULT true,
    breached_at timestamptz,
    last_value  double precision,
    as_of       bigint NOT NULL DEFAULT 0,  -- events in the analytic store the last change was decided on
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['report_subscriptions', 'alert_rules'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = (SELECT oms_current_tenant()))'
                       ' WITH CHECK (tenant_id = (SELECT oms_current_tenant()))', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO oms_app', t);
    END LOOP;
END $$;
