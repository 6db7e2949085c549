
-- ---------------------------------------------------------------------------
-- Health and the extension's objects outside pw
-- ---------------------------------------------------------------------------

-- Whether shared_preload_libraries loaded the library.
CREATE FUNCTION pw.library_preloaded() RETURNS boolean
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'pw_library_preloaded';

-- What is wrong with pw_deliverability.maillog_directory ('is not set',
-- 'does not exist', ...), NULL when the server can read it.
CREATE FUNCTION pw.maillog_directory_problem() RETURNS text
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'pw_maillog_directory_problem';

-- The indexes and statistics the extension created outside pw: those whose
-- expression calls one of its functions, and those it names (pw_sel_*,
-- pw_sent_*, *_pw_untagged_domain, *_pw_email_norm_idx) on the configured
-- carriers relation.  Indexes of partitions come with their parent's.
CREATE FUNCTION pw.carrier_objects()
RETURNS TABLE (object_type text, object_name text, relation regclass)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS
$$
WITH ext_functions AS (
    SELECT d.objid
      FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
     WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
       AND d.deptype = 'e' AND e.extname = 'pw_deliverability'
), carriers AS (
    SELECT to_regclass(relation) AS rel FROM pw.carriers_config
)
SELECT 'index', format('%I.%I', n.nspname, i.relname), x.indrelid::regclass
  FROM pg_catalog.pg_index x
  JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace
 WHERE n.nspname <> 'pw' AND NOT i.relispartition
   AND (EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = i.oid
                   AND d.refclassid = 'pg_proc'::regclass
                   AND d.refobjid IN (SELECT objid FROM ext_functions))
        OR (x.indrelid IN (SELECT rel FROM carriers)
            AND (i.relname LIKE 'pw\_sel\_%' OR i.relname LIKE 'pw\_sent\_%'
                 OR i.relname LIKE '%\_pw\_untagged\_domain' OR i.relname LIKE '%\_pw\_email\_norm\_idx')))
UNION ALL
SELECT 'statistics', format('%I.%I', n.nspname, s.stxname), s.stxrelid::regclass
  FROM pg_catalog.pg_statistic_ext s
  JOIN pg_catalog.pg_namespace n ON n.oid = s.stxnamespace
 WHERE n.nspname <> 'pw'
   AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                WHERE d.classid = 'pg_statistic_ext'::regclass AND d.objid = s.oid
                  AND d.refclassid = 'pg_proc'::regclass
                  AND d.refobjid IN (SELECT objid FROM ext_functions))
ORDER BY 1, 2
$$;

-- Drops pw.carrier_objects(); returns how many.  DROP EXTENSION
-- pw_deliverability calls it first when the library is loaded.
CREATE FUNCTION pw.drop_carrier_objects() RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    o record;
    n integer := 0;
BEGIN
    FOR o IN SELECT * FROM pw.carrier_objects() LOOP
        IF o.object_type = 'index' THEN
            EXECUTE format('DROP INDEX IF EXISTS %s', o.object_name);
        ELSE
            EXECUTE format('DROP STATISTICS IF EXISTS %s', o.object_name);
        END IF;
        RAISE NOTICE 'dropped % % on %', o.object_type, o.object_name, o.relation;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;
REVOKE ALL ON FUNCTION pw.drop_carrier_objects() FROM PUBLIC;

-- One row per check of the installation and the daily loop: ok, warning or
-- failing, what was seen and what to do.
CREATE FUNCTION pw.health()
RETURNS TABLE ("check" text, status text, detail text, hint text)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    preloaded boolean := pw.library_preloaded();
    db        text := coalesce(current_setting('pw_deliverability.database', true), '');
    pid       integer;
    cc        record;
    rel       regclass;
    p         record;
    r         record;
    dom       text;
    t0        timestamptz;
    problem   text;
    msg       text;
    msg_hint  text;
    stmt      text;
    idx       text;
BEGIN
    -- the library
    "check" := 'library preloaded';
    IF preloaded THEN
        status := 'ok'; detail := 'shared_preload_libraries loads pw_deliverability'; hint := NULL;
    ELSE
        status := 'failing';
        detail := 'pw_deliverability is not in shared_preload_libraries: no background tagger, '
                  'no pw.mx_tag_progress, postgresql.conf settings unchecked at start';
        hint := 'Add pw_deliverability to shared_preload_libraries and restart the server.';
    END IF;
    RETURN NEXT;

    -- the background tagger
    "check" := 'background tagger'; hint := NULL;
    pid := pw.tagger_pid();
    IF pid IS NOT NULL THEN
        status := 'ok'; detail := format('running as PID %s for database %s', pid, db);
    ELSIF NOT preloaded THEN
        status := 'warning'; detail := 'not running: the library is not preloaded';
        hint := 'Preload the library, or schedule pw.mx_tag() with pw.schedule_jobs().';
    ELSIF db = '' THEN
        status := 'warning'; detail := 'not running: pw_deliverability.database is empty';
        hint := format('Set pw_deliverability.database = %L and restart, or schedule pw.mx_tag() '
                       'with pw.schedule_jobs().', current_database());
    ELSIF db <> current_database() THEN
        status := 'warning'; detail := format('it serves database %s, not this one', db);
        hint := 'Schedule pw.mx_tag() here with pw.schedule_jobs().';
    ELSIF NOT current_setting('pw_deliverability.worker_enabled')::boolean THEN
        status := 'warning'; detail := 'idle: pw_deliverability.worker_enabled is off';
    ELSE
        status := 'failing'; detail := 'not running although configured for this database';
        hint := 'The server log says why (it restarts after a crash within a minute).';
    END IF;
    RETURN NEXT;

    -- DNS: the latest tagging run and a live lookup of a domain known to resolve
    "check" := 'DNS answering'; hint := NULL;
    SELECT * INTO r FROM pw.last_runs WHERE kind = 'mx_tag';
    SELECT d.domain INTO dom FROM pw.mx_domains d WHERE d.outcome = 'mx'
     ORDER BY d.resolved_at DESC NULLS LAST LIMIT 1;
    IF FOUND AND has_function_privilege('pw.resolve_mx(text)', 'EXECUTE') THEN
        t0 := clock_timestamp();
        BEGIN
            PERFORM count(*) FROM pw.resolve_mx(dom);
            status := 'ok';
            detail := format('%s resolved in %s ms (dns_servers %L)', dom,
                             round(date_part('epoch', clock_timestamp() - t0) * 1000),
                             current_setting('pw_deliverability.dns_servers'));
        EXCEPTION WHEN OTHERS THEN
            status := 'failing';
            detail := format('looking up %s failed: %s', dom, SQLERRM);
            hint := 'Check pw_deliverability.dns_servers and that the resolver answers.';
        END;
    ELSIF r.run_id IS NOT NULL AND (r.counts ->> 'looked_up')::bigint > 0
          AND r.counts ->> 'looked_up' = r.counts ->> 'failed' THEN
        status := 'failing';
        detail := format('every lookup of the latest tagging run (%s) failed', r.started);
        hint := 'Check pw_deliverability.dns_servers and that the resolver answers.';
    ELSE
        status := 'warning';
        detail := CASE WHEN dom IS NULL THEN 'no domain has been resolved yet'
                       ELSE 'not checked: no EXECUTE on pw.resolve_mx()' END;
        hint := 'Run SELECT * FROM pw.mx_tag(100) as a superuser.';
    END IF;
    RETURN NEXT;

    -- the mail-log directory
    "check" := 'mail-log directory'; hint := NULL;
    problem := pw.maillog_directory_problem();
    IF problem IS NULL THEN
        status := 'ok';
        detail := format('%s is readable', current_setting('pw_deliverability.maillog_directory'));
    ELSE
        status := CASE WHEN problem = 'is not set' THEN 'warning' ELSE 'failing' END;
        detail := format('pw_deliverability.maillog_directory %s%s', nullif(
                         quote_literal(current_setting('pw_deliverability.maillog_directory')) || ' ',
                         ''''' '), problem);
        hint := 'Set it to the directory of the MTA''s log, readable by the server''s user.';
    END IF;
    RETURN NEXT;

    -- the carriers contract and each profile's sent column
    "check" := 'carriers contract'; hint := NULL;
    BEGIN
        SELECT * INTO cc FROM pw.carriers_check();
        rel := cc.relation;
        status := 'ok'; detail := format('%s', rel);
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, msg_hint = PG_EXCEPTION_HINT;
        status := 'failing'; detail := msg; hint := nullif(msg_hint, '');
    END;
    RETURN NEXT;
    FOR p IN SELECT name, sent_column FROM pw.profiles ORDER BY name LOOP
        "check" := format('profile %s', p.name); hint := NULL;
        BEGIN
            PERFORM pw.carriers_check(p.sent_column);
            status := 'ok'; detail := format('sent column %s', p.sent_column);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, msg_hint = PG_EXCEPTION_HINT;
            status := 'failing'; detail := msg; hint := nullif(msg_hint, '');
            RETURN NEXT;
            CONTINUE;
        END;
        -- its selection indexes
        FOR stmt IN SELECT x FROM pw.selection_index_ddl(p.name, true) AS x
                     WHERE rel IS NOT NULL LOOP
            idx := substring(stmt FROM 'IF NOT EXISTS (\S+) ON ');
            IF to_regclass(format('%I.%s', (SELECT n.nspname FROM pg_catalog.pg_class c
                                             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                            WHERE c.oid = rel), idx)) IS NULL THEN
                IF status = 'ok' THEN
                    status := 'warning';
                    detail := format('sent column %s; missing: %s', p.sent_column, idx);
                ELSE
                    detail := detail || ', ' || idx;
                END IF;
                hint := concat_ws('; ', hint, stmt);
            END IF;
        END LOOP;
        RETURN NEXT;
    END LOOP;

    -- the tagging and writeback indexes
    IF rel IS NOT NULL THEN
        FOR r IN SELECT v.what, v.suffix, v.fn FROM (VALUES
                     ('tagging index', '_pw_untagged_domain', 'pw.create_tagging_index()'),
                     ('writeback index', '_pw_email_norm_idx', 'pw.create_writeback_index()'))
                     AS v(what, suffix, fn) LOOP
            "check" := r.what;
            SELECT c.relname INTO idx FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid
             WHERE x.indrelid = rel AND c.relname LIKE '%' || r.suffix LIMIT 1;
            IF FOUND THEN
                status := 'ok'; detail := idx; hint := NULL;
            ELSE
                status := 'warning'; detail := format('no %s on %s', r.what, rel);
                hint := format('SELECT %s;', r.fn);
            END IF;
            RETURN NEXT;
        END LOOP;
    END IF;

    -- schedules and their latest outcome
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        "check" := 'schedules'; status := 'warning';
        detail := 'pg_cron is not installed in this database';
        hint := 'CREATE EXTENSION pg_cron; SELECT * FROM pw.schedule_jobs(); or schedule the jobs '
                'with another scheduler.';
        RETURN NEXT;
    ELSE
        FOR r IN EXECUTE
            'SELECT j.jobname, j.schedule, j.active, d.status, d.return_message, d.start_time'
            '  FROM cron.job j'
            '  LEFT JOIN LATERAL (SELECT * FROM cron.job_run_details x WHERE x.jobid = j.jobid'
            '                      ORDER BY x.start_time DESC NULLS LAST LIMIT 1) d ON true'
            ' WHERE j.jobname IN (''pw_mx_tag'', ''pw_confirm_deliveries'', ''pw_requeue_verifications'')'
            '    OR j.jobname LIKE ''pw\_ingest:%'''
            ' ORDER BY j.jobname' LOOP
            "check" := format('schedule %s', r.jobname); hint := NULL;
            IF NOT r.active THEN
                status := 'warning'; detail := format('%s, inactive', r.schedule);
            ELSIF r.status IS NULL THEN
                status := 'ok'; detail := format('%s, not run yet', r.schedule);
            ELSIF r.status = 'failed' THEN
                status := 'failing';
                detail := format('%s, last run %s failed: %s', r.schedule, r.start_time, r.return_message);
                hint := 'See cron.job_run_details and the server log.';
            ELSE
                status := 'ok'; detail := format('%s, last run %s %s', r.schedule, r.start_time, r.status);
            END IF;
            RETURN NEXT;
        END LOOP;
        IF NOT FOUND THEN
            "check" := 'schedules'; status := 'warning'; detail := 'no job of the daily loop is scheduled';
            hint := 'SELECT * FROM pw.schedule_jobs();';
            RETURN NEXT;
        END IF;
    END IF;

    -- backlog age: domains due for a lookup, and the latest tagging run
    "check" := 'tagging backlog'; hint := NULL;
    SELECT min(d.next_check_at) INTO t0 FROM pw.mx_domains d WHERE d.next_check_at <= now();
    SELECT * INTO r FROM pw.last_runs WHERE kind = 'mx_tag';
    IF t0 IS NOT NULL AND t0 < now() - interval '1 day' THEN
        status := 'warning';
        detail := format('domains due for a lookup since %s', t0);
        hint := 'Tagging is not keeping up: check the tagger or the pw_mx_tag schedule.';
    ELSIF r.run_id IS NULL THEN
        status := 'warning'; detail := 'no tagging run recorded';
        hint := 'SELECT * FROM pw.mx_tag(20000);';
    ELSE
        status := CASE WHEN r.age > interval '2 days' THEN 'warning' ELSE 'ok' END;
        detail := format('latest tagging run %s ago (%s looked up, %s failed)',
                         date_trunc('second', r.age), r.counts ->> 'looked_up', r.counts ->> 'failed');
    END IF;
    RETURN NEXT;

    -- each configured mail log's latest ingest
    FOR r IN SELECT m.path,
                    (SELECT max(x.finished) FROM pw.runs x
                      WHERE x.kind = 'ingest' AND x.counts ->> 'path' = m.path) AS last
               FROM pw.maillogs m ORDER BY m.path LOOP
        "check" := format('ingest %s', r.path); hint := NULL;
        IF r.last IS NULL THEN
            status := 'warning'; detail := 'never ingested';
            hint := format('SELECT * FROM pw.ingest_maillog(%L);', r.path);
        ELSE
            status := CASE WHEN r.last < now() - interval '1 hour' THEN 'warning' ELSE 'ok' END;
            detail := format('latest ingest %s ago', date_trunc('second', now() - r.last));
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
