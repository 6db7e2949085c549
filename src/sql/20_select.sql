
-- ---------------------------------------------------------------------------
-- Selection: whom a run of a send profile may mail
-- ---------------------------------------------------------------------------

-- The carriers this run of "profile" may mail, in ascending carrier id: at
-- most "quota", each operator within its allowance, the untagged bucket
-- within null_run_cap, big and consumer operators held out during the
-- warmup.  With claim, the rows are marked sent (the profile's sent column
-- = now()) by the same call.
CREATE FUNCTION pw.select_sendable_carriers(quota integer, profile text DEFAULT 'default',
                                            warmup_day integer DEFAULT NULL,
                                            claim boolean DEFAULT false)
RETURNS TABLE (carrier_id bigint, email text, mx_provider text, bucket text)
LANGUAGE c VOLATILE ROWS 1000
AS 'MODULE_PATHNAME', 'pw_select_sendable_carriers';

-- The dry run of a selection: one row per bucket with unsent candidates,
-- with the reputation brake on each bucket (pw.brake_status()).
CREATE FUNCTION pw.selection_composition(quota integer, profile text DEFAULT 'default',
                                         warmup_day integer DEFAULT NULL)
RETURNS TABLE (bucket text, operator_class text, available bigint, allowance bigint,
               selected bigint, brake text, brake_reason text)
LANGUAGE c STABLE ROWS 100
AS 'MODULE_PATHNAME', 'pw_selection_composition';

-- The results a profile may select: its sendable results (plus
-- catch_all_domain with include_catch_all), never a dead one unless the
-- profile verifies and the result is verifiable.
CREATE FUNCTION pw.profile_pool(profile text) RETURNS text[]
LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT ARRAY(SELECT DISTINCT r.r
                   FROM pw.profiles p,
                        unnest(p.sendable_results ||
                               CASE WHEN p.include_catch_all THEN '{catch_all_domain}'::text[]
                                    ELSE '{}'::text[] END) AS r(r)
                   JOIN pw.verify_results v ON v.result = r.r
                  WHERE p.name = profile_pool.profile
                    AND (NOT v.dead OR (p.purpose = 'verification' AND v.verifiable))
                  ORDER BY r.r);
END;

-- The CREATE INDEX statements that keep a profile's selection fast when
-- most of the pool is already sent: a partial index over its unsent
-- candidates in id order (covering the email and MX columns, so the scan
-- can be index-only), and an index over the sent column for today's counts.
CREATE FUNCTION pw.selection_index_ddl(profile text DEFAULT 'default',
                                       concurrent boolean DEFAULT false)
RETURNS SETOF text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    p    pw.profiles;
    cc   record;
    rel  text;
    pool text;
    def  text;
    conc text := CASE WHEN concurrent THEN 'CONCURRENTLY ' ELSE '' END;
BEGIN
    SELECT * INTO p FROM pw.profiles WHERE name = profile;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'send profile "%" does not exist', profile
            USING ERRCODE = 'undefined_object', HINT = 'Profiles are the rows of pw.profiles.';
    END IF;
    SELECT * INTO cc FROM pw.carriers_check(p.sent_column);
    SELECT format('%I.%I', n.nspname, c.relname) INTO rel
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = cc.relation;
    SELECT string_agg(quote_literal(r), ', ' ORDER BY r) INTO pool
      FROM unnest(pw.profile_pool(profile)) AS r;

    def := format('%s (%s) INCLUDE (%s, %s) WHERE %s IS NULL AND %s IN (%s)',
                  rel, cc.id_column, cc.email_column, cc.mx_column,
                  cc.sent_column_checked, cc.result_column, pool);
    RETURN NEXT format('CREATE INDEX %sIF NOT EXISTS %I ON %s', conc,
                       left('pw_sel_' || left(md5(def), 8) || '_' || p.name, 63), def);
    def := format('%s (%s) INCLUDE (%s) WHERE %s IS NOT NULL',
                  rel, cc.sent_column_checked, cc.mx_column, cc.sent_column_checked);
    RETURN NEXT format('CREATE INDEX %sIF NOT EXISTS %I ON %s', conc,
                       left('pw_sent_' || left(md5(def), 8) || '_' || p.sent_column, 63), def);
END
$$;

-- Creates the indexes of pw.selection_index_ddl() (not concurrently; run
-- the statements of selection_index_ddl(profile, true) by hand for that).
-- Returns the statements run.
CREATE FUNCTION pw.create_selection_indexes(profile text DEFAULT 'default')
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    stmt text;
BEGIN
    FOR stmt IN SELECT * FROM pw.selection_index_ddl(profile, false) LOOP
        EXECUTE stmt;
        RETURN NEXT stmt;
    END LOOP;
END
$$;

-- The burner verification stream: catch-all and mx_unreachable addresses,
-- proven or disproven by a real send from a disposable domain.  It has its
-- own sent column, warmup and ramp, so a verification send never marks a
-- campaign send.  The stream exists to find the addresses that bounce: its
-- hard-bounce rate is the measurement, not a reputation signal, so its
-- brake never pauses on hard bounces; it still pauses an operator that
-- blocks the burner and slows down on throttling.
INSERT INTO pw.profiles (name, purpose, warmup_start, sent_column, sendable_results,
                         per_op_run_cap, null_run_cap, brake_bounce_rate, note, seeded) VALUES
    ('verify', 'verification', current_date, 'verify_sent_at',
     '{catch_all_domain,mx_unreachable}', 30, 20, 1,
     'burner-domain verification sends: catch_all_domain + mx_unreachable', true);

INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap, seeded)
SELECT profile, op_class, from_day, daily_cap, true FROM (VALUES
    ('verify', 'default',   1,  20),
    ('verify', 'default',   8,  40),
    ('verify', 'default',  15,  60),
    ('verify', 'default',  31, 100),
    ('verify', 'big',      31,   5),
    ('verify', 'big',      38,  10),
    ('verify', 'big',      45,  25),
    ('verify', 'big',      52,  50),
    ('verify', 'consumer', 31,   5),
    ('verify', 'consumer', 38,  10),
    ('verify', 'consumer', 45,  20),
    ('verify', 'consumer', 52,  40)
) AS s (profile, op_class, from_day, daily_cap);
