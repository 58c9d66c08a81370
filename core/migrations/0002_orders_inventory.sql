-- Catalog, warehouses, stock, customers and orders: read models folded inline from their events
-- (core/catalog.py, core/inventory.py, core/customers.py, core/orders/), plus the command log
-- that makes every command idempotent. Foreign keys between read models are deferred, so that a
-- projection rebuild can empty and refill a table in one transaction.

-- Per-tenant settings the owner changes (folded from TenantSettingsChanged).
CREATE TABLE tenant_settings (
    tenant_id           uuid PRIMARY KEY REFERENCES tenants (id),
    allocation_strategy text NOT NULL DEFAULT 'priority' CHECK (allocation_strategy IN ('priority', 'most_available')),
    reservation_minutes int NOT NULL DEFAULT 30 CHECK (reservation_minutes BETWEEN 1 AND 43200),
    tax_rate_bp         int NOT NULL DEFAULT 0 CHECK (tax_rate_bp BETWEEN 0 AND 10000),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    sku         text NOT NULL,
    name        text NOT NULL,
    category    text NOT NULL DEFAULT '',
    price       bigint NOT NULL CHECK (price >= 0),
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, sku)
);
CREATE INDEX products_by_category ON products (tenant_id, category, sku);

CREATE TABLE warehouses (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    code       text NOT NULL,
    name       text NOT NULL,
    region     text NOT NULL DEFAULT '',
    priority   int NOT NULL DEFAULT 100,
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, code)
);

-- Stock per SKU and warehouse. The CHECK is the last line against overselling: a reservation that
-- would take more than is on hand fails inside the transaction that tries it.
CREATE TABLE stock (
    tenant_id     uuid NOT NULL,
    sku           text NOT NULL,
    warehouse     text NOT NULL,
    on_hand       int NOT NULL DEFAULT 0,
    reserved      int NOT NULL DEFAULT 0,
    reorder_point int NOT NULL DEFAULT 0 CHECK (reorder_point >= 0),
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, sku, warehouse),
    FOREIGN KEY (tenant_id, sku) REFERENCES products (tenant_id, sku) DEFERRABLE INITIALLY DEFERRED,
    FOREIGN KEY (tenant_id, warehouse) REFERENCES warehouses (tenant_id, code) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT stock_never_oversold CHECK (reserved >= 0 AND reserved <= on_hand)
);
CREATE INDEX stock_by_warehouse ON stock (tenant_id, warehouse, sku);

-- Every movement of stock, newest last: the history shown per SKU.
CREATE TABLE stock_movements (
    tenant_id  uuid NOT NULL,
    position   bigint NOT NULL,
    line       int NOT NULL,
    sku        text NOT NULL,
    warehouse  text NOT NULL,
    kind       text NOT NULL,
    on_hand_change  int NOT NULL,
    reserved_change int NOT NULL,
    reason     text NOT NULL DEFAULT '',
    order_id   uuid,
    actor      text NOT NULL DEFAULT '',
    at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, position, line)
);
CREATE INDEX stock_movements_by_sku ON stock_movements (tenant_id, sku, at);

CREATE TABLE customers (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL,
    name         text NOT NULL,
    email        text NOT NULL DEFAULT '',
    phone        text NOT NULL DEFAULT '',
    notify_email boolean NOT NULL DEFAULT true,
    notify_sms   boolean NOT NULL DEFAULT false,
    notify_push  boolean NOT NULL DEFAULT false,
    active       boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX customers_by_name ON customers (tenant_id, lower(name));

CREATE TABLE orders (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    number         bigint NOT NULL,
    customer_id    uuid NOT NULL,
    customer_name  text NOT NULL,
    channel        text NOT NULL CHECK (channel IN ('web', 'pos', 'marketplace', 'phone')),
    status         text NOT NULL,
    currency       char(3) NOT NULL,
    subtotal       bigint NOT NULL,
    shipping_fee   bigint NOT NULL,
    tax            bigint NOT NULL,
    total          bigint NOT NULL,
    paid_amount    bigint NOT NULL DEFAULT 0,
    refunded_amount bigint NOT NULL DEFAULT 0,
    placed_at      timestamptz NOT NULL,
    reserved_until timestamptz,
    paid_at        timestamptz,
    shipped_at     timestamptz,
    delivered_at   timestamptz,
    closed_at      timestamptz,
    updated_at     timestamptz NOT NULL,
    version        int NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, number),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX orders_by_placed ON orders (tenant_id, placed_at DESC);
CREATE INDEX orders_by_status ON orders (tenant_id, status, placed_at DESC);
CREATE INDEX orders_by_customer ON orders (tenant_id, customer_id, placed_at DESC);
CREATE INDEX orders_by_channel ON orders (tenant_id, channel, placed_at DESC);
CREATE INDEX orders_reservation_expiry ON orders (tenant_id, reserved_until) WHERE status = 'reserved';

CREATE TABLE order_lines (
    tenant_id    uuid NOT NULL,
    order_id     uuid NOT NULL,
    line_no      int NOT NULL,
    sku          text NOT NULL,
    name         text NOT NULL,
    quantity     int NOT NULL CHECK (quantity > 0),
    unit_price   bigint NOT NULL,
    line_total   bigint NOT NULL,
    returned_quantity int NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, order_id, line_no)
);
CREATE INDEX order_lines_by_sku ON order_lines (tenant_id, sku);

-- Where each line's units are reserved, and whether they left with a shipment.
CREATE TABLE order_allocations (
    tenant_id  uuid NOT NULL,
    order_id   uuid NOT NULL,
    sku        text NOT NULL,
    warehouse  text NOT NULL,
    quantity   int NOT NULL CHECK (quantity > 0),
    state      text NOT NULL CHECK (state IN ('reserved', 'released', 'shipped')),
    PRIMARY KEY (tenant_id, order_id, sku, warehouse)
);

CREATE TABLE shipments (
    tenant_id   uuid NOT NULL,
    order_id    uuid NOT NULL,
    warehouse   text NOT NULL,
    carrier     text NOT NULL,
    tracking    text NOT NULL,
    shipped_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, order_id, warehouse)
);

-- One row per command idempotency key: a repeated command returns this result and writes nothing.
CREATE TABLE command_log (
    tenant_id       uuid NOT NULL,
    idempotency_key text NOT NULL,
    command         text NOT NULL,
    result          jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, idempotency_key)
);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant_settings', 'products', 'warehouses', 'stock', 'stock_movements', 'customers',
                             'orders', 'order_lines', 'order_allocations', 'shipments', 'command_log'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = (SELECT oms_current_tenant()))'
                       ' WITH CHECK (tenant_id = (SELECT oms_current_tenant()))', t);
        -- Read models are rebuilt from the log, so the serving role may delete their rows.
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO oms_app', t);
    END LOOP;
END $$;
REVOKE DELETE ON command_log FROM oms_app;

-- Order numbers: one sequence per tenant, so shops count from 1001 without a hot counter row.
-- The sequence and the settings row are made with the tenant.
CREATE FUNCTION oms_order_number_sequence(p_tenant uuid) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT 'order_number_' || replace(p_tenant::text, '-', '') $$;

CREATE OR REPLACE FUNCTION oms_platform_create_tenant(p_id uuid, p_slug text, p_name text, p_currency text,
                                                      p_time_zone text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
BEGIN
    INSERT INTO tenants (id, slug, name, currency, time_zone) VALUES (p_id, p_slug, p_name, p_currency, p_time_zone);
    INSERT INTO tenant_settings (tenant_id) VALUES (p_id);
    EXECUTE format('CREATE SEQUENCE %I START 1001', oms_order_number_sequence(p_id));
END $$;

DO $$
DECLARE t uuid;
BEGIN
    FOR t IN SELECT id FROM tenants LOOP
        INSERT INTO tenant_settings (tenant_id) VALUES (t) ON CONFLICT DO NOTHING;
        EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I START 1001', oms_order_number_sequence(t));
    END LOOP;
END $$;

CREATE FUNCTION oms_next_order_number() RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT nextval(oms_order_number_sequence(oms_current_tenant())) $$;
REVOKE ALL ON FUNCTION oms_next_order_number() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oms_next_order_number() TO oms_app;
