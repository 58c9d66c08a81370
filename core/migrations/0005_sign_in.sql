-- Sign-in across tenants without a row-security bypass in the app: the app sends a login written
-- `username@tenant-slug` (or a platform admin's bare username) to these narrow SECURITY DEFINER
-- functions, checks the bcrypt hash itself, and reports the outcome back. Lockout: 5 failures in a
-- row lock the account for 15 minutes.

ALTER TABLE platform_admins
    ADD COLUMN failed_logins int NOT NULL DEFAULT 0,
    ADD COLUMN locked_until  timestamptz,
    ADD COLUMN changed_at    timestamptz NOT NULL DEFAULT now();

-- At most one row: the account a login names, with what the app needs to check it.
CREATE FUNCTION oms_sign_in_lookup(p_login text)
RETURNS TABLE (tenant_id uuid, tenant_slug text, user_id uuid, username text, display_name text,
               role text, active boolean, password_hash text, locked_until timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    SELECT t.id, t.slug, u.id, u.username, u.display_name, u.role, u.active, c.password_hash, c.locked_until
    FROM tenants t
    JOIN users u ON u.tenant_id = t.id
    JOIN user_credentials c ON c.tenant_id = u.tenant_id AND c.user_id = u.id
    WHERE p_login LIKE '%_@_%'
      AND t.slug = split_part(p_login, '@', 2)
      AND u.username = split_part(p_login, '@', 1)
    UNION ALL
    SELECT NULL, NULL, NULL, a.username, '', 'platform_admin', true, a.password_hash, a.locked_until
    FROM platform_admins a
    WHERE strpos(p_login, '@') = 0 AND a.username = p_login
$$;

-- Record a checked attempt. A success clears the counter and any lock; the fifth failure in a row
-- locks the account for p_lock_minutes. Returns the lock's end (NULL when not locked).
CREATE FUNCTION oms_sign_in_record(p_login text, p_success boolean, p_max_failures int DEFAULT 5,
                                   p_lock_minutes int DEFAULT 15)
RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
DECLARE
    v_until timestamptz;
BEGIN
    IF strpos(p_login, '@') = 0 THEN
        UPDATE platform_admins a SET
            failed_logins = CASE WHEN p_success THEN 0
                                 WHEN a.failed_logins + 1 >= p_max_failures THEN 0
                                 ELSE a.failed_logins + 1 END,
            locked_until = CASE WHEN p_success THEN NULL
                                WHEN a.failed_logins + 1 >= p_max_failures
                                    THEN now() + make_interval(mins => p_lock_minutes)
                                ELSE a.locked_until END
        WHERE a.username = p_login
        RETURNING a.locked_until INTO v_until;
    ELSE
        UPDATE user_credentials c SET
            failed_logins = CASE WHEN p_success THEN 0
                                 WHEN c.failed_logins + 1 >= p_max_failures THEN 0
                                 ELSE c.failed_logins + 1 END,
            locked_until = CASE WHEN p_success THEN NULL
                                WHEN c.failed_logins + 1 >= p_max_failures
                                    THEN now() + make_interval(mins => p_lock_minutes)
                                ELSE c.locked_until END
        FROM tenants t, users u
        WHERE t.slug = split_part(p_login, '@', 2)
          AND u.tenant_id = t.id AND u.username = split_part(p_login, '@', 1)
          AND c.tenant_id = u.tenant_id AND c.user_id = u.id
        RETURNING c.locked_until INTO v_until;
    END IF;
    RETURN v_until;
END
$$;

-- A platform admin's new password (tenant users change theirs in their tenant's transaction).
CREATE FUNCTION oms_platform_admin_set_password(p_username text, p_password_hash text)
RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
    UPDATE platform_admins SET password_hash = p_password_hash, changed_at = now(), failed_logins = 0,
        locked_until = NULL
    WHERE username = p_username
$$;

REVOKE ALL ON FUNCTION oms_sign_in_lookup(text), oms_sign_in_record(text, boolean, int, int),
    oms_platform_admin_set_password(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION oms_sign_in_lookup(text), oms_sign_in_record(text, boolean, int, int),
    oms_platform_admin_set_password(text, text) TO oms_app;
