
-- ---------------------------------------------------------------------------
-- Mail logs: reading, ingestion and bounce writeback
-- ---------------------------------------------------------------------------

-- One row per delivery-status line (smtp, lmtp, local, virtual, pipe, error,
-- retry, discard, ...) and per qmgr "status=expired" line of a Postfix log
-- inside pw_deliverability.maillog_directory, from start_offset on.
-- line_offset is the byte offset where the line starts; category is that of
-- a bounce or deferral by pw.bounce_rules (an expiry of a recipient: by its
-- last deferral's reason), NULL for other lines.
CREATE FUNCTION pw.read_maillog(path text, start_offset bigint DEFAULT 0)
RETURNS TABLE (line_offset bigint, logged_at timestamptz, host text, program text,
               pid integer, queue_id text, recipient text, orig_recipient text,
               relay text, delay float8, dsn text, status text, reason text,
               category text)
LANGUAGE c VOLATILE STRICT
AS 'MODULE_PATHNAME', 'pw_read_maillog';

-- What the last pw.read_maillog() of this session read: the offset after the
-- last complete line and the lines seen, returned, ignored, skipped.
CREATE FUNCTION pw.maillog_last_read(
    OUT path text, OUT start_offset bigint, OUT end_offset bigint,
    OUT lines bigint, OUT events bigint, OUT other bigint,
    OUT unparsed bigint, OUT overlong bigint, OUT dev bigint, OUT inode bigint)
RETURNS record
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pw_maillog_last_read';

-- Where ingestion of each log file stands: the file (device, inode) and the
-- offset after the last line applied, with running totals.  "tail" tells a
-- file apart from another one that reuses the inode, or from the same file
-- truncated and written past the offset again.
CREATE TABLE pw.maillog_files (
    path        text PRIMARY KEY,
    dev         bigint NOT NULL,
    inode       bigint NOT NULL,
    "offset"    bigint NOT NULL DEFAULT 0 CONSTRAINT maillog_files_offset_nonnegative CHECK ("offset" >= 0),
    lines       bigint NOT NULL DEFAULT 0,
    events      bigint NOT NULL DEFAULT 0,
    unparsed    bigint NOT NULL DEFAULT 0,
    overlong    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    tail        bytea       -- the bytes just before "offset" (up to 256): recognises the file
);

-- A file is also known by its identity: pw.ingest_maillog() refuses a path
-- whose file another path's state has already read.
CREATE INDEX maillog_files_identity ON pw.maillog_files (dev, inode);

-- pw.maillog_files without the tail (256 bytes, 512 hex digits a row): what
-- each log's ingest has reached.
CREATE VIEW pw.maillog_status AS
SELECT path, dev, inode, "offset", lines, events, unparsed, overlong, updated_at,
       octet_length(tail) AS tail_bytes
  FROM pw.maillog_files;

-- Recipients seen deferred and not (yet) sent or bounced, per queue id: a
-- later qmgr "status=expired" of that queue id bounces them.
CREATE TABLE pw.maillog_pending (
    queue_id    text NOT NULL,
    email       text NOT NULL,
    deferred_at timestamptz NOT NULL,
    dsn         text,
    reason      text,
    source      text,
    PRIMARY KEY (queue_id, email)
);

-- What the logs said about each address (normalised), carrier or not.
-- bounced_at, bounce_count, bounce_dsn, bounce_reason and bounce_category
-- are of hard bounces (a category that is the address's fault); failed_at,
-- failed_count, failed_dsn and failed_reason of the other bounces (blocks,
-- rate limits, full mailboxes, expiries for the sender's reasons), with
-- blocked_count of those that were blocks or rate limits; last_category is
-- the category of the latest bounce or deferral.  Every ingest updates the rows of the addresses it saw: half of each page
-- is left free so that the updates stay on the page (HOT).
CREATE TABLE pw.deliveries (
    email            text PRIMARY KEY,
    first_sent_at    timestamptz,
    last_sent_at     timestamptz,
    sent_count       bigint NOT NULL DEFAULT 0,
    last_deferred_at timestamptz,
    deferred_count   bigint NOT NULL DEFAULT 0,
    bounced_at       timestamptz,
    bounce_count     bigint NOT NULL DEFAULT 0,
    bounce_dsn       text,
    bounce_reason    text,
    source           text,
    in_carriers      boolean NOT NULL DEFAULT false,
    mx_provider      text,
    confirmed_at     timestamptz,
    bounce_category  text,
    failed_at        timestamptz,
    failed_count     bigint NOT NULL DEFAULT 0,
    blocked_count    bigint NOT NULL DEFAULT 0,
    failed_dsn       text,
    failed_reason    text,
    last_category    text
) WITH (fillfactor = 50);

-- Outcomes per day (of the log time, in the ingesting session's time zone),
-- operator (the carrier's mx_provider when ingested; '(untagged)' for
-- carriers without one, '(not a carrier)' for other addresses) and profile
-- of the log they came from ('' for a log not mapped to a profile in
-- pw.maillogs).  bounced counts every bounce; hard_bounced those that were
-- the address's fault, blocked those of a block category (the sender
-- refused); throttled the deferrals of a block or throttle category and the
-- bounces of a throttle category (rate limits), which slow the operator.
CREATE TABLE pw.maillog_daily (
    day          date NOT NULL,
    mx_provider  text NOT NULL,
    sent         bigint NOT NULL DEFAULT 0,
    deferred     bigint NOT NULL DEFAULT 0,
    bounced      bigint NOT NULL DEFAULT 0,
    profile      text NOT NULL DEFAULT '',
    hard_bounced bigint NOT NULL DEFAULT 0,
    blocked      bigint NOT NULL DEFAULT 0,
    throttled    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, mx_provider, profile)
);

-- The bounces and deferrals of pw.maillog_daily by category.
CREATE TABLE pw.maillog_categories (
    day         date NOT NULL,
    mx_provider text NOT NULL,
    profile     text NOT NULL DEFAULT '',
    category    text NOT NULL,
    bounced     bigint NOT NULL DEFAULT 0,
    deferred    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, mx_provider, profile, category)
);

-- Per-operator outcomes with rates, over all logs: watch each operator's
-- hard-bounce, block and throttle rates.  bounce_rate is that of hard
-- bounces (the addresses' fault), block_rate that of blocks (the sender's),
-- over the final outcomes (sent + bounced); deferral_rate is over every
-- outcome, throttle_rate that of the throttled outcomes.
CREATE VIEW pw.operator_outcomes AS
SELECT day, mx_provider, sent, deferred, bounced,
       round(hard_bounced::numeric / nullif(sent + bounced, 0), 4) AS bounce_rate,
       round(deferred::numeric / nullif(sent + bounced + deferred, 0), 4) AS deferral_rate,
       hard_bounced, blocked, bounced - hard_bounced - blocked AS failed, throttled,
       round(blocked::numeric / nullif(sent + bounced, 0), 4) AS block_rate,
       round(throttled::numeric / nullif(sent + bounced + deferred, 0), 4) AS throttle_rate
  FROM (SELECT d.day, d.mx_provider, sum(d.sent)::bigint AS sent,
               sum(d.deferred)::bigint AS deferred, sum(d.bounced)::bigint AS bounced,
               sum(d.hard_bounced)::bigint AS hard_bounced, sum(d.blocked)::bigint AS blocked,
               sum(d.throttled)::bigint AS throttled
          FROM pw.maillog_daily d GROUP BY d.day, d.mx_provider) m;
-- The ingests under way in the cluster, one row each: the file being read,
-- the phase (reading, applying), where in the file, the events and
-- addresses read, the steps of the apply phase done; empty unless
-- the library is preloaded.
CREATE FUNCTION pw.ingest_progress_rows()
RETURNS TABLE (pid integer, datid oid, started timestamptz, file text, phase text,
               file_offset bigint, events bigint, addresses bigint, steps_done bigint)
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pw_ingest_progress_rows';

REVOKE EXECUTE ON FUNCTION pw.ingest_progress_rows() FROM PUBLIC;

CREATE VIEW pw.ingest_progress AS
SELECT p.pid, p.datid, d.datname, p.started, p.file, p.phase, p.file_offset, p.events,
       p.addresses, p.steps_done
  FROM pw.ingest_progress_rows() p
  LEFT JOIN pg_catalog.pg_database d ON d.oid = p.datid;


-- Reads a mail log from where the last call on it stopped (following
-- rotation to path.1), records deliveries, deferrals and bounces with their
-- categories, writes hard bounces (the address's fault) back to the
-- carriers and the suppression list, and advances the stored offset, all in
-- the caller's transaction.  bounced counts every bounce, hard_bounced those
-- that were the address's fault, blocked those that were blocks or rate
-- limits.
CREATE FUNCTION pw.ingest_maillog(path text,
    OUT files integer, OUT lines bigint, OUT events bigint, OUT unparsed bigint,
    OUT overlong bigint, OUT sent bigint, OUT deferred bigint, OUT bounced bigint,
    OUT expired bigint, OUT carriers_bounced bigint, OUT unknown_addresses bigint,
    OUT suppressed bigint, OUT end_offset bigint, OUT hard_bounced bigint,
    OUT blocked bigint)
RETURNS record
LANGUAGE c VOLATILE STRICT
SET jit = off SET work_mem = '64MB'
AS 'MODULE_PATHNAME', 'pw_ingest_maillog';

-- Carriers whose address was delivered longer ago than older_than, never
-- hard-bounced, and not failed since its last delivery (a block, a rate
-- limit, an expiry) become send_confirmed (never over hard_bounced or a
-- suppressed address).  Returns the number of carriers changed.
CREATE FUNCTION pw.confirm_deliveries(older_than interval DEFAULT '48 hours')
RETURNS bigint
LANGUAGE c VOLATILE STRICT
SET jit = off SET work_mem = '64MB'
AS 'MODULE_PATHNAME', 'pw_confirm_deliveries';

-- Creates the index on the carriers' normalised email that the writeback
-- joins on, if missing; returns its name.
CREATE FUNCTION pw.create_writeback_index()
RETURNS text
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pw_create_writeback_index';

-- Adds an address to the suppression list (an opt-out, from any sending
-- domain).  True when it was not suppressed yet.
CREATE FUNCTION pw.suppress(email text, reason text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE STRICT
SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    added integer;
BEGIN
    IF position('@' IN email) = 0 THEN
        RAISE EXCEPTION 'cannot suppress "%": not an email address', email
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- PW_EMAIL_MAX_LEN (src/common/pw_common.h): RFC 5321's limit
    IF octet_length(pw.normalize_email(email)) > 254 THEN
        RAISE EXCEPTION 'cannot suppress an address of % bytes: longer than RFC 5321 allows',
                        octet_length(pw.normalize_email(email))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'An email address has at most 254 bytes.';
    END IF;
    INSERT INTO pw.suppressions (email, reason, source)
    VALUES (pw.normalize_email(email), reason, 'pw.suppress')
    ON CONFLICT ON CONSTRAINT suppressions_pkey DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added > 0;
END
$$;

-- Reading server files and changing results is for roles granted it.
REVOKE ALL ON FUNCTION pw.read_maillog(text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION pw.maillog_last_read() FROM PUBLIC;
REVOKE ALL ON FUNCTION pw.ingest_maillog(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION pw.confirm_deliveries(interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION pw.create_writeback_index() FROM PUBLIC;
REVOKE ALL ON FUNCTION pw.suppress(text, text) FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pw.maillog_files', '');
SELECT pg_catalog.pg_extension_config_dump('pw.maillog_pending', '');
SELECT pg_catalog.pg_extension_config_dump('pw.deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('pw.maillog_daily', '');
SELECT pg_catalog.pg_extension_config_dump('pw.maillog_categories', '');
