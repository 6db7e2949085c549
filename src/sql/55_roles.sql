
-- ---------------------------------------------------------------------------
-- Roles: what each part of the daily loop needs, granted in one call
-- ---------------------------------------------------------------------------

-- Grants a role exactly what one part of the loop needs and returns the
-- statements run:
--   campaign       select and claim for the campaign profiles, release a claim
--   verify_sender  the same for the verification profiles
--   ingest         read and ingest mail logs, confirm deliveries, requeue verifications
--   monitor        read every view and state table (not the token key), run pw.report()
-- Every part reads the configuration.  Run it as the extension's owner (or a
-- superuser); run it again after adding a profile with a new sent column.
CREATE FUNCTION pw.grant_role(role name, what text) RETURNS SETOF text
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    cc      record;
    wanted  text;
    sent    text;
    cols    text;
    stmt    text;
    stmts   text[];
    config  constant text := 'pw.carriers_config, pw.profiles, pw.warmup_ramp, pw.operator_ramp, '
                             'pw.operators, pw.operator_classes, pw.verify_results, pw.blocked_domains, '
                             'pw.mx_suffix_rules, pw.maillogs, pw.bounce_categories, pw.bounce_rules';
BEGIN
    IF role IS NULL OR to_regrole(quote_ident(role)) IS NULL THEN
        RAISE EXCEPTION 'role "%" does not exist', role
            USING ERRCODE = 'undefined_object', HINT = 'Create it first: CREATE ROLE ... LOGIN.';
    END IF;
    IF what IS NULL OR what NOT IN ('campaign', 'verify_sender', 'ingest', 'monitor') THEN
        RAISE EXCEPTION 'unknown part of the loop "%"', what
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'One of campaign, verify_sender, ingest, monitor.';
    END IF;
    SELECT * INTO cc FROM pw.carriers_check();
    stmts := ARRAY[format('GRANT USAGE ON SCHEMA pw TO %I', role),
                   format('GRANT SELECT ON %s TO %I', config, role)];
    -- the sent columns of the part's profiles: a campaign role's are the
    -- campaign profiles', the others' the verification profiles' (those an
    -- ingest's requeues clear)
    wanted := CASE what WHEN 'campaign' THEN 'campaign' ELSE 'verification' END;
    SELECT string_agg(DISTINCT quote_ident(p.sent_column), ', ') INTO sent
      FROM pw.profiles p WHERE p.purpose = wanted;
    IF what IN ('campaign', 'verify_sender') THEN
        IF sent IS NULL THEN
            RAISE EXCEPTION 'no % profile to grant', wanted
                USING ERRCODE = 'undefined_object', HINT = 'Profiles are the rows of pw.profiles.';
        END IF;
        cols := concat_ws(', ', cc.id_column, cc.email_column, cc.result_column, cc.mx_column, sent);
        stmts := stmts || ARRAY[
            format('GRANT SELECT (%s), UPDATE (%s) ON %s TO %I', cols, sent, cc.relation, role),
            format('GRANT SELECT ON pw.suppressions, pw.maillog_daily TO %I', role),
            format('GRANT EXECUTE ON FUNCTION pw.release_run(bigint) TO %I', role)];
    ELSIF what = 'ingest' THEN
        stmts := stmts || ARRAY[
            format('GRANT EXECUTE ON FUNCTION pw.read_maillog(text, bigint), pw.maillog_last_read(), '
                   'pw.ingest_maillog(text), pw.confirm_deliveries(interval), '
                   'pw.requeue_verifications(text) TO %I', role),
            format('GRANT SELECT, INSERT, UPDATE, DELETE ON pw.maillog_files, pw.maillog_pending, '
                   'pw.deliveries, pw.maillog_daily, pw.maillog_categories, pw.suppressions, '
                   'pw.hard_bounces, pw.verify_attempts TO %I', role),
            format('GRANT SELECT, UPDATE (%s) ON %s TO %I', concat_ws(', ', cc.result_column, sent),
                   cc.relation, role)];
    ELSE
        stmts := stmts || ARRAY[
            format('GRANT SELECT ON pw.mx_domains, pw.mx_backlog, pw.mx_labels, pw.mx_failing, '
                   'pw.mx_tag_progress, pw.maillog_status, pw.maillog_pending, pw.deliveries, '
                   'pw.maillog_daily, pw.maillog_categories, pw.operator_outcomes, pw.suppressions, '
                   'pw.hard_bounces, pw.verify_attempts, pw.verification_retries, '
                   'pw.braked_operators, pw.run_carriers TO %I', role),
            format('GRANT SELECT ON pw.ingest_progress TO %I', role),
            format('GRANT EXECUTE ON FUNCTION pw.mx_tag_progress_rows(), pw.ingest_progress_rows() TO %I', role),
            format('GRANT SELECT ON %s TO %I', cc.relation, role)];
    END IF;
    FOREACH stmt IN ARRAY stmts LOOP
        EXECUTE stmt;
        RETURN NEXT stmt;
    END LOOP;
END
$$;
REVOKE ALL ON FUNCTION pw.grant_role(name, text) FROM PUBLIC;
