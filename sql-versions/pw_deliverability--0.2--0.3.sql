-- pw_deliverability 0.2 -> 0.3: only what changed; the objects' final shape
-- is in src/sql/.
\echo Use "ALTER EXTENSION pw_deliverability UPDATE TO '0.3'" to load this file. \quit

-- a mail log's state is found by its file's identity too (issue 12 item 4)
CREATE INDEX maillog_files_identity ON pw.maillog_files (dev, inode);

-- pw.maillog_profile() (security definer) is no longer executable by PUBLIC;
-- the ingest calls it without an EXECUTE check (issue 12 item 7)
REVOKE ALL ON FUNCTION pw.maillog_profile(text, text) FROM PUBLIC;

-- profiles no selection could use: an infinite warmup_start, a brake window
-- beyond a year (issue 12 item 7)
ALTER TABLE pw.profiles
    ADD CONSTRAINT profiles_warmup_start_finite CHECK (isfinite(warmup_start)),
    ADD CONSTRAINT profiles_brake_window_days_max CHECK (brake_window_days <= 366);

-- The reputation brake is judged once: pw.brake_status() gains braked_only
-- (only the braked operators, summing only those a day of the window puts
-- near a threshold), which the selection and pw.braked_operators use.
DROP VIEW pw.braked_operators;
DROP FUNCTION pw.brake_status(text);
CREATE FUNCTION pw.brake_status(profile text DEFAULT 'default', braked_only boolean DEFAULT false)
RETURNS TABLE (operator text, op_class text, sent bigint, deferred bigint, bounced bigint,
               sample bigint, bounce_rate numeric, deferral_rate numeric,
               action text, reason text, since date)
LANGUAGE sql STABLE
BEGIN ATOMIC
    WITH p AS (
        SELECT p.name, p.brake_enabled, p.brake_window_days, p.brake_min_sample,
               p.brake_bounce_rate, p.brake_deferral_rate, p.brake_slow_factor,
               (p.brake_bounce_rate - 0.0001)::float8 AS bounce_floor,
               (p.brake_deferral_rate - 0.0001)::float8 AS deferral_floor
          FROM pw.profiles p WHERE p.name = brake_status.profile
    ), near AS (
        SELECT s.mx_provider
          FROM pw.maillog_daily s, p
         WHERE s.day > current_date - p.brake_window_days AND s.day <= current_date
           AND s.profile IN (p.name, '') AND p.brake_enabled
           AND (s.bounced::float8 > p.bounce_floor * (s.sent + s.bounced)::float8
                OR s.deferred::float8 > p.deferral_floor * (s.sent + s.deferred + s.bounced)::float8)
    ), o AS (
        SELECT d.mx_provider AS operator, sum(d.sent)::bigint AS sent,
               sum(d.deferred)::bigint AS deferred, sum(d.bounced)::bigint AS bounced,
               min(d.day) FILTER (WHERE d.bounced > 0) AS first_bounce,
               min(d.day) FILTER (WHERE d.deferred > 0) AS first_deferral
          FROM pw.maillog_daily d, p
         WHERE d.day > current_date - p.brake_window_days AND d.day <= current_date
           AND d.profile IN (p.name, '')
           AND d.mx_provider <> '(not a carrier)'
           AND (NOT brake_status.braked_only OR d.mx_provider IN (SELECT n.mx_provider FROM near n))
         GROUP BY d.mx_provider
    ), r AS (
        SELECT o.*, o.sent + o.deferred + o.bounced AS sample,
               round(o.bounced::numeric / nullif(o.sent + o.bounced, 0), 4) AS bounce_rate,
               round(o.deferred::numeric / nullif(o.sent + o.deferred + o.bounced, 0), 4) AS deferral_rate
          FROM o
    ), j AS (
        SELECT r.*,
               CASE WHEN NOT p.brake_enabled OR r.sample < p.brake_min_sample THEN NULL
                    WHEN r.bounce_rate > p.brake_bounce_rate THEN 'paused'
                    WHEN r.deferral_rate > p.brake_deferral_rate THEN 'slowed' END AS action
          FROM r CROSS JOIN p
    )
    SELECT j.operator,
           CASE WHEN j.operator = '(untagged)' THEN NULL ELSE coalesce(op.op_class, 'default') END,
           j.sent, j.deferred, j.bounced, j.sample, j.bounce_rate, j.deferral_rate, j.action,
           CASE j.action
                WHEN 'paused'
                THEN format('bounce rate %s > %s over %s outcomes in %s day(s)',
                            j.bounce_rate, p.brake_bounce_rate, j.sample, p.brake_window_days)
                WHEN 'slowed'
                THEN format('deferral rate %s > %s over %s outcomes in %s day(s): allowance x %s',
                            j.deferral_rate, p.brake_deferral_rate, j.sample, p.brake_window_days,
                            p.brake_slow_factor) END,
           CASE j.action WHEN 'paused' THEN j.first_bounce
                         WHEN 'slowed' THEN j.first_deferral END
      FROM j CROSS JOIN p
      LEFT JOIN pw.operators op ON op.label = j.operator
     WHERE NOT brake_status.braked_only OR j.action IS NOT NULL
     ORDER BY j.operator;
END;

-- The operators braked now, for every profile.
CREATE VIEW pw.braked_operators AS
SELECT p.name AS profile, b.operator, b.op_class, b.sample, b.bounce_rate, b.deferral_rate,
       b.action, b.reason, b.since
  FROM pw.profiles p
 CROSS JOIN LATERAL pw.brake_status(p.name, braked_only => true) b;


-- The daily caps are one rule: pw.daily_caps() (all of a profile's caps on a
-- warmup day), which the selection loads and pw.daily_cap() reads.
-- The daily caps of a profile on a warmup day, one rule for the selection
-- and pw.daily_cap(): a row per operator class (operator NULL) with the
-- class's ramp row of the greatest from_day <= the day, else the profile's
-- default_daily_cap for the default class and 0 for any other; and a row per
-- operator with an override in pw.operator_ramp (which wins over its class).
CREATE FUNCTION pw.daily_caps(profile text, warmup_day integer)
RETURNS TABLE (op_class text, operator text, daily_cap integer)
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT c.name, NULL::text,
           coalesce((SELECT r.daily_cap FROM pw.warmup_ramp r
                      WHERE r.profile = daily_caps.profile AND r.op_class = c.name
                        AND r.from_day <= daily_caps.warmup_day
                      ORDER BY r.from_day DESC LIMIT 1),
                    CASE WHEN c.name = 'default'
                         THEN (SELECT p.default_daily_cap FROM pw.profiles p
                                WHERE p.name = daily_caps.profile)
                         ELSE 0 END)
      FROM (SELECT k.name FROM pw.operator_classes k UNION SELECT 'default') c
    UNION ALL
    SELECT NULL::text, o.operator, o.daily_cap
      FROM (SELECT DISTINCT ON (r.operator) r.operator, r.daily_cap
              FROM pw.operator_ramp r
             WHERE r.profile = daily_caps.profile AND r.from_day <= daily_caps.warmup_day
             ORDER BY r.operator, r.from_day DESC) o;
END;

-- The daily cap of one operator (label) under a profile on a warmup day;
-- NULL for a profile that does not exist.
CREATE OR REPLACE FUNCTION pw.daily_cap(profile text, label text, warmup_day integer)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT coalesce(
        (SELECT c.daily_cap FROM pw.daily_caps(daily_cap.profile, daily_cap.warmup_day) c
          WHERE c.operator = daily_cap.label),
        (SELECT c.daily_cap FROM pw.daily_caps(daily_cap.profile, daily_cap.warmup_day) c
          WHERE c.operator IS NULL AND c.op_class = pw.operator_class(daily_cap.label)))
     WHERE EXISTS (SELECT 1 FROM pw.profiles p WHERE p.name = daily_cap.profile);
END;

-- pw.suppress(): an address longer than RFC 5321 allows is a clear error, not
-- an index row size error (issue 12 item 7)
-- Adds an address to the suppression list (an opt-out, from any sending
-- domain).  True when it was not suppressed yet.
CREATE OR REPLACE FUNCTION pw.suppress(email text, reason text)
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

-- the hint of pw.require_pg_cron() points at docs/operations.md
-- Fails unless pg_cron is installed in this database.
CREATE OR REPLACE FUNCTION pw.require_pg_cron() RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Preload pg_cron (shared_preload_libraries), set cron.database_name to this '
                         'database, and run CREATE EXTENSION pg_cron here; or schedule the jobs '
                         'with another scheduler (see docs/operations.md).';
    END IF;
END
$$;

-- the progress of running tagging runs
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

-- pw.maillog_files without the tail (256 bytes, 512 hex digits a row): what
-- each log's ingest has reached (issue 18)
CREATE VIEW pw.maillog_status AS
SELECT path, dev, inode, "offset", lines, events, unparsed, overlong, updated_at,
       octet_length(tail) AS tail_bytes
  FROM pw.maillog_files;

-- the carriers contract and each profile's sent column checked when the
-- configuration rows change, by the code of pw.carriers_check() (issue 18)
CREATE FUNCTION pw.carriers_config_check() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'pw_carriers_config_check';

CREATE FUNCTION pw.profiles_sent_column_check() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'pw_profiles_sent_column_check';

CREATE TRIGGER carriers_config_check
    AFTER INSERT OR UPDATE ON pw.carriers_config
    FOR EACH ROW EXECUTE FUNCTION pw.carriers_config_check();

CREATE TRIGGER profiles_sent_column_check
    AFTER INSERT OR UPDATE OF sent_column ON pw.profiles
    FOR EACH ROW EXECUTE FUNCTION pw.profiles_sent_column_check();

-- a description of every table, view and function (issue 18)
-- Configuration
COMMENT ON TABLE pw.verify_results IS
    'Every email verification result the extension knows: dead results are never mailed by a campaign; verifiable dead ones may be mailed by a verification profile.';
COMMENT ON TABLE pw.operator_classes IS
    'The classes operators fall in (big, consumer, default); operators not in pw.operators are in the default class.';
COMMENT ON TABLE pw.operators IS
    'Operators (MX labels) whose class is not default.';
COMMENT ON TABLE pw.mx_suffix_rules IS
    'Which MX hosts belong to which operator label: a host matches a suffix it equals or ends with after a dot; the longest match wins.';
COMMENT ON TABLE pw.blocked_domains IS
    'Recipient domains never mailed, whatever their MX.';
COMMENT ON TABLE pw.suppressions IS
    'Addresses (normalised) never mailed again by any profile: hard bounces and opt-outs.';
COMMENT ON TABLE pw.carriers_config IS
    'The carriers contract, one row: the carriers table and its id, email, verification result and MX columns; checked against the catalog when changed.';
COMMENT ON TABLE pw.profiles IS
    'Send profiles: warmup, caps, pool, sent column (checked against the carriers table when set) and reputation brake of each stream.';
COMMENT ON TABLE pw.warmup_ramp IS
    'Daily cap per profile and operator class from a warmup day on.';
COMMENT ON TABLE pw.operator_ramp IS
    'Daily cap per profile and operator from a warmup day on, overriding the class ramp.';
COMMENT ON TABLE pw.maillogs IS
    'The mail logs to ingest, each mapped to the send profile whose traffic it records, with its ingest schedule.';

-- MX tagging
COMMENT ON TABLE pw.mx_domains IS
    'Every recipient domain the tagger has seen: its MX lookup outcome, label and when it is looked up next.';
COMMENT ON VIEW pw.mx_backlog IS
    'The tagging backlog in one row: untagged carriers and domains, unresolved, failing, due, invalid and cached domains.';
COMMENT ON VIEW pw.mx_labels IS
    'Carriers per MX label (NULL: untagged) with the label''s operator class.';
COMMENT ON VIEW pw.mx_failing IS
    'Domains whose MX lookups keep failing, worst first.';

-- Mail logs and outcomes
COMMENT ON TABLE pw.maillog_files IS
    'Where the ingest of each mail log stands: file identity, offset after the last line applied, running totals and the tail bytes that recognise the file (pw.maillog_status shows it without the tail).';
COMMENT ON VIEW pw.maillog_status IS
    'pw.maillog_files without its tail bytes: where the ingest of each mail log stands.';
COMMENT ON TABLE pw.maillog_pending IS
    'Recipients seen deferred and not yet delivered or bounced, per queue id, until an expiry bounces them.';
COMMENT ON TABLE pw.deliveries IS
    'What the mail logs said about each address (normalised): sends, bounces, deferrals and confirmation.';
COMMENT ON TABLE pw.maillog_daily IS
    'Outcomes per day, operator and profile of the log: the input of the reputation brake.';
COMMENT ON VIEW pw.operator_outcomes IS
    'Outcomes per operator over all logs, with bounce and deferral rates.';
COMMENT ON VIEW pw.braked_operators IS
    'The operators the reputation brake pauses or slows now, for every profile.';

-- Functions: configuration and the carriers contract
COMMENT ON FUNCTION pw.operator_class(text) IS
    'The operator class of an MX label (NULL for NULL).';
COMMENT ON FUNCTION pw.normalize_email(text) IS
    'An address as the suppression list stores it: trimmed, lower case.';
COMMENT ON FUNCTION pw.email_domain(text) IS
    'The domain part of an address, normalised (NULL if empty).';
COMMENT ON FUNCTION pw.suppressions_normalize() IS
    'Trigger of pw.suppressions: stores the address normalised.';
COMMENT ON FUNCTION pw.profiles_check() IS
    'Trigger of pw.profiles: refuses unknown or dead sendable results and a sent column shared by a campaign and a verification profile.';
COMMENT ON FUNCTION pw.daily_caps(text, integer) IS
    'The daily caps of a profile on a warmup day, per operator class and per overridden operator.';
COMMENT ON FUNCTION pw.daily_cap(text, text, integer) IS
    'The daily cap of one operator label under a profile on a warmup day (NULL for an unknown profile).';
COMMENT ON FUNCTION pw.warmup_day(text) IS
    'The warmup day of a profile today (its warmup_start is day 1).';
COMMENT ON FUNCTION pw.carriers_check(name) IS
    'The carriers contract resolved against the catalog (and a sent column, if given), or an error naming what is missing.';
COMMENT ON FUNCTION pw.carriers_config_check() IS
    'Trigger of pw.carriers_config: the checks of pw.carriers_check() on the changed row, and a warning for each profile whose sent column the carriers table lacks.';
COMMENT ON FUNCTION pw.profiles_sent_column_check() IS
    'Trigger of pw.profiles: refuses a sent column that the configured carriers table lacks or holds with a type other than timestamptz.';
COMMENT ON FUNCTION pw.config_row_update() IS
    'Trigger of the configuration tables: an updated row becomes the user''s (seeded = false) and is dumped.';
COMMENT ON FUNCTION pw.config_row_insert() IS
    'Trigger of the configuration tables: a row with the key of a shipped row replaces that row in place.';

-- Functions: MX tagging
COMMENT ON FUNCTION pw.classify_mx(text[]) IS
    'The operator label of a domain from its MX hosts in preference order: a suffix rule of the primary host, else mx: and its registrable domain; none for a null MX.';
COMMENT ON FUNCTION pw.normalize_domain(text) IS
    'A host name in normal form (lower case, no trailing dot, IDN as A-labels), or NULL when it is not a valid host name.';
COMMENT ON FUNCTION pw.domain_problem(text) IS
    'Why a name is not a valid host name (NULL when it is).';
COMMENT ON FUNCTION pw.registrable_domain(text) IS
    'The registrable domain of a host under the ICANN section of the Public Suffix List.';
COMMENT ON FUNCTION pw.resolve_mx(text) IS
    'One DNS lookup: the MX records of a domain, lowest preference first.';
COMMENT ON FUNCTION pw.mx_tag(integer) IS
    'Tags up to max_domains untagged or stale recipient domains in this backend; returns the run''s counts.';
COMMENT ON FUNCTION pw.create_tagging_index() IS
    'Creates the partial index and statistics that keep finding untagged carriers cheap, and analyzes the carriers; returns the index''s name.';
COMMENT ON FUNCTION pw.mx_backlog_stats() IS
    'The tagging backlog in one row (the body of pw.mx_backlog).';
COMMENT ON FUNCTION pw.mx_label_counts() IS
    'Carriers per MX label with the label''s operator class (the body of pw.mx_labels).';
COMMENT ON FUNCTION pw.wake_tagger() IS
    'Wakes the background tagger, e.g. after an import; false when none runs.';
COMMENT ON FUNCTION pw.tagger_pid() IS
    'The process id of the background tagger, or NULL when none runs.';

-- Functions: selection
COMMENT ON FUNCTION pw.select_sendable_carriers(integer, text, integer, boolean) IS
    'The carriers a run of a profile may mail, in id order, within the quota, caps, warmup holds and brake; with claim, marks them sent.';
COMMENT ON FUNCTION pw.selection_composition(integer, text, integer) IS
    'The dry run of a selection: one row per bucket with its candidates, allowance, selected count and brake.';
COMMENT ON FUNCTION pw.profile_pool(text) IS
    'The verification results a profile may select.';
COMMENT ON FUNCTION pw.selection_index_ddl(text, boolean) IS
    'The CREATE INDEX statements that keep a profile''s selection fast (concurrently, if asked).';
COMMENT ON FUNCTION pw.create_selection_indexes(text) IS
    'Creates the indexes of pw.selection_index_ddl() for a profile; returns the statements run.';

-- Functions: mail logs
COMMENT ON FUNCTION pw.read_maillog(text, bigint) IS
    'The delivery-status and expiry lines of a Postfix log inside pw_deliverability.maillog_directory, from an offset on.';
COMMENT ON FUNCTION pw.maillog_last_read() IS
    'What the last pw.read_maillog() of this session read: the next offset and the lines seen, returned, ignored and skipped.';
COMMENT ON FUNCTION pw.ingest_maillog(text) IS
    'Ingests a mail log from where the last call stopped (following rotation): outcomes, hard bounces written back and suppressed, the offset advanced.';
COMMENT ON FUNCTION pw.confirm_deliveries(interval) IS
    'Marks send_confirmed the carriers delivered longer ago than older_than and never bounced; returns how many.';
COMMENT ON FUNCTION pw.create_writeback_index() IS
    'Creates the index on the carriers'' normalised email that the bounce writeback joins on, if missing; returns its name.';
COMMENT ON FUNCTION pw.suppress(text, text) IS
    'Adds an address to the suppression list; true when it was not suppressed yet.';

-- Functions: operations
COMMENT ON FUNCTION pw.maillog_profile(text, text) IS
    'The profile pw.maillogs maps a log to ('''' if none); called by the ingest.';
COMMENT ON FUNCTION pw.brake_status(text, boolean) IS
    'The reputation brake of a profile: per operator, outcomes and rates over the window and whether it is paused or slowed.';
COMMENT ON FUNCTION pw.report(text) IS
    'The state of a profile in one report: pool, tagging backlog, sends against caps, outcomes and brake, verification progress.';
COMMENT ON FUNCTION pw.require_pg_cron() IS
    'Fails unless pg_cron is installed in this database.';
COMMENT ON FUNCTION pw.schedule_jobs(text, text, text, integer) IS
    'Registers the daily loop with pg_cron for the calling role (tagging, ingest of each log, confirmation); idempotent.';
COMMENT ON FUNCTION pw.unschedule_jobs() IS
    'Removes the pg_cron jobs pw.schedule_jobs() registered for the calling role; returns how many.';

-- descriptions of the tagging progress view and its function
COMMENT ON VIEW pw.mx_tag_progress IS
    'The tagging runs under way in the cluster, one row each (pw.mx_tag() callers and the background tagger): phase and counts so far; empty unless the library is preloaded.';
COMMENT ON FUNCTION pw.mx_tag_progress_rows() IS
    'The rows of pw.mx_tag_progress, read from shared memory (not executable by PUBLIC).';

-- VERP return paths and opt-out tokens (src/sql/06_tokens.sql)
-- The key opt-out tokens are signed with: one row, made at CREATE EXTENSION
-- from the server's strong random source (gen_random_uuid()), readable only
-- by the extension's owner; dumped so that tokens already sent survive a
-- restore.
CREATE TABLE pw.token_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key       bytea NOT NULL CHECK (octet_length(key) >= 16),
    created   timestamptz NOT NULL DEFAULT now()
);
-- An inserted key replaces the one there (so that a restore brings the
-- dumped key back over the one CREATE EXTENSION made).
CREATE FUNCTION pw.token_key_replace() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    DELETE FROM pw.token_key;
    RETURN NEW;
END
$$;
CREATE TRIGGER token_key_replace BEFORE INSERT ON pw.token_key
    FOR EACH ROW EXECUTE FUNCTION pw.token_key_replace();
INSERT INTO pw.token_key (key)
SELECT pg_catalog.sha256(pg_catalog.convert_to(
           gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8'));
REVOKE ALL ON pw.token_key FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pw.token_key', '');

-- The envelope sender prefix+user=domain@origin_domain that names recipient
-- (Postfix's VERP, delimiters pw_deliverability.verp_delimiters).
CREATE FUNCTION pw.verp_address(recipient text, prefix text, origin_domain text)
RETURNS text
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_verp_address';

-- The recipient a VERP address names, NULL if it names none (if prefix is
-- given, the address's local part must start with it).
CREATE FUNCTION pw.verp_recipient(address text, prefix text DEFAULT NULL)
RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_verp_recipient';

-- The opt-out token of one sent message (not executable by PUBLIC: whoever
-- can make tokens can opt anyone out).
CREATE FUNCTION pw.optout_token(message_id bigint, email text)
RETURNS text
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'pw_optout_token';
REVOKE ALL ON FUNCTION pw.optout_token(bigint, text) FROM PUBLIC;

-- The message id an opt-out token names, NULL if it is not a well-formed
-- token (its signature is not checked: see pw.optout_token_valid()).
CREATE FUNCTION pw.optout_token_message(token text)
RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_optout_token_message';

-- Whether token was made for (message_id, email) with this database's key.
CREATE FUNCTION pw.optout_token_valid(token text, message_id bigint, email text)
RETURNS boolean
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'pw_optout_token_valid';

COMMENT ON TABLE pw.token_key IS
    'The key opt-out tokens are signed with (one row, random at CREATE EXTENSION, readable only by the owner, dumped with the configuration).';
COMMENT ON FUNCTION pw.token_key_replace() IS
    'Trigger of pw.token_key: an inserted key replaces the one there.';
COMMENT ON FUNCTION pw.verp_address(text, text, text) IS
    'The VERP envelope sender prefix+user=domain@origin_domain that names a recipient (delimiters pw_deliverability.verp_delimiters).';
COMMENT ON FUNCTION pw.verp_recipient(text, text) IS
    'The recipient a VERP address names, NULL if it names none.';
COMMENT ON FUNCTION pw.optout_token(bigint, text) IS
    'The opt-out token of one sent message (its id and address); not executable by PUBLIC.';
COMMENT ON FUNCTION pw.optout_token_message(text) IS
    'The message id an opt-out token names, NULL if it is not a well-formed token (the signature is not checked).';
COMMENT ON FUNCTION pw.optout_token_valid(text, bigint, text) IS
    'Whether an opt-out token was made for this message id and address with this database''s key.';
