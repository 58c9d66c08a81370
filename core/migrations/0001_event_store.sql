-- Tenants, users, the event log and its followers, with row security for the serving role oms_app.
-- Applied once by the owner role (see core/migrate.py, which also creates oms_app).

-- The tenant of the current transaction, set with set_config('app.tenant_id', id, true).
-- No tenant set means NULL, which matches no row.
CREATE FUNCTION oms_current_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency    char(3) NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    time_zone   text NOT NULL DEFAULT 'UTC',
    created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_self ON tenants USING (id = (SELECT oms_current_tenant()));

-- Users: a read model of the User* events (inline projection, core/users.py)...
CREATE TABLE users (
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    id            uuid NOT NULL,
    username      text NOT NULL CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
    display_name  text NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
    role          text NOT NULL CHECK (role IN ('owner', 'manager', 'clerk', 'analyst')),
    active        boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, username)
);

-- ...and their secrets, which stay out of the event log (it is exported for audits).
CREATE TABLE user_credentials (
    tenant_id     uuid NOT NULL,
    user_id       uuid NOT NULL,
    password_hash text NOT NULL,
    failed_logins int NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    changed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) DEFERRABLE INITIALLY DEFERRED
);

-- Platform administrators manage tenants and belong to none. oms_app reaches this table only
-- through the SECURITY DEFINER functions below.
CREATE TABLE platform_admins (
    username      text PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per stream: its type and current version. Appends lock this row, so two writers of one
-- stream serialize here and the loser sees the version it did not expect.
CREATE TABLE streams (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    stream_id   text NOT NULL,
    stream_type text NOT NULL,
    version     int NOT NULL CHECK (version > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, stream_id)
);

-- The append-only log. position is the global order of insertion; followers read in
-- (txid, position) order below pg_snapshot_xmin, which never skips a late-committing event.
CREATE TABLE events (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    stream_id       text NOT NULL,
    version         int NOT NULL CHECK (version > 0),
    event_id        uuid NOT NULL,
    event_type      text NOT NULL,
    schema_version  int NOT NULL DEFAULT 1 CHECK (schema_version > 0),
    data            jsonb NOT NULL,
    metadata        jsonb NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    txid            xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (tenant_id, stream_id, version),
    UNIQUE (tenant_id, event_id)
);
CREATE INDEX events_follow ON events (tenant_id, txid, position);

-- Where each checkpointed follower (projection, chain sealer, analytic sync) has read to.
CREATE TABLE checkpoints (
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    follower      text NOT NULL,
    last_txid     xid8 NOT NULL DEFAULT '0',
    last_position bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, follower)
);

-- The per-tenant hash chain, sealed by a follower moments after commit so that appends never
-- wait for each other. hash = sha256(previous hash || canonical event), see core/chain.py.
CREATE TABLE event_chain (
    tenant_id  uuid NOT NULL,
    seq        bigint NOT NULL CHECK (seq > 0),
    position   bigint NOT NULL,
    hash       bytea NOT NULL,
    sealed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, position)
);

-- A per-tenant count of events by type, kept by an asynchronous projection.
CREATE TABLE event_type_counts (
    tenant_id     uuid NOT NULL,
    event_type    text NOT NULL,
    events        bigint NOT NULL,
    last_recorded timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_type)
);

-- Row security: every table with tenant data sees only the transaction's tenant.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'user_credentials', 'streams', 'events', 'checkpoints', 'event_chain', 'event_type_counts'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = (SELECT oms_current_tenant()))'
                       ' WITH CHECK (tenant_id = (SELECT oms_current_tenant()))', t);
    END LOOP;
END $$;

-- Append one batch of events to one or more streams, in one round trip. p_batch is
-- [{"stream_id", "stream_type", "expected_version" (int, 0 = new stream, null = any),
--   "events": [{"event_id", "event_type", "schema_version", "data", "metadata"}]}].
-- A batch whose first event id is already stored is a retry: it returns the stored rows, writes nothing.
-- p_tenant sets the tenant for the rest of this transaction, for an append that is a whole transaction.
-- A version mismatch raises OMS01 with DETAIL {"stream", "expected", "actual"}.
CREATE FUNCTION oms_append(p_batch jsonb, p_tenant uuid DEFAULT NULL)
RETURNS TABLE (stream_id text, version int, "position" bigint, event_id uuid, recorded_at timestamptz,
               txid xid8, duplicate boolean)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_tenant   uuid := coalesce(p_tenant, oms_current_tenant());
    v_first    uuid := (p_batch -> 0 -> 'events' -> 0 ->> 'event_id')::uuid;
    v_stream   jsonb;
    v_id       text;
    v_count    int;
    v_expected int;
    v_current  int;
    v_version  int;
    v_nth      int := 0;
BEGIN
    IF v_tenant IS NULL THEN
        RAISE EXCEPTION 'no tenant is set for this transaction' USING ERRCODE = 'OMS00';
    END IF;
    IF p_tenant IS NOT NULL THEN
        IF oms_current_tenant() IS DISTINCT FROM p_tenant AND oms_current_tenant() IS NOT NULL THEN
            RAISE EXCEPTION 'this transaction belongs to another tenant' USING ERRCODE = 'OMS00';
        END IF;
        PERFORM set_config('app.tenant_id', p_tenant::text, true);
    END IF;
    IF EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = v_tenant AND e.event_id = v_first) THEN
        RETURN QUERY SELECT * FROM oms_stored_batch(v_tenant, p_batch);
        RETURN;
    END IF;
    FOR v_stream IN SELECT * FROM jsonb_array_elements(p_batch) LOOP
        v_nth := v_nth + 1;
        v_id := v_stream ->> 'stream_id';
        v_count := jsonb_array_length(v_stream -> 'events');
        v_expected := (v_stream ->> 'expected_version')::int;
        v_version := NULL;
        v_current := NULL;
        IF v_expected IS DISTINCT FROM 0 THEN
            -- Wait for any writer of this stream in flight on an advisory lock, which takes no xid;
            -- the row lock after it then gives this transaction an xid later than that writer's.
            PERFORM pg_advisory_xact_lock(hashtextextended(v_tenant::text || '/' || v_id, 0));
            SELECT s.version INTO v_current FROM streams s
            WHERE s.tenant_id = v_tenant AND s.stream_id = v_id FOR UPDATE;
        END IF;
        IF v_current IS NULL AND coalesce(v_expected, 0) = 0 THEN
            INSERT INTO streams AS s (tenant_id, stream_id, stream_type, version)
            VALUES (v_tenant, v_id, v_stream ->> 'stream_type', v_count)
            ON CONFLICT DO NOTHING
            RETURNING s.version INTO v_version;
            IF v_version IS NULL THEN  -- created meanwhile by another transaction
                SELECT s.version INTO v_current FROM streams s
                WHERE s.tenant_id = v_tenant AND s.stream_id = v_id FOR UPDATE;
            END IF;
        END IF;
        IF v_version IS NULL THEN
            -- The writer we waited for may have been this very batch, sent again: answer as a retry.
            IF v_nth = 1 AND EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = v_tenant AND e.event_id = v_first) THEN
                RETURN QUERY SELECT * FROM oms_stored_batch(v_tenant, p_batch);
                RETURN;
            END IF;
            IF v_current IS NULL OR v_current IS DISTINCT FROM coalesce(v_expected, v_current) THEN
                RAISE EXCEPTION 'stream % is at version %, not the expected %', v_id, coalesce(v_current, 0),
                    coalesce(v_expected::text, 'any')
                    USING ERRCODE = 'OMS01', DETAIL = json_build_object(
                        'stream', v_id, 'expected', v_expected, 'actual', coalesce(v_current, 0))::text;
            END IF;
            -- The previous version must carry a smaller txid than ours, or followers, which read in
            -- (txid, position) order, would see this stream's events out of order. It can only be
            -- larger if this transaction took its xid before that version committed: retry afresh.
            IF (SELECT e.txid FROM events e WHERE e.tenant_id = v_tenant AND e.stream_id = v_id
                AND e.version = v_current) > pg_current_xact_id() THEN
                RAISE EXCEPTION 'stream % moved on while this transaction was open', v_id
                    USING ERRCODE = 'OMS01', DETAIL = json_build_object(
                        'stream', v_id, 'expected', v_expected, 'actual', v_current)::text;
            END IF;
            v_version := v_current + v_count;
            UPDATE streams s SET version = v_version, updated_at = now()
            WHERE s.tenant_id = v_tenant AND s.stream_id = v_id;
        END IF;
        RETURN QUERY
            WITH inserted AS (
                INSERT INTO events (tenant_id, stream_id, version, event_id, event_type, schema_version,
                                    data, metadata)
                SELECT v_tenant, v_id, v_version - v_count + x.n::int,
                       (x.e ->> 'event_id')::uuid, x.e ->> 'event_type',
                       coalesce((x.e ->> 'schema_version')::int, 1), x.e -> 'data', x.e -> 'metadata'
                FROM jsonb_array_elements(v_stream -> 'events') WITH ORDINALITY AS x (e, n)
                ORDER BY x.n
                RETURNING events.stream_id, events.version, events.position, events.event_id,
                          events.recorded_at, events.txid
            )
            SELECT i.stream_id, i.version, i.position, i.event_id, i.recorded_at, i.txid, false
            FROM inserted i ORDER BY i.position;
    END LOOP;
END $$;

-- The stored rows of a batch appended before: what a retry gets back.
CREATE FUNCTION oms_stored_batch(p_tenant uuid, p_batch jsonb)
RETURNS TABLE (stream_id text, version int, "position" bigint, event_id uuid, recorded_at timestamptz,
               txid xid8, duplicate boolean)
LANGUAGE sql STABLE
AS $$
    SELECT e.stream_id, e.version, e.position, e.event_id, e.recorded_at, e.txid, true
    FROM events e
    WHERE e.tenant_id = p_tenant AND e.event_id IN (
        SELECT (x ->> 'event_id')::uuid FROM jsonb_array_elements(p_batch) s, jsonb_array_elements(s -> 'events') x)
    ORDER BY e.position
$$;

-- Followers read (txid, position) after their checkpoint and strictly below the oldest transaction
-- still running, so an event that commits later can never land behind a checkpoint.
CREATE FUNCTION oms_read_after(p_txid xid8, p_position bigint, p_limit int)
RETURNS SETOF events
LANGUAGE sql STABLE
AS $$
    SELECT * FROM events e
    WHERE e.tenant_id = (SELECT oms_current_tenant())
      AND (e.txid, e.position) > (p_txid, p_position)
      AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY e.txid, e.position
    LIMIT p_limit
$$;

-- Platform operations across tenants: narrow SECURITY DEFINER functions, never an OR in a policy.
CREATE FUNCTION oms_platform_create_tenant(p_id uuid, p_slug text, p_name text, p_currency text, p_time_zone text)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$ INSERT INTO tenants (id, slug, name, currency, time_zone) VALUES (p_id, p_slug, p_name, p_currency, p_time_zone) $$;

CREATE FUNCTION oms_platform_tenants()
RETURNS TABLE (id uuid, slug text, name text, currency text, time_zone text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT id, slug, name, currency::text, time_zone, created_at FROM tenants ORDER BY created_at, slug $$;

CREATE FUNCTION oms_platform_add_admin(p_username text, p_password_hash text)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$ INSERT INTO platform_admins (username, password_hash) VALUES (p_username, p_password_hash) $$;

CREATE FUNCTION oms_platform_admin_hash(p_username text)
RETURNS text LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$ SELECT password_hash FROM platform_admins WHERE username = p_username $$;

-- What the serving role may do. Events and their chain are insert-only: no UPDATE, DELETE or TRUNCATE.
GRANT SELECT ON tenants TO oms_app;
GRANT SELECT, INSERT, UPDATE ON users, user_credentials, streams TO oms_app;
GRANT DELETE ON users TO oms_app;  -- projection rebuilds
GRANT SELECT, INSERT ON events, event_chain TO oms_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON checkpoints, event_type_counts TO oms_app;
REVOKE ALL ON FUNCTION oms_platform_create_tenant(uuid, text, text, text, text), oms_platform_tenants(),
    oms_platform_add_admin(text, text), oms_platform_admin_hash(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oms_platform_create_tenant(uuid, text, text, text, text), oms_platform_tenants(),
    oms_platform_add_admin(text, text), oms_platform_admin_hash(text) TO oms_app;
