
-- ---------------------------------------------------------------------------
-- Run history
-- ---------------------------------------------------------------------------

-- One row per run of a job, written by the job in its own transaction (as
-- the extension's owner): a run that commits is here with its counts; one
-- that fails or is cancelled rolls back with everything it did, and is
-- written with its error by the next run of the database (the library
-- preloaded).  Pruned after pw_deliverability.run_retention days.
CREATE SEQUENCE pw.runs_run_id_seq;
CREATE TABLE pw.runs (
    run_id   bigint PRIMARY KEY DEFAULT pg_catalog.nextval('pw.runs_run_id_seq'),
    kind     text NOT NULL
             CONSTRAINT runs_kind_known
             CHECK (kind IN ('claim', 'mx_tag', 'ingest', 'confirm')),
    profile  text,
    started  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished timestamptz,
    caller   text NOT NULL,
    pid      integer NOT NULL,
    counts   jsonb NOT NULL DEFAULT '{}',
    error    text,
    released timestamptz,
    CONSTRAINT runs_released_claims CHECK (released IS NULL OR kind = 'claim')
);
ALTER SEQUENCE pw.runs_run_id_seq OWNED BY pw.runs.run_id;
CREATE INDEX runs_started ON pw.runs (started);
CREATE INDEX runs_kind_started ON pw.runs (kind, profile, started);

-- The carriers each claim run marked sent (what pw.release_run() gives back).
CREATE TABLE pw.run_carriers (
    run_id     bigint NOT NULL REFERENCES pw.runs ON DELETE CASCADE,
    carrier_id bigint NOT NULL,
    PRIMARY KEY (run_id, carrier_id)
);

-- The runs with their duration, newest first.
CREATE VIEW pw.run_history AS
SELECT run_id, kind, profile, started, finished,
       round(pg_catalog.date_part('epoch', finished - started)::numeric, 3) AS seconds,
       caller, counts, error, released
  FROM pw.runs
 ORDER BY run_id DESC;

-- The latest run of each kind (and profile).
CREATE VIEW pw.last_runs AS
SELECT DISTINCT ON (kind, profile)
       kind, profile, run_id, started, finished,
       round(pg_catalog.date_part('epoch', finished - started)::numeric, 3) AS seconds,
       caller, counts, error, pg_catalog.now() - started AS age
  FROM pw.runs
 ORDER BY kind, profile, run_id DESC;

-- Gives back the carriers of a claim run that were never sent: their sent
-- column is cleared where it still holds the claim's mark and no delivery
-- has been logged for the address since the claim.  Returns the carriers
-- released; says with a NOTICE how many were kept because they were sent.
CREATE FUNCTION pw.release_run(run_id bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    r        pw.runs;
    cc       record;
    n_released bigint;
    total    bigint;
BEGIN
    SELECT * INTO r FROM pw.runs WHERE runs.run_id = release_run.run_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % does not exist', release_run.run_id
            USING ERRCODE = 'undefined_object',
                  HINT = 'Claims are the rows of pw.runs with kind ''claim'' (older ones are pruned '
                         'after pw_deliverability.run_retention days).';
    END IF;
    IF r.kind <> 'claim' THEN
        RAISE EXCEPTION 'run % is a % run, not a claim', r.run_id, r.kind
            USING ERRCODE = 'wrong_object_type', HINT = 'Only a claim marks carriers that can be released.';
    END IF;
    IF r.error IS NOT NULL THEN
        RAISE EXCEPTION 'run % failed: it marked no carrier', r.run_id
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = r.error;
    END IF;
    IF r.released IS NOT NULL THEN
        RAISE EXCEPTION 'run % was already released', r.run_id
            USING ERRCODE = 'object_not_in_prerequisite_state', DETAIL = format('Released at %s.', r.released);
    END IF;
    SELECT * INTO cc FROM pw.carriers_check((SELECT p.sent_column FROM pw.profiles p
                                             WHERE p.name = r.profile));
    EXECUTE format(
        'UPDATE %s c SET %s = NULL FROM pw.run_carriers rc'
        ' WHERE rc.run_id = $1 AND c.%s = rc.carrier_id AND c.%s = $2'
        '   AND NOT EXISTS (SELECT 1 FROM pw.deliveries d'
        '                    WHERE d.email = lower(btrim(c.%s)) AND d.last_sent_at >= $3)',
        cc.relation, cc.sent_column_checked, cc.id_column, cc.sent_column_checked, cc.email_column)
      USING r.run_id, (r.counts ->> 'marked_at')::timestamptz, r.started;
    GET DIAGNOSTICS n_released = ROW_COUNT;
    SELECT count(*) INTO total FROM pw.run_carriers rc WHERE rc.run_id = r.run_id;
    IF n_released < total THEN
        RAISE NOTICE '% of the % carriers of run % were kept: sent since the claim, or claimed again',
                     total - n_released, total, r.run_id
            USING HINT = 'A carrier whose delivery is in the mail log (pw.deliveries) is not released.';
    END IF;
    UPDATE pw.runs SET released = clock_timestamp(),
                       counts = counts || jsonb_build_object('released', n_released)
     WHERE runs.run_id = r.run_id;
    RETURN n_released;
END
$$;
REVOKE ALL ON FUNCTION pw.release_run(bigint) FROM PUBLIC;
-- the history and the DNS cache are state worth keeping across a dump
SELECT pg_catalog.pg_extension_config_dump('pw.runs', '');
SELECT pg_catalog.pg_extension_config_dump('pw.runs_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pw.run_carriers', '');
SELECT pg_catalog.pg_extension_config_dump('pw.mx_domains', '');
GRANT SELECT ON pw.runs, pw.run_history, pw.last_runs TO PUBLIC;
