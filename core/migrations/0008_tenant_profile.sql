-- The owner changes the shop's currency and time zone (TenantProfileChanged, core/tenants.py). The
-- serving role may update only those two columns, and row security (tenant_self) keeps it to the
-- shop in the transaction.
GRANT UPDATE (currency, time_zone) ON tenants TO oms_app;
