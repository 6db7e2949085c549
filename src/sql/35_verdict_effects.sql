-- ---------------------------------------------------------------------------
-- Verdicts: hard bounces recorded, verifications retried, outcomes
-- reclassified
-- ---------------------------------------------------------------------------

-- Every carrier the ingest marked hard_bounced, with the result it had
-- before (so that pw.reclassify_outcomes() can give it back) and the bounce
-- that did it.  One row per carrier (its id as text): the latest marking.
-- released_at is set when a reclassification gave the result back.
CREATE TABLE pw.hard_bounces (
    carrier_id   text PRIMARY KEY,
    email        text NOT NULL,
    prior_result text,
    category     text,
    dsn          text,
    reason       text,
    bounced_at   timestamptz,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz
);

CREATE INDEX hard_bounces_email ON pw.hard_bounces (email);

-- The sends of each verification profile per address, counted by the
-- ingest of the logs pw.maillogs maps to a verification profile: attempts
-- (each delivery or bounce is one), the latest outcome (delivered,
-- hard_bounced, failed: no verdict), its category and time, and when
-- pw.requeue_verifications() last made the address selectable again.
CREATE TABLE pw.verify_attempts (
    profile         text NOT NULL REFERENCES pw.profiles (name) ON UPDATE CASCADE ON DELETE CASCADE,
    email           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    last_outcome    text NOT NULL
                    CONSTRAINT verify_attempts_last_outcome_known
                    CHECK (last_outcome IN ('delivered', 'hard_bounced', 'failed')),
    last_category   text,
    last_outcome_at timestamptz NOT NULL,
    requeued_at     timestamptz,
    PRIMARY KEY (profile, email)
);

-- Each verification's standing per address: attempts against the profile's
-- verify_max_attempts, and when the address may be sent again (NULL: it
-- has a verdict, or no attempt is left).
CREATE VIEW pw.verification_retries AS
SELECT v.profile, v.email, v.attempts, p.verify_max_attempts AS max_attempts,
       v.last_outcome, v.last_category, v.last_outcome_at, v.requeued_at,
       CASE WHEN v.last_outcome = 'failed' AND v.attempts < p.verify_max_attempts
            THEN v.last_outcome_at + p.verify_retry_after END AS retry_at
  FROM pw.verify_attempts v JOIN pw.profiles p ON p.name = v.profile;

-- Makes the carriers of each verification profile (or of the one given)
-- selectable again whose last verification got no verdict (a block, a full
-- mailbox, an expiry for the sender's reasons) longer than the profile's
-- verify_retry_after ago, while they have attempts left: their sent column
-- is cleared.  Never a carrier hard_bounced or send_confirmed, nor a
-- suppressed address.  Returns the carriers requeued.
CREATE FUNCTION pw.requeue_verifications(profile text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    p     record;
    cc    record;
    n     bigint;
    total bigint := 0;
BEGIN
    IF profile IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pw.profiles x
                                            WHERE x.name = requeue_verifications.profile
                                              AND x.purpose = 'verification') THEN
        RAISE EXCEPTION 'no verification profile "%"', profile
            USING ERRCODE = 'undefined_object',
                  HINT = 'Verification profiles are the rows of pw.profiles with purpose = ''verification''.';
    END IF;
    FOR p IN SELECT * FROM pw.profiles x
              WHERE x.purpose = 'verification'
                AND (requeue_verifications.profile IS NULL OR x.name = requeue_verifications.profile)
              ORDER BY x.name
    LOOP
        -- nothing due: the carriers are not looked at (a verification
        -- profile not in use may lack its sent column)
        CONTINUE WHEN NOT EXISTS (
            SELECT 1 FROM pw.verify_attempts v
             WHERE v.profile = p.name AND v.last_outcome = 'failed'
               AND v.attempts < p.verify_max_attempts
               AND v.last_outcome_at <= now() - p.verify_retry_after
               AND (v.requeued_at IS NULL OR v.requeued_at < v.last_outcome_at));
        SELECT * INTO cc FROM pw.carriers_check(p.sent_column);
        EXECUTE format(
            'WITH due AS ('
            '   UPDATE pw.verify_attempts v SET requeued_at = now()'
            '    WHERE v.profile = $1 AND v.last_outcome = ''failed'''
            '      AND v.attempts < $2 AND v.last_outcome_at <= now() - $3'
            '      AND (v.requeued_at IS NULL OR v.requeued_at < v.last_outcome_at)'
            '      AND NOT EXISTS (SELECT 1 FROM pw.suppressions s WHERE s.email = v.email)'
            '   RETURNING v.email),'
            ' c AS (UPDATE %1$s c SET %3$s = NULL FROM due'
            '        WHERE lower(btrim(c.%2$s)) = due.email AND c.%3$s IS NOT NULL'
            '          AND c.%4$s IS DISTINCT FROM ''hard_bounced'''
            '          AND c.%4$s IS DISTINCT FROM ''send_confirmed'''
            '       RETURNING 1)'
            ' SELECT count(*) FROM c',
            cc.relation, cc.email_column, cc.sent_column_checked, cc.result_column)
          INTO n
          USING p.name, p.verify_max_attempts, p.verify_retry_after;
        total := total + n;
    END LOOP;
    RETURN total;
END
$$;

-- Applies the current rules again to the hard bounces and failures already
-- recorded in pw.deliveries.  An address whose hard bounce the rules no
-- longer call the address's fault is released: its suppression by the
-- ingest is removed (never an opt-out or another suppression), its
-- carriers get back the result they had before (pw.hard_bounces), and the
-- bounce is counted as a failure.  A recorded failure the rules now call
-- the address's fault becomes a hard bounce (carriers marked, address
-- suppressed).  One row per address changed, with what was (or, with
-- dry_run, would be) done; a carrier marked before version 0.3 recorded the
-- prior result is released without a result to restore and says so.
CREATE FUNCTION pw.reclassify_outcomes(dry_run boolean DEFAULT true)
RETURNS TABLE (email text, old_category text, new_category text, action text,
               carriers bigint, detail text)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    cc   record;
    d    record;
    cat  text;
    af   boolean;
    n    bigint;
    lost bigint;
BEGIN
    SELECT * INTO cc FROM pw.carriers_check();
    LOCK TABLE pw.deliveries IN SHARE ROW EXCLUSIVE MODE;
    FOR d IN SELECT x.* FROM pw.deliveries x
              WHERE x.bounce_count > 0 OR x.failed_count > 0 ORDER BY x.email
    LOOP
        IF d.bounce_count > 0 THEN
            cat := pw.classify_bounce(d.bounce_dsn, d.bounce_reason);
            SELECT c.address_fault INTO af FROM pw.bounce_categories c WHERE c.category = cat;
            CONTINUE WHEN af;
            email := d.email;
            old_category := coalesce(d.bounce_category, '(before 0.3)');
            new_category := cat;
            action := 'released';
            EXECUTE format('SELECT count(*) FROM %1$s c WHERE lower(btrim(c.%2$s)) = $1'
                           '   AND c.%3$s = ''hard_bounced'''
                           '   AND NOT EXISTS (SELECT 1 FROM pw.hard_bounces h'
                           '                    WHERE h.carrier_id = c.%4$s::text AND h.released_at IS NULL)',
                           cc.relation, cc.email_column, cc.result_column, cc.id_column)
              INTO lost USING d.email;
            EXECUTE format('SELECT count(*) FROM %1$s c WHERE lower(btrim(c.%2$s)) = $1'
                           '   AND c.%3$s = ''hard_bounced''',
                           cc.relation, cc.email_column, cc.result_column)
              INTO carriers USING d.email;
            detail := CASE WHEN lost > 0
                           THEN format('%s carrier(s) cannot be restored: marked hard_bounced before version 0.3 recorded the prior result; set their result by hand', lost)
                           ELSE 'suppression removed, prior results restored' END;
            IF NOT dry_run THEN
                EXECUTE format('UPDATE %1$s c SET %3$s = h.prior_result FROM pw.hard_bounces h'
                               ' WHERE h.email = $1 AND h.released_at IS NULL'
                               '   AND c.%4$s::text = h.carrier_id AND c.%3$s = ''hard_bounced''',
                               cc.relation, cc.email_column, cc.result_column, cc.id_column)
                  USING d.email;
                UPDATE pw.hard_bounces h SET released_at = now()
                 WHERE h.email = d.email AND h.released_at IS NULL;
                DELETE FROM pw.suppressions s WHERE s.email = d.email AND s.reason LIKE 'hard bounce%';
                UPDATE pw.deliveries x SET
                       failed_dsn = CASE WHEN x.failed_at IS NULL OR x.bounced_at >= x.failed_at THEN x.bounce_dsn ELSE x.failed_dsn END,
                       failed_reason = CASE WHEN x.failed_at IS NULL OR x.bounced_at >= x.failed_at THEN x.bounce_reason ELSE x.failed_reason END,
                       failed_at = greatest(x.failed_at, x.bounced_at),
                       failed_count = x.failed_count + x.bounce_count,
                       blocked_count = x.blocked_count
                           + CASE WHEN (SELECT c.block OR c.throttle FROM pw.bounce_categories c WHERE c.category = cat)
                                  THEN x.bounce_count ELSE 0 END,
                       bounced_at = NULL, bounce_count = 0, bounce_dsn = NULL, bounce_reason = NULL,
                       bounce_category = NULL
                 WHERE x.email = d.email;
            END IF;
            RETURN NEXT;
        ELSE
            cat := pw.classify_bounce(d.failed_dsn, d.failed_reason);
            SELECT c.address_fault INTO af FROM pw.bounce_categories c WHERE c.category = cat;
            CONTINUE WHEN NOT af;
            email := d.email;
            old_category := d.last_category;
            new_category := cat;
            action := 'hard_bounced';
            EXECUTE format('SELECT count(*) FROM %1$s c WHERE lower(btrim(c.%2$s)) = $1'
                           '   AND c.%3$s IS DISTINCT FROM ''hard_bounced''',
                           cc.relation, cc.email_column, cc.result_column)
              INTO carriers USING d.email;
            detail := 'carriers marked hard_bounced (prior results recorded), address suppressed';
            IF NOT dry_run THEN
                EXECUTE format('WITH prior AS (SELECT c.ctid AS row_tid, c.%4$s::text AS carrier_id, c.%3$s::text AS prior_result'
                               '                 FROM %1$s c WHERE lower(btrim(c.%2$s)) = $1'
                               '                  AND c.%3$s IS DISTINCT FROM ''hard_bounced''),'
                               ' m AS (UPDATE %1$s c SET %3$s = ''hard_bounced'' FROM prior p'
                               '        WHERE c.ctid = p.row_tid RETURNING p.carrier_id, p.prior_result)'
                               ' INSERT INTO pw.hard_bounces AS h (carrier_id, email, prior_result, category, dsn, reason, bounced_at)'
                               ' SELECT m.carrier_id, $1, m.prior_result, $2, $3, $4, $5 FROM m'
                               ' ON CONFLICT (carrier_id) DO UPDATE SET email = EXCLUDED.email,'
                               '   prior_result = EXCLUDED.prior_result, category = EXCLUDED.category,'
                               '   dsn = EXCLUDED.dsn, reason = EXCLUDED.reason, bounced_at = EXCLUDED.bounced_at,'
                               '   recorded_at = now(), released_at = NULL',
                               cc.relation, cc.email_column, cc.result_column, cc.id_column)
                  USING d.email, cat, d.failed_dsn, d.failed_reason, d.failed_at;
                INSERT INTO pw.suppressions (email, reason, source)
                VALUES (d.email, 'hard bounce ' || cat || coalesce(' ' || d.failed_dsn, '')
                                 || coalesce(': ' || d.failed_reason, ''), 'pw.reclassify_outcomes')
                ON CONFLICT ON CONSTRAINT suppressions_pkey DO NOTHING;
                UPDATE pw.deliveries x SET
                       bounced_at = x.failed_at, bounce_count = x.failed_count,
                       bounce_dsn = x.failed_dsn, bounce_reason = x.failed_reason, bounce_category = cat,
                       failed_at = NULL, failed_count = 0, blocked_count = 0,
                       failed_dsn = NULL, failed_reason = NULL
                 WHERE x.email = d.email;
            END IF;
            RETURN NEXT;
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION pw.requeue_verifications(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pw.reclassify_outcomes(boolean) FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pw.hard_bounces', '');
SELECT pg_catalog.pg_extension_config_dump('pw.verify_attempts', '');
