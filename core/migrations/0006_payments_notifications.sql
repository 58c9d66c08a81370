-- Payments through gateways and notifications through an outbox (core/payments, core/notifications).
-- payments and payment_attempts are read models folded from order events; notifications is the
-- outbox, written by the same transactions as the events that cause its rows. The worker claims
-- due rows of both with FOR UPDATE SKIP LOCKED and a lease, so a killed worker's work is picked
-- up again when its lease runs out.

-- Retry policy, gateways (in priority order) and notification channels, changed by the owner through
-- TenantSettingsChanged. Secrets (gateway tokens, SMTP password) are not in the event log: they live
-- in tenant_secrets, and the event only says that one was set.
ALTER TABLE tenant_settings
    ADD COLUMN payment_attempt_limit int NOT NULL DEFAULT 5 CHECK (payment_attempt_limit BETWEEN 1 AND 10),
    ADD COLUMN payment_backoff_seconds int NOT NULL DEFAULT 30 CHECK (payment_backoff_seconds BETWEEN 1 AND 3600),
    ADD COLUMN circuit_failures int NOT NULL DEFAULT 3 CHECK (circuit_failures BETWEEN 1 AND 100),
    ADD COLUMN circuit_reset_seconds int NOT NULL DEFAULT 60 CHECK (circuit_reset_seconds BETWEEN 1 AND 86400),
    ADD COLUMN gateways jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN notification_channels jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN notification_attempt_limit int NOT NULL DEFAULT 6 CHECK (notification_attempt_limit BETWEEN 1 AND 20);

CREATE TABLE tenant_secrets (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    name       text NOT NULL,
    value      text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

-- One row per charge of an order through the gateways. in_flight names the attempt whose call has
-- started and not been answered: recovery calls that gateway again with the same idempotency key.
CREATE TABLE payments (
    tenant_id       uuid NOT NULL,
    id              uuid NOT NULL,
    order_id        uuid NOT NULL,
    order_number    bigint NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        char(3) NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    in_flight       jsonb,
    pinned_gateway  text,
    gateway         text,
    reference       text,
    last_error      text,
    lease_until     timestamptz,
    leased_by       text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX payments_due ON payments (tenant_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX payments_by_order ON payments (tenant_id, order_id);

CREATE TABLE payment_attempts (
    tenant_id       uuid NOT NULL,
    payment_id      uuid NOT NULL,
    attempt         int NOT NULL,
    gateway         text NOT NULL,
    idempotency_key text NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('started', 'succeeded', 'declined', 'transient')),
    code            text NOT NULL DEFAULT '',
    message         text NOT NULL DEFAULT '',
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    PRIMARY KEY (tenant_id, payment_id, attempt)
);

-- Each gateway's circuit as the last worker to use it saw it (for the Payments page).
CREATE TABLE gateway_circuits (
    tenant_id  uuid NOT NULL,
    gateway    text NOT NULL,
    state      text NOT NULL,
    failures   int NOT NULL,
    opened_at  timestamptz,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, gateway)
);

-- Per tenant and topic, a template that replaces the built-in one (folded from NotificationTemplateChanged).
CREATE TABLE notification_templates (
    tenant_id  uuid NOT NULL,
    topic      text NOT NULL,
    subject    text NOT NULL,
    text_body  text NOT NULL,
    html_body  text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, topic)
);

-- The outbox. dedupe_key (the causing event and the channel) makes a row at most once per cause and
-- travels with the message, so a receiver can drop a second delivery after a crash.
CREATE TABLE notifications (
    tenant_id       uuid NOT NULL,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    dedupe_key      text NOT NULL,
    topic           text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('email', 'sms', 'push', 'in_app')),
    recipient       text NOT NULL,
    order_id        uuid,
    context         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'dead')),
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    lease_until     timestamptz,
    leased_by       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    read_at         timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, dedupe_key)
);
CREATE INDEX notifications_due ON notifications (tenant_id, next_attempt_at) WHERE status = 'queued';
CREATE INDEX notifications_by_status ON notifications (tenant_id, status, created_at DESC);
CREATE INDEX notifications_by_order ON notifications (tenant_id, order_id) WHERE order_id IS NOT NULL;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant_secrets', 'payments', 'payment_attempts', 'gateway_circuits',
                             'notification_templates', 'notifications'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = (SELECT oms_current_tenant()))'
                       ' WITH CHECK (tenant_id = (SELECT oms_current_tenant()))', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO oms_app', t);
    END LOOP;
END $$;
-- The outbox is the record of what was sent: the serving role marks rows, it does not delete them.
REVOKE DELETE ON notifications FROM oms_app;

-- Which tenants have work due, for the worker's claim loop (RLS hides other tenants from oms_app).
CREATE FUNCTION oms_platform_tenants_with_due_work() RETURNS TABLE (tenant_id uuid, payments boolean, notifications boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT t.id,
           EXISTS (SELECT FROM payments p WHERE p.tenant_id = t.id AND p.status = 'pending'
              AND p.next_attempt_at <= now() AND (p.lease_until IS NULL OR p.lease_until < now())),
           EXISTS (SELECT FROM notifications n WHERE n.tenant_id = t.id AND n.status = 'queued'
              AND n.next_attempt_at <= now() AND (n.lease_until IS NULL OR n.lease_until < now()))
    FROM tenants t
$$;
REVOKE ALL ON FUNCTION oms_platform_tenants_with_due_work() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oms_platform_tenants_with_due_work() TO oms_app;
