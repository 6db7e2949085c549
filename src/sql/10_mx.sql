
-- ---------------------------------------------------------------------------
-- MX tagging: classifier, per-domain cache, tagging, the worker's controls
-- ---------------------------------------------------------------------------

-- The label of a domain from its MX hosts in preference order: the primary
-- (first valid) host's suffix rule, else 'mx:' + its registrable domain
-- (ICANN section of the Public Suffix List); 'none' for a null MX.
CREATE FUNCTION pw.classify_mx(exchanges text[]) RETURNS text
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_classify_mx';

-- A host name in normal form (lower case, no trailing dot, IDN as
-- punycode), or NULL when it is not a valid host name.
CREATE FUNCTION pw.normalize_domain(domain text) RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_normalize_domain';

-- Why a name is not a valid host name (NULL when it is).
CREATE FUNCTION pw.domain_problem(domain text) RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_domain_problem';

-- The registrable domain of a host under the ICANN section of the PSL.
CREATE FUNCTION pw.registrable_domain(host text) RETURNS text
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_registrable_domain';

-- One DNS lookup: a domain's MX records, lowest preference first.
CREATE FUNCTION pw.resolve_mx(domain text)
RETURNS TABLE (preference int, exchange text)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'pw_resolve_mx';

REVOKE EXECUTE ON FUNCTION pw.resolve_mx(text) FROM PUBLIC;

-- Every recipient domain the tagger has seen, looked up once however many
-- carriers share it.
CREATE TABLE pw.mx_domains (
    domain        text PRIMARY KEY,
    label         text
                  CONSTRAINT mx_domains_label_format
                  CHECK (label = lower(label) AND label <> ''),
    mx_hosts      text[],
    outcome       text NOT NULL
                  CONSTRAINT mx_domains_outcome_known
                  CHECK (outcome IN ('mx', 'address', 'null_mx', 'nxdomain', 'no_records',
                                     'invalid', 'failed')),
    resolved_at   timestamptz,
    checked_at    timestamptz NOT NULL DEFAULT now(),
    next_check_at timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    CONSTRAINT mx_domains_label_matches_outcome
        CHECK (CASE outcome
                   WHEN 'mx' THEN label IS NOT NULL AND label <> 'none'
                   WHEN 'address' THEN label LIKE 'mx:%'
                   WHEN 'failed' THEN true
                   ELSE label = 'none'
               END)
);

CREATE INDEX mx_domains_next_check_at ON pw.mx_domains (next_check_at)
    WHERE next_check_at IS NOT NULL;

-- Tags up to max_domains untagged or stale domains in this backend.
CREATE FUNCTION pw.mx_tag(max_domains integer DEFAULT 20000)
RETURNS TABLE (looked_up bigint, tagged bigint, "none" bigint, invalid bigint,
               failed bigint, carriers_updated bigint, seconds float8)
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pw_mx_tag';

REVOKE EXECUTE ON FUNCTION pw.mx_tag(integer) FROM PUBLIC;

-- Tags up to max_domains domains in batches of tag_batch_size, committing
-- after each (a pw.mx_tag() call each, a run of pw.runs each): a run
-- cancelled or failed part-way keeps the batches it committed.  CALL it
-- outside a transaction block (pg_cron's jobs are).  No SET clause (a
-- procedure with one cannot commit): each transaction's first statement
-- fixes the search_path instead.
CREATE PROCEDURE pw.mx_tag_batches(max_domains integer DEFAULT 20000)
LANGUAGE plpgsql AS
$$
DECLARE
    todo  integer := max_domains;
    batch integer;
    asked integer;
    r     record;
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    IF max_domains IS NULL OR max_domains < 0 THEN
        RAISE EXCEPTION 'max_domains must be 0 or more, not %', coalesce(max_domains::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    batch := current_setting('pw_deliverability.tag_batch_size')::integer;
    LOOP
        asked := least(batch, todo);
        SELECT * INTO r FROM pw.mx_tag(asked);
        todo := todo - r.looked_up::integer;
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        -- fewer lookups than asked: nothing more is due
        EXIT WHEN todo <= 0 OR r.looked_up < asked;
    END LOOP;
END
$$;
REVOKE ALL ON PROCEDURE pw.mx_tag_batches(integer) FROM PUBLIC;

-- Creates the partial index that keeps finding untagged carriers cheap (the
-- domain of every carrier whose MX column is NULL), and statistics of that
-- domain expression; analyzes the carriers.
CREATE FUNCTION pw.create_tagging_index() RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    c record;
    idx text;
    r record;
BEGIN
    SELECT * INTO c FROM pw.carriers_check();
    idx := (SELECT relname FROM pg_catalog.pg_class WHERE oid = c.relation) || '_pw_untagged_domain';
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (pw.email_domain(%s)) WHERE %s IS NULL',
                   idx, c.relation, c.email_column, c.mx_column);
    -- Statistics of the domain expression, on the table and on each of its
    -- partitions: without them the planner takes a domain to have hundreds
    -- of carriers, and labels a batch of domains by hashing every untagged
    -- carrier instead of probing the index once per domain.
    FOR r IN SELECT n.nspname, k.relname, k.oid::regclass AS rel
               FROM pg_catalog.pg_class k
               JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace
              WHERE k.relkind IN ('r', 'p')
                AND (k.oid = c.relation
                     OR k.oid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree(c.relation) t))
    LOOP
        EXECUTE format('CREATE STATISTICS IF NOT EXISTS %I.%I ON (pw.email_domain(%s)) FROM %s',
                       r.nspname, left(r.relname, 47) || '_pw_email_domain', c.email_column, r.rel);
    END LOOP;
    EXECUTE format('ANALYZE %s', c.relation);
    RETURN idx;
END
$$;

-- The tagging backlog in one row.
CREATE FUNCTION pw.mx_backlog_stats(
    OUT untagged_carriers bigint, OUT untagged_domains bigint,
    OUT unresolved_domains bigint, OUT failing_domains bigint,
    OUT due_domains bigint, OUT invalid_domains bigint, OUT cached_domains bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM pw.carriers_check();
    EXECUTE format('SELECT count(*), count(DISTINCT pw.email_domain(%s)) FROM %s WHERE %s IS NULL',
                   c.email_column, c.relation, c.mx_column)
       INTO untagged_carriers, untagged_domains;
    EXECUTE format('SELECT count(*) FROM (SELECT DISTINCT pw.email_domain(x.%s) AS d FROM %s x WHERE x.%s IS NULL) u'
                   ' WHERE NOT EXISTS (SELECT 1 FROM pw.mx_domains m WHERE m.domain = u.d AND m.label IS NOT NULL)',
                   c.email_column, c.relation, c.mx_column)
       INTO unresolved_domains;
    SELECT count(*) FILTER (WHERE outcome = 'failed'),
           count(*) FILTER (WHERE next_check_at <= now()),
           count(*) FILTER (WHERE outcome = 'invalid'),
           count(*)
      INTO failing_domains, due_domains, invalid_domains, cached_domains
      FROM pw.mx_domains;
END
$$;

CREATE VIEW pw.mx_backlog AS SELECT * FROM pw.mx_backlog_stats();

-- Carriers per MX label (NULL: untagged), with the label's operator class.
CREATE FUNCTION pw.mx_label_counts()
RETURNS TABLE (label text, op_class text, carriers bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    c record;
BEGIN
    SELECT * INTO c FROM pw.carriers_check();
    RETURN QUERY EXECUTE format('SELECT %1$s::text, pw.operator_class(%1$s::text), count(*)'
                                ' FROM %2$s GROUP BY 1 ORDER BY 3 DESC, 1',
                                c.mx_column, c.relation);
END
$$;

CREATE VIEW pw.mx_labels AS SELECT * FROM pw.mx_label_counts();

-- Domains whose lookups keep failing, worst first.
CREATE VIEW pw.mx_failing AS
SELECT domain, attempts, last_error, checked_at, next_check_at, label AS last_good_label
  FROM pw.mx_domains
 WHERE outcome = 'failed'
 ORDER BY attempts DESC, domain;

-- The tagging runs under way in the cluster, one row each (pw.mx_tag()
-- callers and the background tagger); empty unless the library is preloaded.
CREATE FUNCTION pw.mx_tag_progress_rows()
RETURNS TABLE (pid integer, datid oid, background boolean, started timestamptz,
               phase text, max_domains integer, domains_fetched bigint,
               domains_looked_up bigint, domains_tagged bigint, domains_none bigint,
               domains_failed bigint, domains_written bigint, carriers_labelled bigint,
               batches bigint)
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pw_mx_tag_progress_rows';

REVOKE EXECUTE ON FUNCTION pw.mx_tag_progress_rows() FROM PUBLIC;

CREATE VIEW pw.mx_tag_progress AS
SELECT p.pid, p.datid, d.datname, p.background, p.started, p.phase, p.max_domains,
       p.domains_fetched, p.domains_looked_up, p.domains_tagged, p.domains_none,
       p.domains_failed, p.domains_written, p.carriers_labelled, p.batches
  FROM pw.mx_tag_progress_rows() p
  LEFT JOIN pg_catalog.pg_database d ON d.oid = p.datid;

-- Wakes the background tagger (after an import); false when none runs.
CREATE FUNCTION pw.wake_tagger() RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pw_wake_tagger';

REVOKE EXECUTE ON FUNCTION pw.wake_tagger() FROM PUBLIC;

-- The background tagger's process id, or NULL.
CREATE FUNCTION pw.tagger_pid() RETURNS integer
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pw_tagger_pid';
