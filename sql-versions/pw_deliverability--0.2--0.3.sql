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

-- ---------------------------------------------------------------------------
-- Verdicts (issue 14): every bounce and deferral classified by
-- pw.bounce_rules; only the address's fault hard-bounces
-- ---------------------------------------------------------------------------
-- The categories every bounce and deferral falls in (src/verdict/).  Only an
-- address_fault category says the address itself is bad (the mailbox or its
-- domain does not exist, is disabled or has moved): only those bounces mark
-- a carrier hard_bounced and suppress the address.  A block category is a
-- refusal of the sender (its IP, domain, reputation, authentication or
-- content): its bounces count toward pausing the operator, its deferrals
-- toward slowing it.  A throttle category (rate limits) counts toward
-- slowing the operator only.
CREATE TABLE pw.bounce_categories (
    category      text PRIMARY KEY
                  CONSTRAINT bounce_categories_category_format
                  CHECK (category ~ '^[a-z][a-z0-9_]*$'),
    address_fault boolean NOT NULL DEFAULT false,
    block         boolean NOT NULL DEFAULT false,
    throttle      boolean NOT NULL DEFAULT false,
    description   text NOT NULL,
    seeded        boolean NOT NULL DEFAULT false,
    CONSTRAINT bounce_categories_fault_or_block
        CHECK (NOT (address_fault AND (block OR throttle)))
);

INSERT INTO pw.bounce_categories (category, address_fault, block, throttle, description, seeded)
SELECT category, af, block, throttle, description, true FROM (VALUES
    ('bad_mailbox',        true,  false, false, 'the mailbox does not exist (RFC 3463 X.1.1, X.1.3)'),
    ('bad_domain',         true,  false, false, 'the domain does not exist or accepts no mail (X.1.2, X.1.10 null MX, X.4.4)'),
    ('inactive_mailbox',   true,  false, false, 'the mailbox exists but is disabled, suspended or closed (X.2.1, X.7.13)'),
    ('mailbox_moved',      true,  false, false, 'the mailbox has moved with no forwarding address (X.1.6)'),
    ('unreachable_domain', true,  false, false, 'expired after every attempt failed to reach the domain''s MX (timeouts, refused connections, no route, host not found)'),
    ('mailbox_full',       false, false, false, 'the mailbox is over quota (X.2.2): the address exists'),
    ('blocklisted',        false, true,  false, 'the sending IP or domain is on a blocklist (Spamhaus, SORBS, Barracuda, a provider''s own list)'),
    ('reputation',         false, true,  false, 'the sender''s reputation, volume or complaints: refused or deferred by the receiver'),
    ('policy',             false, true,  false, 'refused by the receiver''s policy (sender, PTR/HELO, a rejection at connect, at MAIL FROM, at DATA)'),
    ('spam_content',       false, true,  false, 'the message was judged spam, or its content or attachment refused'),
    ('authentication',     false, true,  false, 'SPF, DKIM or DMARC failed, or the sender is unauthenticated (X.7.20-X.7.27)'),
    ('rate_limited',       false, false, true,  'too many messages, recipients or connections: the receiver throttles the sender'),
    ('greylisted',         false, false, false, 'greylisting: a temporary refusal every new sender gets'),
    ('relaying_denied',    false, false, false, 'the receiving host does not accept mail for this domain (relay access denied)'),
    ('routing',            false, false, false, 'the MX did not answer: timeout, refused connection, no route, DNS failure (one attempt)'),
    ('message_expired',    false, false, false, 'the message expired in the queue after deferrals that were not the address''s fault'),
    ('protocol_error',     false, false, false, 'an SMTP protocol, size, TLS or connection failure during the conversation'),
    ('other',              false, false, false, 'no rule matched: undetermined, never the address''s fault')
) AS s (category, af, block, throttle, description);

-- Ordered rules: the first rule whose every given part matches names the
-- category (no rule matches: 'other').  A rule a user inserts or edits
-- (seeded = false) comes before every shipped one; within each group, by
-- position, then name.  status_pattern and code_pattern must match the
-- whole enhanced status (dsn=, as 5.1.1) and the whole SMTP reply code
-- (550); reply_pattern is searched for in the remote server's reply (or the
-- MTA's own text when there is no reply), case-insensitively.  Patterns are
-- Hyperscan regular expressions (PCRE syntax without back-references or
-- look-around).  stage is where in the SMTP conversation the reply came:
-- connect (the greeting, or no connection), helo, mail (MAIL FROM), rcpt
-- (RCPT TO), data (DATA or end of DATA), or any.
CREATE TABLE pw.bounce_rules (
    name           text PRIMARY KEY
                   CONSTRAINT bounce_rules_name_format CHECK (name ~ '^[a-z0-9][a-z0-9_.-]*$'),
    position       integer NOT NULL DEFAULT 0,
    status_pattern text,
    code_pattern   text,
    reply_pattern  text,
    stage          text NOT NULL DEFAULT 'any'
                   CONSTRAINT bounce_rules_stage_known
                   CHECK (stage IN ('any', 'connect', 'helo', 'mail', 'rcpt', 'data')),
    category       text NOT NULL REFERENCES pw.bounce_categories (category) ON UPDATE CASCADE,
    note           text,
    seeded         boolean NOT NULL DEFAULT false,
    CONSTRAINT bounce_rules_patterns_nonempty
        CHECK (status_pattern <> '' AND code_pattern <> '' AND reply_pattern <> '')
);

-- Checks every pattern of a rule row (compiles it): an invalid pattern is
-- refused when it is written, not at the next ingest.
CREATE FUNCTION pw.bounce_rules_check() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'pw_bounce_rules_check';

-- Tells every session that the rules changed: their compiled rules are
-- rebuilt at the next classification.
CREATE FUNCTION pw.bounce_rules_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'pw_bounce_rules_changed';

CREATE TRIGGER bounce_rules_check BEFORE INSERT OR UPDATE ON pw.bounce_rules
    FOR EACH ROW EXECUTE FUNCTION pw.bounce_rules_check();
CREATE TRIGGER bounce_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pw.bounce_rules
    FOR EACH STATEMENT EXECUTE FUNCTION pw.bounce_rules_changed();
CREATE TRIGGER bounce_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pw.bounce_categories
    FOR EACH STATEMENT EXECUTE FUNCTION pw.bounce_rules_changed();

-- The category of a bounce or deferral: its enhanced status (dsn, may be
-- NULL) and its reply or reason text as Postfix logs it (host H[IP] said:
-- ... (in reply to RCPT TO command)), or a DSN's Diagnostic-Code.
CREATE FUNCTION pw.classify_bounce(dsn text, reply text)
RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_classify_bounce';

-- The parts of a reply the rules are matched on: the SMTP code, the
-- enhanced status found in the reply, the stage and the remote reply text.
CREATE FUNCTION pw.bounce_reply_parts(reply text,
    OUT code text, OUT reply_status text, OUT stage text, OUT remote_reply text)
RETURNS record
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_bounce_reply_parts';

-- The rules are configuration every role may read (pw.classify_bounce()
-- and the ingest read them as the caller); only their owner changes them.
GRANT SELECT ON pw.bounce_categories, pw.bounce_rules TO PUBLIC;
REVOKE ALL ON FUNCTION pw.bounce_rules_check() FROM PUBLIC;
REVOKE ALL ON FUNCTION pw.bounce_rules_changed() FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pw.bounce_categories', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('pw.bounce_rules', 'WHERE NOT seeded');
-- ---------------------------------------------------------------------------
-- The shipped bounce rules (seeded rows of pw.bounce_rules)
-- ---------------------------------------------------------------------------
--
-- Order of the groups (position):
--   100-199  providers' own documented replies, including the misleading
--            ones (an address-like code on a block, a block-like code or
--            stage on a dead mailbox): they win over everything below
--   200-299  texts that name the sender's problem whatever the code says:
--            greylisting, blocklists, authentication, reputation, rate
--            limits, relaying, the sender or client refused, content
--   300-399  the stage: a refusal at connect, HELO, MAIL FROM or DATA is
--            not about the recipient's mailbox
--   400-499  texts about the recipient: unknown mailbox or domain,
--            disabled, moved, full; the MTA's own network texts; protocol
--   500-599  RFC 3463 enhanced status codes (and RFC 7372, RFC 7505)
-- Nothing matching: 'other'.

INSERT INTO pw.bounce_rules (name, position, status_pattern, code_pattern, reply_pattern, stage, category, note, seeded)
SELECT name, position, status_pattern, code_pattern, reply_pattern, stage, category, note, true FROM (VALUES
    -- Yahoo / AOL (postmaster.yahooinc.com error codes)
    ('yahoo.dd_disabled',        100, NULL, NULL, 'delivery error: dd .*(mailbox (is )?disabled|account (is )?(disabled|inactive))', 'any', 'inactive_mailbox',
     'Yahoo answers a disabled mailbox at end of DATA: "554 delivery error: dd ... This mailbox is disabled (554.30)"'),
    ('yahoo.dd_no_account',      101, NULL, NULL, 'delivery error: dd (this user doesn.t have a|sorry,? your message to|requested mail action aborted|not a valid recipient)', 'any', 'bad_mailbox',
     'Yahoo answers an unknown user at end of DATA: "554 delivery error: dd This user doesn''t have a yahoo.com account"'),
    ('yahoo.tss09',              102, NULL, NULL, '\[TSS09\]|all messages from \S+ will be permanently deferred', 'any', 'blocklisted',
     'Yahoo "553 5.7.2 [TSS09] All messages from [IP] will be permanently deferred": the IP is blocked'),
    ('yahoo.tss',                103, NULL, NULL, '\[TSS[0-9][0-9]\]|temporarily deferred due to unexpected volume or user complaints', 'any', 'reputation',
     'Yahoo "421 4.7.0 [TSS04] Messages from [IP] temporarily deferred due to unexpected volume or user complaints"'),
    ('yahoo.ts_content',         104, NULL, NULL, '\[TS0[1-3]\]|message not accepted for policy reasons', 'any', 'spam_content',
     'Yahoo "554 5.7.9 Message not accepted for policy reasons" / [TS01]-[TS03]: the content'),
    ('yahoo.mailbox_unavailable',105, NULL, '552', 'requested mail action aborted, mailbox not found', 'any', 'bad_mailbox',
     'Yahoo "552 1 Requested mail action aborted, mailbox not found": an unknown mailbox with 552'),
    -- Microsoft 365, Outlook.com (Exchange Online NDR and Outlook.com error codes)
    ('microsoft.dbeb',           110, NULL, NULL, 'recipient address rejected: access denied\. AS\(201806281\)', 'any', 'bad_mailbox',
     'Exchange Online directory-based edge blocking: "550 5.4.1 Recipient address rejected: Access denied. AS(201806281)" means no such recipient'),
    ('microsoft.recipient_not_found', 111, NULL, NULL, 'RESOLVER\.ADR\.(RecipientNotFound|RecipNotFound|ExRecipNotFound)|Recipient not found by SMTP address lookup', 'any', 'bad_mailbox',
     'Exchange "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"'),
    ('microsoft.s3150',          112, NULL, NULL, '\(S31[0-9][0-9]\)|part of their network is on our block list', 'any', 'blocklisted',
     'Outlook.com "550 5.7.1 ... part of their network is on our block list (S3150)"'),
    ('microsoft.banned_ip',      113, NULL, NULL, 'banned sending IP|banned sender|traffic not accepted from this IP|5\.7\.(511|606|708)', 'any', 'blocklisted',
     'Exchange Online 5.7.511 banned sender, 5.7.606 banned sending IP, 5.7.708 traffic not accepted from this IP'),
    ('microsoft.ip_reputation',  114, NULL, NULL, '4\.7\.650|rate limited due to IP reputation|4\.7\.(651|652)', 'any', 'reputation',
     'Outlook.com "451 4.7.650 The mail server [IP] has been temporarily rate limited due to IP reputation"'),
    ('microsoft.server_busy',    115, NULL, NULL, '4\.7\.500 Server busy|Server busy\. Please try again later', 'any', 'rate_limited',
     'Outlook.com "451 4.7.500 Server busy. Please try again later from [IP]"'),
    ('microsoft.unregistered_domain', 116, NULL, NULL, '5\.7\.750|unregistered domains?', 'any', 'policy',
     'Exchange Online "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains"'),
    ('microsoft.dmarc',          117, NULL, NULL, '5\.7\.(509|515)|does not pass DMARC|doesn.t meet the required authentication level', 'any', 'authentication',
     'Exchange Online 5.7.509 sender fails DMARC, 5.7.515 required authentication level (SPF, DKIM, DMARC)'),
    ('microsoft.spam',           118, NULL, NULL, '5\.7\.350|detected as spam|SC-00[0-9]|DY-00[0-9]', 'any', 'spam_content',
     'Outlook.com SC-001/DY-001 filtered, Exchange 5.7.350 remote server returned message detected as spam'),
    ('microsoft.group_restricted', 119, NULL, NULL, 'RESOLVER\.RST\.|5\.7\.(129|133|134|135|136)|not authorized to send to this (recipient|group)', 'any', 'policy',
     'Exchange 5.7.129-5.7.136: the recipient (a group) accepts only some senders'),
    ('microsoft.mailbox_disabled', 120, NULL, NULL, 'RESOLVER\.ADR\.RecipLimit|mailbox (is )?(disabled|inactive)|5\.2\.1 .*(disabled|inactive)', 'any', 'inactive_mailbox',
     'Exchange: the recipient''s mailbox is disabled'),
    -- Gmail / Google Workspace (Google''s SMTP error reference)
    ('gmail.receiving_rate',     130, NULL, NULL, 'receiving mail (at a rate|too quickly)|receiving mail at a rate that prevents additional messages', 'any', 'rate_limited',
     'Gmail "4.2.1/5.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages": the recipient is flooded, the address exists'),
    ('gmail.unsolicited',        131, NULL, NULL, 'likely unsolicited mail|unusual rate of unsolicited mail|4\.7\.28', 'any', 'reputation',
     'Gmail "550-5.7.1 ... this message is likely unsolicited mail", "421-4.7.28 ... unusual rate of unsolicited mail"'),
    ('gmail.authentication',     132, NULL, NULL, '5\.7\.2[3-7]|does not have authentication information|fails? to pass authentication checks|sender is unauthenticated|this mail is unauthenticated', 'any', 'authentication',
     'Gmail 5.7.26 unauthenticated (DMARC), 5.7.27 SPF, 4.7.0 "does not have authentication information"'),
    ('gmail.policy',             133, NULL, NULL, 'has a policy that prohibited the mail|IP not in whitelist|not allowed to send to this domain', 'any', 'policy',
     'Google Workspace "550 5.7.1 The user or domain that you are sending to (or from) has a policy that prohibited the mail"'),
    ('gmail.disabled',           134, NULL, NULL, 'the email account that you tried to reach is (disabled|inactive)|account that you tried to reach is disabled', 'any', 'inactive_mailbox',
     'Gmail "550-5.2.1 The email account that you tried to reach is disabled"'),
    ('gmail.over_quota',         135, NULL, NULL, 'account that you tried to reach is over quota|out of storage space', 'any', 'mailbox_full',
     'Gmail "452-4.2.2 The email account that you tried to reach is over quota"'),
    ('gmail.no_such_user',       136, NULL, NULL, 'the email account that you tried to reach does not exist|p=NoSuchUser', 'any', 'bad_mailbox',
     'Gmail "550-5.1.1 The email account that you tried to reach does not exist"'),
    -- Apple iCloud (support.apple.com HT204137)
    ('icloud.blocked',           140, NULL, NULL, 'HT204137|\[(CS0[0-9]|HM0[0-9])\]', 'any', 'policy',
     'iCloud "550 5.7.0 Blocked - see https://support.apple.com/en-us/HT204137", "554 5.7.1 [CS01] Message rejected due to local policy"'),
    -- Comcast (postmaster.comcast.net)
    ('comcast.not_customer',     150, NULL, NULL, 'Not our Customer', 'any', 'bad_mailbox',
     'Comcast "550 5.1.1 <x@comcast.net> Not our Customer": no such mailbox'),
    ('comcast.blocklist',        151, NULL, NULL, '\bBL0000[0-9][0-9]\b|comcast block for spam', 'any', 'blocklisted',
     'Comcast "554 ... BL000010": the sending IP is on Comcast''s block list'),
    ('comcast.rate',             152, NULL, NULL, '\bRL0000[0-9][0-9]\b', 'any', 'rate_limited',
     'Comcast "421 ... RL000001": too many messages or connections'),
    ('comcast.ptr',              153, NULL, NULL, 'requires that all mail servers must have a PTR record', 'any', 'policy',
     'Comcast: the sending IP needs reverse DNS'),
    -- GoDaddy / secureserver.net, Cox
    ('godaddy.rate',             160, NULL, NULL, 'IB60[0-9]|sent to too many recipients|too many recipients this hour', 'any', 'rate_limited',
     'secureserver.net "550 5.1.1 ... has sent to too many recipients this hour. IB607": a rate limit with an address-like code'),
    ('godaddy.ib_block',         161, NULL, NULL, '\bIB(10[0-9]|11[0-9]|212)\b', 'any', 'blocklisted',
     'secureserver.net IB1xx/IB212: the sending IP is blocked'),
    ('cox.aup_rbl',              162, NULL, NULL, 'AUP#(CDRBL|RBL|BL|DNSBL|CXBL|IPBL)', 'any', 'blocklisted',
     'Cox "550 5.1.0 ... sender rejected ... AUP#CDRBL": the sender is on a blocklist'),
    ('cox.aup_rate',             163, NULL, NULL, 'AUP#(MXRT|O-1000|CXCNCT|CXMXRT)', 'any', 'rate_limited',
     'Cox AUP#MXRT: too many messages'),
    -- Mimecast, Proofpoint, Barracuda (their published rejection texts)
    ('mimecast.invalid_recipient', 170, NULL, NULL, '^Invalid Recipient|550 Invalid Recipient', 'any', 'bad_mailbox',
     'Mimecast "550 Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550"'),
    ('mimecast.policy',          171, NULL, NULL, 'Anti-Spoofing policy|envelope blocked|Administrative prohibition|rejected due to security policies', 'any', 'policy',
     'Mimecast "550 Rejected by header based Anti-Spoofing policy", "550 Administrative prohibition - envelope blocked"'),
    ('mimecast.ip_reputation',   172, NULL, NULL, 'Rejected by IP Reputation|IP reputation', 'any', 'reputation',
     'Mimecast "550 Rejected by IP Reputation"'),
    ('proofpoint.ipcheck',       173, NULL, NULL, 'ipcheck\.proofpoint\.com', 'any', 'blocklisted',
     'Proofpoint "554 Blocked - see https://ipcheck.proofpoint.com/?ip=..."'),
    ('barracuda.reputation',     174, NULL, NULL, 'barracudanetworks\.com/reputation|Barracuda Reputation|barracudacentral', 'any', 'blocklisted',
     'Barracuda "554 Service unavailable; Client host [IP] blocked using Barracuda Reputation"'),
    ('barracuda.recipient_blocked', 175, NULL, NULL, 'permanent failure for one or more recipients \([^)]*:blocked\)', 'any', 'spam_content',
     'Barracuda "550 permanent failure for one or more recipients (x:blocked)": the message was blocked'),

    -- The sender's problem, whatever the code
    ('text.greylisting',         200, NULL, NULL, 'gr[ae]y-?list|gr[ae]y listed|try again in [0-9]+ (seconds|minutes)|please retry (later|in)', 'any', 'greylisted', NULL),
    ('text.blocklist',           210, NULL, NULL, 'blocked using|black-?list|block-?list|block list|blacklisted|blocklisted|spamhaus|spamcop|sorbs|\bdnsbl\b|\brbl\b|\buceprotect|psbl\.|abuseat\.org|\bcbl\b', 'any', 'blocklisted', NULL),
    ('text.authentication',      220, NULL, NULL, '\bspf\b|\bdkim\b|\bdmarc\b|sender policy framework|unauthenticated|not authenticated|authentication (check|checks) fail|fails? authentication', 'any', 'authentication', NULL),
    ('text.reputation',          230, NULL, NULL, 'reputation|unsolicited|too many complaints|user complaints|poor sending|sender score|suspicious (activity|sender)', 'any', 'reputation', NULL),
    ('text.rate',                240, NULL, NULL, 'too many (connections|concurrent|messages|recipients|mails|emails|sessions)|rate limit|rate-limit|ratelimit|throttl|sending rate|too fast|exceeded the (rate|limit)|limit exceeded|temporarily deferred|deferred due to', 'any', 'rate_limited', NULL),
    ('text.relaying',            250, NULL, NULL, 'relay(ing)? (access )?(denied|not permitted|not allowed|prohibited)|not permitted to relay|unable to relay|relay not permitted|open relay|we do not relay|not a gateway', 'any', 'relaying_denied', NULL),
    ('text.sender_rejected',     260, NULL, NULL, 'sender (address )?(rejected|refused|denied|blocked|not allowed)|sender address rejected|client host rejected|reverse (dns|lookup|hostname)|\bptr\b|\brdns\b|helo command rejected|cannot find your (hostname|reverse)|sender domain|from domain|envelope sender|bad sender|invalid sender|sender verify failed|mail from', 'any', 'policy', NULL),
    ('text.content',             270, NULL, NULL, '\bspam\b|\bjunk\b|\bvirus\b|malware|phish|content (rejected|filter|policy)|message (content )?(rejected|refused|blocked) (as|because)|prohibited attachment|attachment (type )?(not allowed|rejected|blocked)|bulk mail|url blocklist|message looks like', 'any', 'spam_content', NULL),

    -- The stage: not the recipient's mailbox
    ('stage.connect',            300, NULL, NULL, NULL, 'connect', 'policy', 'a refusal at connect (refused to talk to me) is about the sending host'),
    ('stage.helo',               301, NULL, NULL, NULL, 'helo', 'policy', 'a refusal of HELO/EHLO is about the sending host'),
    ('stage.mail',               302, NULL, NULL, NULL, 'mail', 'policy', 'a refusal of MAIL FROM is about the sender'),
    ('stage.data',               303, NULL, NULL, NULL, 'data', 'policy', 'a refusal of the message (DATA, end of DATA) is about the message'),

    -- About the recipient
    ('text.disabled',            400, NULL, NULL, '(account|mailbox|user|address)( has been| is)? (disabled|deactivated|suspended|closed|inactive|locked|expired|frozen)|no longer (active|in use|available|with|employed)|inactive (account|user|mailbox)', 'any', 'inactive_mailbox', NULL),
    ('text.moved',               401, NULL, NULL, '(mailbox|user|address|recipient) (has )?moved|no longer at this address|changed (his|her|their) (e-?mail )?address', 'any', 'mailbox_moved', NULL),
    ('text.over_quota',          402, NULL, NULL, 'over quota|quota (exceeded|full)|exceeded (the |its |their )?(storage|quota|mailbox size)|mailbox (is )?full|mailbox size limit|insufficient (system )?storage|out of (disk|storage) space|full mailbox', 'any', 'mailbox_full', NULL),
    ('text.no_such_host',        409, '5\.[0-9]+\.[0-9]+', NULL, 'host or domain name not found', 'any', 'bad_domain',
     'Postfix gives up on a domain whose name does not resolve (NXDOMAIN) with a permanent status; a temporary DNS failure is a 4.x deferral (routing)'),
    ('text.bad_domain',          410, NULL, NULL, 'host or domain name not found\. Name service error for name=\S+ type=(MX|A|AAAA): Host not found$|domain (does not|doesn.t) exist|domain (not found|unknown)|no such domain|unrouteable (mail )?domain|null MX|does not accept mail|domain (is )?(not|no longer) (valid|in use|accepting mail)', 'any', 'bad_domain', NULL),
    ('text.unknown_user',        411, NULL, NULL, 'user unknown|unknown (user|recipient|mailbox|local.?part|address)|no such (user|recipient|mailbox|account|address|person)|(user|mailbox|recipient|account|address|email address)( name)? (does not|doesn.t|did not|not) exist|(user|mailbox|recipient|address) (not found|unavailable|is unavailable|not known|invalid)|invalid (recipient|mailbox|user|address|e-?mail)|not a valid (mailbox|recipient|user|address)|undeliverable address|no mailbox (here|by that name)|unrouteable address|mailbox not found|bad destination mailbox|addressee unknown|not listed in|no valid recipients|is not a known user', 'any', 'bad_mailbox', NULL),
    ('text.network',             440, NULL, NULL, 'connection (timed out|refused)|no route to host|network is unreachable|host (is )?unreachable|host not found, try again|name service error|host or domain name not found|temporary failure in name resolution|no answer|timed out while (connecting|receiving the initial server greeting)|conversation with \S+ timed out', 'any', 'routing', NULL),
    ('text.protocol',            450, NULL, NULL, 'lost connection|syntax error|command (not )?(unrecognized|implemented)|bad sequence|line too long|message (size|too big|too large)|exceeds (the )?(maximum|size|message size)|size limit|\bTLS\b|STARTTLS|handshake|unexpected|protocol error|too many hops|mail loop|loops back', 'any', 'protocol_error', NULL),
    ('text.policy',              460, NULL, NULL, 'policy|prohibited|not allowed|administrative|access denied|refused|blocked|banned|not authori[sz]ed|denied', 'any', 'policy', NULL),

    -- RFC 3463 (and RFC 7372, RFC 7505) enhanced status codes
    ('status.bad_mailbox',       500, '[45]\.1\.[13]', NULL, NULL, 'any', 'bad_mailbox', 'X.1.1 bad destination mailbox address, X.1.3 bad destination address syntax'),
    ('status.bad_domain',        501, '[45]\.1\.(2|10)', NULL, NULL, 'any', 'bad_domain', 'X.1.2 bad destination system address, X.1.10 recipient address has null MX'),
    ('status.moved',             502, '[45]\.1\.6', NULL, NULL, 'any', 'mailbox_moved', 'X.1.6 destination mailbox has moved, no forwarding address'),
    ('status.sender',            503, '[45]\.1\.[78]', NULL, NULL, 'any', 'policy', 'X.1.7 bad sender mailbox syntax, X.1.8 bad sender system address'),
    ('status.disabled',          504, '5\.2\.1', NULL, NULL, 'any', 'inactive_mailbox', 'X.2.1 mailbox disabled, not accepting messages'),
    ('status.full',              505, '[45]\.2\.2', NULL, NULL, 'any', 'mailbox_full', 'X.2.2 mailbox full'),
    ('status.size',              506, '[45]\.(2\.3|3\.4)', NULL, NULL, 'any', 'protocol_error', 'X.2.3 and X.3.4 message too big'),
    ('status.routing_dns',       507, '5\.4\.4', NULL, NULL, 'any', 'bad_domain', 'X.4.4 unable to route: the domain has no mail host'),
    ('status.expired',           508, '[45]\.4\.7', NULL, NULL, 'any', 'message_expired', 'X.4.7 delivery time expired'),
    ('status.network',           509, '[45]\.4\.[0-9]+', NULL, NULL, 'any', 'routing', 'X.4.x network and routing status'),
    ('status.rate',              510, '[45]\.5\.3|4\.7\.28', NULL, NULL, 'any', 'rate_limited', 'X.5.3 too many recipients, X.7.28 mail flood'),
    ('status.protocol',          511, '[45]\.[356]\.[0-9]+', NULL, NULL, 'any', 'protocol_error', 'X.3.x mail system, X.5.x protocol, X.6.x content conversion'),
    ('status.account_disabled',  512, '5\.7\.13', NULL, NULL, 'any', 'inactive_mailbox', 'X.7.13 user account disabled'),
    ('status.authentication',    513, '[45]\.7\.(2[0-4]|2[6-7])', NULL, NULL, 'any', 'authentication', 'X.7.20-X.7.24, X.7.26, X.7.27: DKIM, SPF, DMARC'),
    ('status.security',          514, '[45]\.7\.[0-9]+', NULL, NULL, 'any', 'policy', 'X.7.x security or policy status'),
    ('status.greylist',          515, '4\.2\.0', NULL, NULL, 'any', 'greylisted', '4.2.0 on a deferral: greylisting (postgrey and others)')
) AS s (name, position, status_pattern, code_pattern, reply_pattern, stage, category, note);

-- what the logs said per address: hard bounces apart from other failures.
-- Under 0.2 every bounce was taken for a hard bounce: those rows keep it
-- (bounce_category NULL) until pw.reclassify_outcomes() judges them.
ALTER TABLE pw.deliveries
    ADD COLUMN bounce_category text,
    ADD COLUMN failed_at timestamptz,
    ADD COLUMN failed_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN blocked_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN failed_dsn text,
    ADD COLUMN failed_reason text,
    ADD COLUMN last_category text;

-- the daily outcomes: hard bounces, blocks and throttled outcomes apart.
-- Under 0.2 every bounce was a hard bounce and every deferral slowed the
-- operator: the days already counted keep that meaning.
ALTER TABLE pw.maillog_daily
    ADD COLUMN hard_bounced bigint NOT NULL DEFAULT 0,
    ADD COLUMN blocked bigint NOT NULL DEFAULT 0,
    ADD COLUMN throttled bigint NOT NULL DEFAULT 0;
UPDATE pw.maillog_daily SET hard_bounced = bounced, throttled = deferred;

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

SELECT pg_catalog.pg_extension_config_dump('pw.maillog_categories', '');

-- the brake's block rate and the verification retries
ALTER TABLE pw.profiles
    ADD COLUMN brake_block_rate numeric NOT NULL DEFAULT 0.05
        CONSTRAINT profiles_brake_block_rate_range
        CHECK (brake_block_rate >= 0 AND brake_block_rate <= 1),
    ADD COLUMN verify_retry_after interval NOT NULL DEFAULT '7 days'
        CONSTRAINT profiles_verify_retry_after_positive CHECK (verify_retry_after > '0'),
    ADD COLUMN verify_max_attempts integer NOT NULL DEFAULT 3
        CONSTRAINT profiles_verify_max_attempts_positive CHECK (verify_max_attempts >= 1);

-- pw.read_maillog() gains the category of each bounce and deferral,
-- pw.ingest_maillog() the hard_bounced and blocked counts
DROP FUNCTION pw.read_maillog(text, bigint);
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

REVOKE ALL ON FUNCTION pw.read_maillog(text, bigint) FROM PUBLIC;
COMMENT ON FUNCTION pw.read_maillog(text, bigint) IS
    'The delivery-status and expiry lines of a Postfix log inside pw_deliverability.maillog_directory, from an offset on.';

DROP FUNCTION pw.ingest_maillog(text);
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

REVOKE ALL ON FUNCTION pw.ingest_maillog(text) FROM PUBLIC;
COMMENT ON FUNCTION pw.ingest_maillog(text) IS
    'Ingests a mail log from where the last call stopped (following rotation): outcomes, hard bounces written back and suppressed, the offset advanced.';

-- the rates of hard bounces, blocks and throttled outcomes
-- Per-operator outcomes with rates, over all logs: watch each operator's
-- hard-bounce, block and throttle rates.  bounce_rate is that of hard
-- bounces (the addresses' fault), block_rate that of blocks (the sender's),
-- over the final outcomes (sent + bounced); deferral_rate is over every
-- outcome, throttle_rate that of the throttled outcomes.
CREATE OR REPLACE VIEW pw.operator_outcomes AS
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

-- the brake pauses on hard bounces or blocks, slows on throttled outcomes
DROP VIEW pw.braked_operators;
DROP FUNCTION pw.brake_status(text, boolean);
-- Every operator's outcomes in a profile's brake window (the last
-- brake_window_days days, today included), from the logs mapped to the
-- profile and the logs mapped to none, with what the brake does: 'paused'
-- when the hard-bounce rate (bounces that were the address's fault) is over
-- brake_bounce_rate or the block rate (the sender refused: blocklists,
-- reputation, policy, content, authentication) is over brake_block_rate,
-- 'slowed' when the throttle rate (deferrals for the sender's reputation or
-- a rate limit, bounces for a rate limit; not greylisting) is over
-- brake_deferral_rate, NULL otherwise; nothing is judged below
-- brake_min_sample outcomes or with the brake disabled.  bounced counts
-- every bounce, blocked the blocks; both rates over sent + bounced.
-- "since" is the first day of the window with an outcome of the kind that
-- triggered the brake: the brake lifts once the window has moved past the
-- days that triggered it and the rates are back under the thresholds.
-- With braked_only, only the braked operators come back (the selection
-- applies them), and only the operators that may be braked are summed: the
-- rate of a sum of days lies between the rates of its days, so an operator
-- whose (rounded) rate over the window is over a threshold has a day whose
-- rate is over the threshold minus 0.00005; days are prefiltered against
-- the threshold minus 0.0001 (in float8, far within that margin).
CREATE FUNCTION pw.brake_status(profile text DEFAULT 'default', braked_only boolean DEFAULT false)
RETURNS TABLE (operator text, op_class text, sent bigint, deferred bigint, bounced bigint,
               sample bigint, bounce_rate numeric, deferral_rate numeric,
               action text, reason text, since date, hard_bounced bigint, blocked bigint,
               throttled bigint, block_rate numeric, throttle_rate numeric)
LANGUAGE sql STABLE
BEGIN ATOMIC
    WITH p AS (
        SELECT p.name, p.brake_enabled, p.brake_window_days, p.brake_min_sample,
               p.brake_bounce_rate, p.brake_deferral_rate, p.brake_slow_factor,
               p.brake_block_rate,
               (p.brake_bounce_rate - 0.0001)::float8 AS bounce_floor,
               (p.brake_block_rate - 0.0001)::float8 AS block_floor,
               (p.brake_deferral_rate - 0.0001)::float8 AS throttle_floor
          FROM pw.profiles p WHERE p.name = brake_status.profile
    ), near AS (
        SELECT s.mx_provider
          FROM pw.maillog_daily s, p
         WHERE s.day > current_date - p.brake_window_days AND s.day <= current_date
           AND s.profile IN (p.name, '') AND p.brake_enabled
           AND (s.hard_bounced::float8 > p.bounce_floor * (s.sent + s.bounced)::float8
                OR s.blocked::float8 > p.block_floor * (s.sent + s.bounced)::float8
                OR s.throttled::float8 > p.throttle_floor * (s.sent + s.deferred + s.bounced)::float8)
    ), o AS (
        SELECT d.mx_provider AS operator, sum(d.sent)::bigint AS sent,
               sum(d.deferred)::bigint AS deferred, sum(d.bounced)::bigint AS bounced,
               sum(d.hard_bounced)::bigint AS hard_bounced, sum(d.blocked)::bigint AS blocked,
               sum(d.throttled)::bigint AS throttled,
               min(d.day) FILTER (WHERE d.hard_bounced > 0) AS first_bounce,
               min(d.day) FILTER (WHERE d.blocked > 0) AS first_block,
               min(d.day) FILTER (WHERE d.throttled > 0) AS first_throttle
          FROM pw.maillog_daily d, p
         WHERE d.day > current_date - p.brake_window_days AND d.day <= current_date
           AND d.profile IN (p.name, '')
           AND d.mx_provider <> '(not a carrier)'
           AND (NOT brake_status.braked_only OR d.mx_provider IN (SELECT n.mx_provider FROM near n))
         GROUP BY d.mx_provider
    ), r AS (
        SELECT o.*, o.sent + o.deferred + o.bounced AS sample,
               round(o.hard_bounced::numeric / nullif(o.sent + o.bounced, 0), 4) AS bounce_rate,
               round(o.blocked::numeric / nullif(o.sent + o.bounced, 0), 4) AS block_rate,
               round(o.deferred::numeric / nullif(o.sent + o.deferred + o.bounced, 0), 4) AS deferral_rate,
               round(o.throttled::numeric / nullif(o.sent + o.deferred + o.bounced, 0), 4) AS throttle_rate
          FROM o
    ), j AS (
        SELECT r.*,
               CASE WHEN NOT p.brake_enabled OR r.sample < p.brake_min_sample THEN NULL
                    WHEN r.bounce_rate > p.brake_bounce_rate THEN 'paused'
                    WHEN r.block_rate > p.brake_block_rate THEN 'paused'
                    WHEN r.throttle_rate > p.brake_deferral_rate THEN 'slowed' END AS action,
               CASE WHEN r.bounce_rate > p.brake_bounce_rate THEN 'bounce'
                    WHEN r.block_rate > p.brake_block_rate THEN 'block'
                    ELSE 'throttle' END AS why
          FROM r CROSS JOIN p
    )
    SELECT j.operator,
           CASE WHEN j.operator = '(untagged)' THEN NULL ELSE coalesce(op.op_class, 'default') END,
           j.sent, j.deferred, j.bounced, j.sample, j.bounce_rate, j.deferral_rate, j.action,
           CASE WHEN j.action IS NULL THEN NULL
                WHEN j.why = 'bounce'
                THEN format('bounce rate %s > %s over %s outcomes in %s day(s)',
                            j.bounce_rate, p.brake_bounce_rate, j.sample, p.brake_window_days)
                WHEN j.why = 'block'
                THEN format('block rate %s > %s over %s outcomes in %s day(s): the sender is refused',
                            j.block_rate, p.brake_block_rate, j.sample, p.brake_window_days)
                ELSE format('throttle rate %s > %s over %s outcomes in %s day(s): allowance x %s',
                            j.throttle_rate, p.brake_deferral_rate, j.sample, p.brake_window_days,
                            p.brake_slow_factor) END,
           CASE WHEN j.action IS NULL THEN NULL
                WHEN j.why = 'bounce' THEN j.first_bounce
                WHEN j.why = 'block' THEN j.first_block
                ELSE j.first_throttle END,
           j.hard_bounced, j.blocked, j.throttled, j.block_rate, j.throttle_rate
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

COMMENT ON FUNCTION pw.brake_status(text, boolean) IS
    'The reputation brake of a profile: per operator, outcomes and rates over the window and whether it is paused or slowed.';
COMMENT ON VIEW pw.braked_operators IS
    'The operators the reputation brake pauses or slows now, for every profile.';

-- the report shows blocks and throttled outcomes apart from bounces, and
-- the top operators of a section with one line for the others
DROP FUNCTION pw.report(text);
-- The daily loop at a glance, for one campaign profile and every
-- verification profile, one row per figure:
--   pool          per result of the profile's pool and operator class: unsent
--                 candidates (count) of all carriers with that result (total)
--   backlog       the MX-tagging backlog (pw.mx_backlog), one row per figure
--   today         per operator: sent today by the profile (count) against its
--                 daily cap on today's warmup day (total), brake in note; the
--                 braked operators first, then the busiest, top in all, and
--                 one '(others)' line for the rest (how many in note)
--   outcomes      per operator, over the profile's brake window: outcomes
--                 (count), bounce and deferral rates, brake in note; top
--                 operators likewise, and one line for the others
--   verification  per verification profile (note): carriers it sent to that
--                 became hard_bounced or send_confirmed, those still awaiting
--                 an outcome, and per result of its pool those still unsent
-- Operator classes: the class of the operator, '(untagged)' for carriers
-- without mx_provider, '(no mx)' for mx_provider 'none'.
CREATE FUNCTION pw.report(profile text DEFAULT 'default', top integer DEFAULT 10)
RETURNS TABLE (section text, item text, op_class text, count bigint, total bigint,
               bounce_rate numeric, deferral_rate numeric, note text)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    p      pw.profiles;
    v      pw.profiles;
    cc     record;
    vc     record;
    pool   text[];
    vday   integer;
    b      record;
BEGIN
    IF top IS NULL OR top < 1 THEN
        RAISE EXCEPTION 'top must be 1 or more, not %', coalesce(top::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'top is how many operators the today and outcomes sections show.';
    END IF;
    SELECT * INTO p FROM pw.profiles WHERE name = report.profile;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'send profile "%" does not exist', report.profile
            USING ERRCODE = 'undefined_object', HINT = 'Profiles are the rows of pw.profiles.';
    END IF;
    SELECT * INTO cc FROM pw.carriers_check(p.sent_column);
    pool := pw.profile_pool(p.name);
    vday := (current_date - p.warmup_start) + 1;

    -- the pool: per result and operator class, unsent of all
    RETURN QUERY EXECUTE format(
        'SELECT ''pool''::text, g.r, g.cls, sum(g.unsent)::bigint, sum(g.n)::bigint,'
        '       NULL::numeric, NULL::numeric, NULL::text'
        '  FROM (SELECT x.r, CASE WHEN x.mx IS NULL THEN ''(untagged)'' WHEN x.mx = ''none'' THEN ''(no mx)'''
        '                         ELSE coalesce(o.op_class, ''default'') END AS cls, x.n, x.unsent'
        '          FROM (SELECT c.%2$s::text AS r, c.%3$s::text AS mx, count(*) AS n,'
        '                       count(*) FILTER (WHERE c.%4$s IS NULL) AS unsent'
        '                  FROM %1$s c WHERE c.%2$s = ANY ($1) GROUP BY 1, 2) x'
        '          LEFT JOIN pw.operators o ON o.label = x.mx) g'
        ' GROUP BY 2, 3 ORDER BY 2, 3',
        cc.relation, cc.result_column, cc.mx_column, cc.sent_column_checked)
        USING pool;

    -- the tagging backlog
    RETURN QUERY
        SELECT 'backlog'::text, k.item, NULL::text, k.n, NULL::bigint, NULL::numeric,
               NULL::numeric, NULL::text
          FROM pw.mx_backlog m,
               LATERAL (VALUES (1, 'untagged_carriers', m.untagged_carriers),
                               (2, 'untagged_domains', m.untagged_domains),
                               (3, 'unresolved_domains', m.unresolved_domains),
                               (4, 'failing_domains', m.failing_domains),
                               (5, 'due_domains', m.due_domains)) AS k(o, item, n)
         ORDER BY k.o;

    -- today's sends per operator against the day's caps: the braked ones,
    -- then the busiest, top in all, and one line for the others
    RETURN QUERY EXECUTE format(
        'WITH t AS (SELECT c.%2$s::text AS mx, count(*) AS n FROM %1$s c'
        '            WHERE c.%3$s >= current_date AND c.%3$s < current_date + 1 GROUP BY 1),'
        ' r AS (SELECT t.mx, t.n, b.action,'
        '              row_number() OVER (ORDER BY b.action IS NOT NULL DESC, t.n DESC, t.mx NULLS FIRST) AS rk'
        '         FROM t LEFT JOIN pw.brake_status($1, braked_only => true) b'
        '           ON b.operator = coalesce(t.mx, ''(untagged)''))'
        ' SELECT x.s, x.i, x.c, x.n, x.t, x.b, x.d, x.note FROM ('
        '   SELECT ''today''::text AS s, coalesce(r.mx, ''__null__'') AS i,'
        '          CASE WHEN r.mx IS NULL THEN ''(untagged)'' ELSE pw.operator_class(r.mx) END AS c,'
        '          r.n, CASE WHEN r.mx IS NOT NULL THEN pw.daily_cap($1, r.mx, $2)::bigint END AS t,'
        '          NULL::numeric AS b, NULL::numeric AS d, r.action AS note, r.rk'
        '     FROM r WHERE r.rk <= $3'
        '   UNION ALL'
        '   SELECT ''today'', ''(others)'', NULL, sum(r.n)::bigint, NULL, NULL, NULL,'
        '          format(''%%s operator(s)'', count(*))'
        '          || CASE WHEN count(r.action) > 0 THEN format('', %%s braked'', count(r.action)) ELSE '''' END,'
        '          $3 + 1'
        '     FROM r WHERE r.rk > $3 HAVING count(*) > 0) x'
        ' ORDER BY x.rk',
        cc.relation, cc.mx_column, cc.sent_column_checked)
        USING p.name, vday, top;

    -- outcomes per operator over the brake window: the braked ones, then
    -- the largest samples, top in all, and one line for the others
    RETURN QUERY
        WITH r AS (
            SELECT s.*, row_number() OVER (ORDER BY s.action IS NOT NULL DESC, s.sample DESC,
                                                    s.operator) AS rk
              FROM pw.brake_status(p.name) s)
        SELECT x.s, x.i, x.c, x.n, NULL::bigint, x.b, x.d, x.note FROM (
            SELECT 'outcomes'::text AS s, r.operator AS i, r.op_class AS c, r.sample AS n,
                   r.bounce_rate AS b, r.deferral_rate AS d,
                   coalesce(r.action || ': ' || r.reason, 'ok')
                   || CASE WHEN r.blocked > 0 OR r.throttled > 0
                           THEN format('; blocked %s (block rate %s), throttled %s (throttle rate %s)',
                                       r.blocked, r.block_rate, r.throttled, r.throttle_rate)
                           ELSE '' END AS note,
                   r.rk
              FROM r WHERE r.rk <= top
            UNION ALL
            SELECT 'outcomes', '(others)', NULL, sum(r.sample)::bigint,
                   round(sum(r.hard_bounced)::numeric / nullif(sum(r.sent + r.bounced), 0), 4),
                   round(sum(r.deferred)::numeric / nullif(sum(r.sample), 0), 4),
                   format('%s operator(s)', count(*))
                   || CASE WHEN count(r.action) > 0 THEN format(', %s braked', count(r.action)) ELSE '' END,
                   top + 1
              FROM r WHERE r.rk > top HAVING count(*) > 0) x
         ORDER BY x.rk;

    -- verification progress of each verification profile
    FOR v IN SELECT * FROM pw.profiles WHERE purpose = 'verification' ORDER BY name LOOP
        BEGIN
            SELECT * INTO vc FROM pw.carriers_check(v.sent_column);
        EXCEPTION WHEN OTHERS THEN
            RETURN QUERY SELECT 'verification'::text, 'unavailable'::text, NULL::text,
                                NULL::bigint, NULL::bigint, NULL::numeric, NULL::numeric,
                                format('profile %s: %s', v.name, SQLERRM);
            CONTINUE;
        END;
        RETURN QUERY EXECUTE format(
            'SELECT ''verification''::text, k.item, NULL::text, k.n, NULL::bigint,'
            '       NULL::numeric, NULL::numeric, ''profile '' || $2'
            '  FROM (SELECT count(*) FILTER (WHERE c.%3$s IS NOT NULL AND c.%2$s = ''hard_bounced'') AS hb,'
            '               count(*) FILTER (WHERE c.%3$s IS NOT NULL AND c.%2$s = ''send_confirmed'') AS sc,'
            '               count(*) FILTER (WHERE c.%3$s IS NOT NULL AND c.%2$s = ANY ($1)) AS aw'
            '          FROM %1$s c WHERE c.%3$s IS NOT NULL) s,'
            '       LATERAL (VALUES (1, ''hard_bounced'', s.hb), (2, ''send_confirmed'', s.sc),'
            '                       (3, ''awaiting_outcome'', s.aw)) AS k(o, item, n)'
            ' ORDER BY k.o',
            vc.relation, vc.result_column, vc.sent_column_checked)
            USING pw.profile_pool(v.name), v.name;
        RETURN QUERY EXECUTE format(
            'SELECT ''verification''::text, ''remaining:'' || r.r, NULL::text,'
            '       coalesce(n.n, 0), NULL::bigint, NULL::numeric, NULL::numeric, ''profile '' || $2'
            '  FROM unnest($1) AS r(r)'
            '  LEFT JOIN (SELECT c.%2$s::text AS r, count(*) AS n FROM %1$s c'
            '              WHERE c.%2$s = ANY ($1) AND c.%3$s IS NULL GROUP BY 1) n ON n.r = r.r'
            ' ORDER BY r.r',
            vc.relation, vc.result_column, vc.sent_column_checked)
            USING pw.profile_pool(v.name), v.name;
    END LOOP;
END
$$;
COMMENT ON FUNCTION pw.report(text, integer) IS
    'The state of a profile in one report: pool, tagging backlog, sends against caps and outcomes with the brake (the top operators and one line for the others), verification progress.';

-- the retry of verifications is scheduled with the other jobs
-- Registers the daily loop with pg_cron under stable job names, as the
-- calling role: the MX tagging ("pw_mx_tag", daily before the builder), the
-- ingest of every log of pw.maillogs ("pw_ingest:<path>", on the log's
-- schedule unless ingest_schedule overrides it) and the confirmation of
-- deliveries ("pw_confirm_deliveries", hourly) and the retry of
-- verifications without a verdict ("pw_requeue_verifications", on the same
-- schedule).  Idempotent: pg_cron updates
-- a job of the same name, and the ingest jobs of logs no longer in
-- pw.maillogs are removed.  Returns the jobs registered.
CREATE OR REPLACE FUNCTION pw.schedule_jobs(tag_schedule text DEFAULT '45 5 * * *',
                                 confirm_schedule text DEFAULT '0 * * * *',
                                 ingest_schedule text DEFAULT NULL,
                                 tag_max_domains integer DEFAULT 20000)
RETURNS TABLE (job_name text, schedule text, command text, jobid bigint)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    j   record;
    id  bigint;
BEGIN
    PERFORM pw.require_pg_cron();
    IF tag_schedule IS NULL OR confirm_schedule IS NULL OR tag_max_domains IS NULL THEN
        RAISE EXCEPTION 'tag_schedule, confirm_schedule and tag_max_domains must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tag_max_domains < 1 THEN
        RAISE EXCEPTION 'tag_max_domains must be 1 or more, not %', tag_max_domains
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- ingest jobs of logs that are no longer configured
    FOR j IN EXECUTE
        'SELECT c.jobname FROM cron.job c'
        ' WHERE c.username = current_user AND c.jobname LIKE ''pw\_ingest:%'''
        '   AND NOT EXISTS (SELECT 1 FROM pw.maillogs m WHERE ''pw_ingest:'' || m.path = c.jobname)'
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING j.jobname;
    END LOOP;

    FOR j IN
        SELECT 1 AS o, 'pw_mx_tag' AS name, tag_schedule AS sched,
               format('CALL pw.mx_tag_batches(%s)', tag_max_domains) AS cmd
        UNION ALL
        SELECT 2, 'pw_ingest:' || m.path, coalesce(ingest_schedule, m.schedule),
               format('SELECT * FROM pw.ingest_maillog(%L)', m.path)
          FROM pw.maillogs m
        UNION ALL
        SELECT 3, 'pw_confirm_deliveries', confirm_schedule,
               'SELECT * FROM pw.confirm_deliveries()'
        UNION ALL
        SELECT 4, 'pw_requeue_verifications', confirm_schedule,
               'SELECT pw.requeue_verifications()'
        ORDER BY 1, 2
    LOOP
        EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO id USING j.name, j.sched, j.cmd;
        job_name := j.name;
        schedule := j.sched;
        command := j.cmd;
        jobid := id;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Removes every job pw.schedule_jobs() registered for the calling role;
-- returns how many.
CREATE OR REPLACE FUNCTION pw.unschedule_jobs()
RETURNS integer
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    j record;
    n integer := 0;
BEGIN
    PERFORM pw.require_pg_cron();
    FOR j IN EXECUTE
        'SELECT c.jobname FROM cron.job c'
        ' WHERE c.username = current_user'
        '   AND (c.jobname IN (''pw_mx_tag'', ''pw_confirm_deliveries'', ''pw_requeue_verifications'')'
        '        OR c.jobname LIKE ''pw\_ingest:%'')'
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING j.jobname;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;


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

-- the shipped rows of the verdict configuration are seeded
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.bounce_categories
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.bounce_categories
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.bounce_rules
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.bounce_rules
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();

-- verdicts
COMMENT ON TABLE pw.bounce_categories IS
    'The categories of bounces and deferrals: only an address_fault category marks a carrier hard_bounced and suppresses the address; block categories pause the operator, throttle categories slow it.';
COMMENT ON TABLE pw.bounce_rules IS
    'Ordered rules naming the category of a bounce or deferral by its enhanced status, SMTP code, reply text and stage; the first match wins, user rows before shipped ones.';
COMMENT ON FUNCTION pw.bounce_rules_check() IS
    'Trigger of pw.bounce_rules: refuses a pattern that does not compile.';
COMMENT ON FUNCTION pw.bounce_rules_changed() IS
    'Trigger of pw.bounce_rules and pw.bounce_categories: every session compiles the rules again at their next use.';
COMMENT ON FUNCTION pw.classify_bounce(text, text) IS
    'The category (pw.bounce_categories) of a bounce or deferral, by its enhanced status and reply text.';
COMMENT ON FUNCTION pw.bounce_reply_parts(text) IS
    'The parts of a reply that the bounce rules match: SMTP code, enhanced status, stage, remote reply text.';
COMMENT ON TABLE pw.maillog_categories IS
    'Bounces and deferrals per day, operator, profile and category.';
COMMENT ON TABLE pw.hard_bounces IS
    'Every carrier the ingest marked hard_bounced, with its prior result and the bounce: what pw.reclassify_outcomes() restores.';
COMMENT ON TABLE pw.verify_attempts IS
    'Verification sends per profile and address: attempts, the latest outcome and its category, the last requeue.';
COMMENT ON VIEW pw.verification_retries IS
    'Each verification''s attempts against the profile''s verify_max_attempts and when it may be sent again.';
COMMENT ON FUNCTION pw.requeue_verifications(text) IS
    'Makes the verifications without a verdict selectable again after verify_retry_after, while attempts are left; returns the carriers requeued.';
COMMENT ON FUNCTION pw.reclassify_outcomes(boolean) IS
    'Applies the current bounce rules to the recorded outcomes: releases addresses suppressed for what is no longer the address''s fault (restoring their carriers'' results), and hard-bounces failures that now are; dry run by default.';

-- ======================================================================
-- run history (src/sql/45_runs.sql)
-- ======================================================================

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
-- run history
COMMENT ON TABLE pw.runs IS
    'Every claim, tagging run, ingest and confirmation: kind, profile, caller, start, end and counts, or the error of one that failed; written by the jobs as the extension''s owner, pruned after pw_deliverability.run_retention days.';
COMMENT ON SEQUENCE pw.runs_run_id_seq IS
    'The run ids of pw.runs.';
COMMENT ON TABLE pw.run_carriers IS
    'The carriers each claim run marked sent: what pw.release_run() gives back.';
COMMENT ON VIEW pw.run_history IS
    'The runs of pw.runs, newest first, with their duration in seconds.';
COMMENT ON VIEW pw.last_runs IS
    'The latest run of each kind and profile, with its age.';
COMMENT ON FUNCTION pw.release_run(bigint) IS
    'Gives back the carriers of a claim run that were never sent (no delivery logged since the claim): their sent column is cleared; returns how many.';


-- ======================================================================
-- health, the extension's objects outside pw (src/sql/50_health.sql)
-- ======================================================================

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
-- health
COMMENT ON FUNCTION pw.library_preloaded() IS
    'Whether shared_preload_libraries loaded the library (the background tagger and progress views need it).';
COMMENT ON FUNCTION pw.maillog_directory_problem() IS
    'What is wrong with pw_deliverability.maillog_directory (not set, missing, unreadable), NULL when the server can read it.';
COMMENT ON FUNCTION pw.carrier_objects() IS
    'The indexes and statistics the extension created outside schema pw (on the carriers table): what DROP EXTENSION removes first.';
COMMENT ON FUNCTION pw.drop_carrier_objects() IS
    'Drops the indexes and statistics of pw.carrier_objects(); returns how many.';
COMMENT ON FUNCTION pw.health() IS
    'One row per check of the installation and the daily loop (library, tagger, DNS, mail-log directory, contract, profiles and their indexes, schedules, backlog, ingests): ok, warning or failing, with a hint.';

-- ======================================================================
-- roles (src/sql/55_roles.sql)
-- ======================================================================

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

-- roles
COMMENT ON FUNCTION pw.grant_role(name, text) IS
    'Grants a role what one part of the daily loop needs (campaign, verify_sender, ingest, monitor); returns the statements run.';

-- ======================================================================
-- ingest progress
-- ======================================================================
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

-- ingest progress
COMMENT ON FUNCTION pw.ingest_progress_rows() IS
    'The ingests under way in the cluster (behind pw.ingest_progress).';
COMMENT ON VIEW pw.ingest_progress IS
    'One row per ingest under way: the file being read, the phase, offset, events and addresses so far, the apply phase''s steps done.';

-- ======================================================================
-- tagging in committed batches
-- ======================================================================
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

-- tagging in committed batches
COMMENT ON PROCEDURE pw.mx_tag_batches(integer) IS
    'Tags up to max_domains domains in batches of tag_batch_size, committing after each: a cancelled run keeps what it committed.';

-- ---------------------------------------------------------------------------
-- Last: say what will not work without the library preloaded
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT pw.library_preloaded() THEN
        RAISE WARNING 'pw_deliverability is not in shared_preload_libraries'
            USING DETAIL = 'Everything works but the background tagger (no tagger runs), '
                           'pw.mx_tag_progress (always empty), DROP EXTENSION removing the '
                           'extension''s indexes on the carriers table by itself, and the check of '
                           'pw_deliverability.* settings in postgresql.conf at server start.',
                  HINT = 'Add pw_deliverability to shared_preload_libraries and restart the server; '
                         'SELECT * FROM pw.health() lists what else needs attention.';
    END IF;
END
$$;
