-- Refunds sent back through the gateway that captured the charge (core/payments/refunds.py).
-- A row is folded inline from RefundIssued when the order was paid through a gateway, in the same
-- transaction: the refund cannot be lost between the decision and the worker. The worker claims due
-- rows with FOR UPDATE SKIP LOCKED and a lease; each refund has one idempotency key for all its
-- attempts, so a retry after a crash never refunds twice.
CREATE TABLE refunds (
    tenant_id       uuid NOT NULL,
    id              uuid NOT NULL,
    order_id        uuid NOT NULL,
    order_number    bigint NOT NULL,
    payment_id      uuid NOT NULL,
    gateway         text NOT NULL,
    capture         text NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        char(3) NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    reference       text,
    last_error      text,
    lease_until     timestamptz,
    leased_by       text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX refunds_due ON refunds (tenant_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX refunds_by_order ON refunds (tenant_id, order_id);

ALTER TABLE refunds ENABLE ROW LEVEL SECURITY;
ALTER TABLE refunds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refunds USING (tenant_id = (SELECT oms_current_tenant()))
    WITH CHECK (tenant_id = (SELECT oms_current_tenant()));
GRANT SELECT, INSERT, UPDATE, DELETE ON refunds TO oms_app;

-- Which tenants have refunds due, for the worker's claim loop (RLS hides other tenants from oms_app).
CREATE FUNCTION oms_platform_tenants_with_due_refunds() RETURNS TABLE (tenant_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT DISTINCT r.tenant_id FROM refunds r WHERE r.status = 'pending' AND r.next_attempt_at <= now()
       AND (r.lease_until IS NULL OR r.lease_until < now())
$$;
REVOKE ALL ON FUNCTION oms_platform_tenants_with_due_refunds() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oms_platform_tenants_with_due_refunds() TO oms_app;
