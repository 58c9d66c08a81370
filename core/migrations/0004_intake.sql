-- Order intake writes one orders row and a few order_lines per order; every index is a write more.
-- Keep the indexes the Orders page and the worker read through, drop the ones nothing reads:
--   orders_by_placed (the list, newest first), orders_by_status, orders_by_customer,
--   orders_reservation_expiry (the worker's expiry sweep), UNIQUE (tenant_id, number) (lookup by number);
--   a channel filter (four values, each a large share of orders) reads orders_by_placed and filters;
--   order lines are only read by order (their primary key), never by SKU.
DROP INDEX IF EXISTS orders_by_channel;
DROP INDEX IF EXISTS order_lines_by_sku;
-- A reservation updates reserved and updated_at, no indexed column: leave room on each page so the
-- update stays on the page (HOT) and writes no index entries. Applies to pages written from now on.
ALTER TABLE stock SET (fillfactor = 50);

-- The next order number, once per order placed. As a SECURITY DEFINER SQL function its body was
-- parsed and planned again on every call; PL/pgSQL keeps the plan for the session.
CREATE OR REPLACE FUNCTION oms_next_order_number() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$ BEGIN RETURN nextval(oms_order_number_sequence(oms_current_tenant())); END $$;
