-- pw_deliverability install script (see the Makefile: EXTVERSION).
-- Assembled by the Makefile from src/sql/*.sql, in name order.

\echo Use "CREATE EXTENSION pw_deliverability" to load this file. \quit

-- ---------------------------------------------------------------------------
-- Verification results and operator classes
-- ---------------------------------------------------------------------------

-- Every email_verify_result value the extension knows; dead ones are never
-- selected by a campaign profile.  A dead result that is "verifiable" may
-- still be selected by a verification profile: only a real send from a
-- disposable domain can tell whether such an address is deliverable.
CREATE TABLE pw.verify_results (
    result      text PRIMARY KEY
                CONSTRAINT verify_results_result_format
                CHECK (result ~ '^[a-z0-9_]+$'),
    dead        boolean NOT NULL DEFAULT false,
    description text NOT NULL,
    verifiable  boolean NOT NULL DEFAULT false
);

INSERT INTO pw.verify_results (result, dead, description) VALUES
    ('smtp_valid',        false, 'an MX explicitly accepted this mailbox at RCPT TO'),
    ('send_confirmed',    false, 'a real verification send was delivered and never bounced'),
    ('catch_all_domain',  false, 'the domain accepts every recipient at SMTP time; may bounce later'),
    ('mx_unreachable',    true,  'an MX exists but never answered the probe; hard-bounces on a real send'),
    ('no_mx_records',     true,  'the domain has no mail exchanger'),
    ('invalid_syntax',    true,  'the address is not syntactically valid'),
    ('smtp_rejected_550', true,  'the MX rejected this mailbox with 550'),
    ('hard_bounced',      true,  'a real send hard-bounced; suppressed forever');
UPDATE pw.verify_results SET verifiable = true WHERE result = 'mx_unreachable';

-- The classes operators fall in.  Operators not listed in pw.operators are
-- in the default class.
CREATE TABLE pw.operator_classes (
    name        text PRIMARY KEY,
    description text NOT NULL
);

INSERT INTO pw.operator_classes (name, description) VALUES
    ('big',      'large filtering operators: held out during warmup, then ramped in'),
    ('consumer', 'consumer mailbox operators behind custom domains: treated like big'),
    ('default',  'everything else: the long tail of small and self-hosted systems');

-- Operators (mx_provider labels) with a class other than default.
CREATE TABLE pw.operators (
    label    text PRIMARY KEY
             CONSTRAINT operators_label_format
             CHECK (label = lower(label) AND label <> '' AND label <> 'none'
                    AND label <> '__null__'),
    op_class text NOT NULL REFERENCES pw.operator_classes (name)
             ON UPDATE CASCADE,
    note     text
);

INSERT INTO pw.operators (label, op_class, note) VALUES
    ('google',      'big', 'Google Workspace / Gmail'),
    ('microsoft',   'big', 'Microsoft 365 / Exchange Online / Outlook.com'),
    ('proofpoint',  'big', 'Proofpoint (on-demand and Essentials)'),
    ('mimecast',    'big', 'Mimecast'),
    ('barracuda',   'big', 'Barracuda Email Security Service'),
    ('cisco',       'big', 'Cisco Secure Email (hosted IronPort)'),
    ('broadcom',    'big', 'Broadcom/Symantec Email Security.cloud (MessageLabs)'),
    ('mx:yahoodns.net',             'consumer', 'Yahoo Small Business / AOL custom domains'),
    ('mx:icloud.com',               'consumer', 'Apple iCloud+ custom domains'),
    ('mx:comcast.net',              'consumer', 'Comcast consumer mail'),
    ('mx:charter.net',              'consumer', 'Spectrum/Charter consumer mail'),
    ('mx:centurylink.net',          'consumer', 'CenturyLink consumer mail'),
    ('mx:windstream.net',           'consumer', 'Windstream consumer mail'),
    ('mx:tds.net',                  'consumer', 'TDS Telecom consumer mail'),
    ('mx:earthlink-vadesecure.net', 'consumer', 'EarthLink (filtered by Vade Secure)');

-- The class of an operator label (NULL label: NULL).
CREATE FUNCTION pw.operator_class(label text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN label IS NULL THEN NULL
            ELSE coalesce((SELECT o.op_class FROM pw.operators o
                           WHERE o.label = operator_class.label), 'default')
       END;

-- ---------------------------------------------------------------------------
-- MX host suffix rules: which MX hosts belong to which clean label
-- ---------------------------------------------------------------------------

-- A host matches a rule when it equals the suffix or ends with '.' || suffix;
-- the longest matching suffix wins.
CREATE TABLE pw.mx_suffix_rules (
    suffix text PRIMARY KEY
           CONSTRAINT mx_suffix_rules_suffix_format
           CHECK (suffix = lower(suffix)
                  AND suffix ~ '^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$'),
    label  text NOT NULL
           CONSTRAINT mx_suffix_rules_label_format
           CHECK (label ~ '^[a-z0-9][a-z0-9_.-]*$' AND label <> 'none'),
    note   text
);

INSERT INTO pw.mx_suffix_rules (suffix, label, note) VALUES
    -- Google: aspmx.l.google.com, alt1.aspmx.l.google.com, smtp.google.com,
    -- aspmx2.googlemail.com
    ('google.com',                   'google',     'Workspace MX (aspmx.l.google.com, smtp.google.com)'),
    ('googlemail.com',               'google',     'legacy Workspace MX (aspmx2.googlemail.com)'),
    -- Microsoft: <tenant>.mail.protection.outlook.com (Exchange Online),
    -- *.olc.protection.outlook.com (Outlook.com/Hotmail), GCC High, and the
    -- DNSSEC-enabled <tenant>.<x>.mx.microsoft
    ('mail.protection.outlook.com',  'microsoft',  'Exchange Online Protection'),
    ('olc.protection.outlook.com',   'microsoft',  'Outlook.com / Hotmail'),
    ('mail.eo.outlook.com',          'microsoft',  'legacy Exchange Online'),
    ('hotmail.com',                  'microsoft',  'legacy Hotmail MX'),
    ('protection.office365.us',      'microsoft',  'Microsoft 365 GCC High'),
    ('mx.microsoft',                 'microsoft',  'Exchange Online with inbound DNSSEC'),
    -- Proofpoint: mx0a-<id>.pphosted.com, Essentials mx1-us1.ppe-hosted.com
    ('pphosted.com',                 'proofpoint', 'Proofpoint on Demand'),
    ('ppe-hosted.com',               'proofpoint', 'Proofpoint Essentials'),
    -- Mimecast: us-smtp-inbound-1.mimecast.com, eu-smtp-inbound-1.mimecast.com
    ('mimecast.com',                 'mimecast',   'Mimecast inbound'),
    ('mimecast.co.za',               'mimecast',   'Mimecast South Africa'),
    ('mimecast-offshore.com',        'mimecast',   'Mimecast offshore grid'),
    -- Cisco Secure Email Cloud: mx1.<customer>.iphmx.com
    ('iphmx.com',                    'cisco',      'hosted IronPort'),
    -- Barracuda ESS: d123456a.ess.barracudanetworks.com
    ('barracudanetworks.com',        'barracuda',  'Barracuda Email Security Service'),
    -- Broadcom/Symantec Email Security.cloud: cluster1.us.messagelabs.com
    ('messagelabs.com',              'broadcom',   'Symantec Email Security.cloud'),
    -- GoDaddy: mx1.secureserver.net, smtp.secureserver.net
    ('secureserver.net',             'godaddy',    'GoDaddy Workspace email'),
    -- Zoho: mx.zoho.com, mx2.zoho.eu, mx.zoho.in, mx.zoho.com.au
    ('zoho.com',                     'zoho',       'Zoho Mail US'),
    ('zoho.eu',                      'zoho',       'Zoho Mail EU'),
    ('zoho.in',                      'zoho',       'Zoho Mail India'),
    ('zoho.com.au',                  'zoho',       'Zoho Mail Australia'),
    ('zohomail.com',                 'zoho',       'Zoho Mail'),
    -- Rackspace: mx1.emailsrvr.com, mx2.emailsrvr.com
    ('emailsrvr.com',                'rackspace',  'Rackspace Email');

-- ---------------------------------------------------------------------------
-- Blocked literal recipient domains and the suppression list
-- ---------------------------------------------------------------------------

-- Recipient domains never mailed, whatever their MX.
CREATE TABLE pw.blocked_domains (
    domain   text PRIMARY KEY
             CONSTRAINT blocked_domains_domain_format
             CHECK (domain = lower(domain) AND domain ~ '^[a-z0-9.-]+\.[a-z0-9-]+$'),
    category text NOT NULL
             CONSTRAINT blocked_domains_category_known
             CHECK (category IN ('yahoo_aol', 'apple', 'dead_isp', 'other')),
    note     text
);

INSERT INTO pw.blocked_domains (domain, category) VALUES
    ('yahoo.com', 'yahoo_aol'), ('ymail.com', 'yahoo_aol'), ('rocketmail.com', 'yahoo_aol'),
    ('yahoo.co.uk', 'yahoo_aol'), ('yahoo.ca', 'yahoo_aol'), ('aol.com', 'yahoo_aol'),
    ('aim.com', 'yahoo_aol'), ('verizon.net', 'yahoo_aol'), ('att.net', 'yahoo_aol'),
    ('sbcglobal.net', 'yahoo_aol'), ('bellsouth.net', 'yahoo_aol'), ('pacbell.net', 'yahoo_aol'),
    ('swbell.net', 'yahoo_aol'), ('flash.net', 'yahoo_aol'), ('prodigy.net', 'yahoo_aol'),
    ('ameritech.net', 'yahoo_aol'), ('nvbell.net', 'yahoo_aol'), ('snet.net', 'yahoo_aol'),
    ('frontier.com', 'yahoo_aol'), ('frontiernet.net', 'yahoo_aol'),
    ('icloud.com', 'apple'), ('me.com', 'apple'), ('mac.com', 'apple'),
    ('centurylink.net', 'dead_isp'), ('centurytel.net', 'dead_isp'), ('embarqmail.com', 'dead_isp'),
    ('q.com', 'dead_isp'), ('qwest.net', 'dead_isp'), ('windstream.net', 'dead_isp'),
    ('tds.net', 'dead_isp'), ('earthlink.net', 'dead_isp'), ('mindspring.com', 'dead_isp'),
    ('juno.com', 'dead_isp'), ('netzero.net', 'dead_isp'), ('netzero.com', 'dead_isp'),
    ('charter.net', 'dead_isp'), ('comcast.net', 'dead_isp'), ('cox.net', 'dead_isp'),
    ('roadrunner.com', 'dead_isp'), ('rr.com', 'dead_isp'), ('excite.com', 'dead_isp'),
    ('peoplepc.com', 'dead_isp'), ('wildblue.net', 'dead_isp'), ('hughes.net', 'dead_isp');

-- Addresses never mailed again by any profile.  Emails are stored
-- normalised (trimmed, lower case), so comparisons are case-insensitive.
CREATE TABLE pw.suppressions (
    email      text PRIMARY KEY
               CONSTRAINT suppressions_email_format
               CHECK (email = lower(btrim(email)) AND email LIKE '%_@_%'),
    reason     text NOT NULL
               CONSTRAINT suppressions_reason_nonempty CHECK (reason <> ''),
    source     text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Normalises an address the way the suppression list stores it.
-- lower(btrim(email)), in C (src/email.c).
CREATE FUNCTION pw.normalize_email(email text) RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_normalize_email';

-- The domain part of an address, normalised.
-- nullif(rtrim(lower(btrim(split_part(email, '@', -1))), '.'), ''), in C.
CREATE FUNCTION pw.email_domain(email text) RETURNS text
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_email_domain';

CREATE FUNCTION pw.suppressions_normalize() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    NEW.email := pw.normalize_email(NEW.email);
    RETURN NEW;
END
$$;

-- Only fired when there is something to normalise (the ingest inserts
-- normalised addresses by the thousand).
CREATE TRIGGER suppressions_normalize
    BEFORE INSERT OR UPDATE OF email ON pw.suppressions
    FOR EACH ROW WHEN (NEW.email IS DISTINCT FROM pw.normalize_email(NEW.email))
    EXECUTE FUNCTION pw.suppressions_normalize();

-- ---------------------------------------------------------------------------
-- The carriers contract: which relation and columns the extension works on
-- ---------------------------------------------------------------------------

-- Exactly one row.  The relation is kept as text (not regclass) so that the
-- configuration can name a table created later and survives dump/restore.
CREATE TABLE pw.carriers_config (
    singleton     boolean PRIMARY KEY DEFAULT true
                  CONSTRAINT carriers_config_single_row CHECK (singleton),
    relation      text NOT NULL DEFAULT 'public.fmcsa_carriers',
    id_column     name NOT NULL DEFAULT 'id',
    email_column  name NOT NULL DEFAULT 'email',
    result_column name NOT NULL DEFAULT 'email_verify_result',
    mx_column     name NOT NULL DEFAULT 'mx_provider'
);

INSERT INTO pw.carriers_config DEFAULT VALUES;

-- ---------------------------------------------------------------------------
-- Send profiles and the warmup ramp
-- ---------------------------------------------------------------------------

CREATE TABLE pw.profiles (
    name              text PRIMARY KEY
                      CONSTRAINT profiles_name_format CHECK (name ~ '^[A-Za-z0-9_.-]+$'),
    warmup_start      date NOT NULL DEFAULT current_date,
    exclude_until_day integer NOT NULL DEFAULT 30
                      CONSTRAINT profiles_exclude_until_day_nonnegative CHECK (exclude_until_day >= 0),
    skip_big_mx       boolean NOT NULL DEFAULT true,
    include_catch_all boolean NOT NULL DEFAULT false,
    per_op_run_cap    integer NOT NULL DEFAULT 60
                      CONSTRAINT profiles_per_op_run_cap_nonnegative CHECK (per_op_run_cap >= 0),
    null_run_cap      integer NOT NULL DEFAULT 40
                      CONSTRAINT profiles_null_run_cap_nonnegative CHECK (null_run_cap >= 0),
    default_daily_cap integer NOT NULL DEFAULT 100
                      CONSTRAINT profiles_default_daily_cap_nonnegative CHECK (default_daily_cap >= 0),
    sent_column       name NOT NULL DEFAULT 'listmonk_sent_at',
    sendable_results  text[] NOT NULL DEFAULT '{smtp_valid,send_confirmed}'
                      CONSTRAINT profiles_sendable_results_nonempty
                      CHECK (cardinality(sendable_results) > 0
                             AND array_position(sendable_results, NULL) IS NULL),
    note              text,
    purpose           text NOT NULL DEFAULT 'campaign'
                      CONSTRAINT profiles_purpose_known
                      CHECK (purpose IN ('campaign', 'verification'))
);

-- Refuses sendable results that are unknown or dead (a verification profile
-- may take dead results marked verifiable), and a sent column shared by a
-- campaign profile and a verification profile.
CREATE FUNCTION pw.profiles_check() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    bad text;
BEGIN
    SELECT r INTO bad
      FROM unnest(NEW.sendable_results) AS r
     WHERE NOT EXISTS (SELECT 1 FROM pw.verify_results v WHERE v.result = r)
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown verification result "%" in sendable_results of profile "%"', bad, NEW.name
            USING ERRCODE = 'check_violation',
                  HINT = 'Known results are listed in pw.verify_results.';
    END IF;
    SELECT r INTO bad
      FROM unnest(NEW.sendable_results) AS r
      JOIN pw.verify_results v ON v.result = r
     WHERE v.dead AND NOT (NEW.purpose = 'verification' AND v.verifiable)
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'verification result "%" is dead and cannot be sendable (profile "%")', bad, NEW.name
            USING ERRCODE = 'check_violation',
                  HINT = 'Dead results (pw.verify_results.dead) are never mailed.';
    END IF;
    SELECT p.name INTO bad
      FROM pw.profiles p
     WHERE p.name <> NEW.name AND p.sent_column = NEW.sent_column
       AND p.purpose <> NEW.purpose
     LIMIT 1;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'profile "%" (%) cannot share sent column "%" with profile "%"',
                        NEW.name, NEW.purpose, NEW.sent_column, bad
            USING ERRCODE = 'check_violation',
                  HINT = 'A verification send must never mark a campaign send: give each purpose its own sent column.';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER profiles_check
    BEFORE INSERT OR UPDATE ON pw.profiles
    FOR EACH ROW EXECUTE FUNCTION pw.profiles_check();

INSERT INTO pw.profiles (name, warmup_start, note) VALUES
    ('default', current_date,
     'PW trucking campaigns: smtp_valid + send_confirmed, big/consumer held out until day 30');

-- Daily cap per operator class from a warmup day on (the row with the
-- greatest from_day <= the current warmup day applies).  A default-class
-- operator with no applicable row gets the profile's default_daily_cap; a
-- big or consumer operator with none gets 0.
CREATE TABLE pw.warmup_ramp (
    profile   text NOT NULL REFERENCES pw.profiles (name)
              ON UPDATE CASCADE ON DELETE CASCADE,
    op_class  text NOT NULL REFERENCES pw.operator_classes (name)
              ON UPDATE CASCADE,
    from_day  integer NOT NULL
              CONSTRAINT warmup_ramp_from_day_positive CHECK (from_day >= 1),
    daily_cap integer NOT NULL
              CONSTRAINT warmup_ramp_daily_cap_nonnegative CHECK (daily_cap >= 0),
    PRIMARY KEY (profile, op_class, from_day)
);

-- Per-operator overrides of the class ramp; they win over the class ramp
-- from their first from_day on.
CREATE TABLE pw.operator_ramp (
    profile   text NOT NULL REFERENCES pw.profiles (name)
              ON UPDATE CASCADE ON DELETE CASCADE,
    operator  text NOT NULL
              CONSTRAINT operator_ramp_operator_format
              CHECK (operator = lower(operator) AND operator <> '' AND operator <> 'none'),
    from_day  integer NOT NULL
              CONSTRAINT operator_ramp_from_day_positive CHECK (from_day >= 1),
    daily_cap integer NOT NULL
              CONSTRAINT operator_ramp_daily_cap_nonnegative CHECK (daily_cap >= 0),
    PRIMARY KEY (profile, operator, from_day)
);

INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap) VALUES
    ('default', 'default',   1,  40),
    ('default', 'default',   8,  60),
    ('default', 'default',  15,  80),
    ('default', 'default',  31, 120),
    ('default', 'big',      31,  10),
    ('default', 'big',      38,  25),
    ('default', 'big',      45,  50),
    ('default', 'big',      52, 100),
    ('default', 'big',      60, 200),
    ('default', 'consumer', 31,   5),
    ('default', 'consumer', 38,  15),
    ('default', 'consumer', 45,  30),
    ('default', 'consumer', 52,  60),
    ('default', 'consumer', 60, 120);

-- The daily cap of one operator (label) under a profile on a warmup day.
CREATE FUNCTION pw.daily_cap(profile text, label text, warmup_day integer)
RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT coalesce(
        (SELECT r.daily_cap FROM pw.operator_ramp r
          WHERE r.profile = daily_cap.profile AND r.operator = daily_cap.label
            AND r.from_day <= daily_cap.warmup_day
          ORDER BY r.from_day DESC LIMIT 1),
        (SELECT r.daily_cap FROM pw.warmup_ramp r
          WHERE r.profile = daily_cap.profile
            AND r.op_class = pw.operator_class(daily_cap.label)
            AND r.from_day <= daily_cap.warmup_day
          ORDER BY r.from_day DESC LIMIT 1),
        CASE WHEN pw.operator_class(daily_cap.label) = 'default'
             THEN (SELECT p.default_daily_cap FROM pw.profiles p
                    WHERE p.name = daily_cap.profile)
             ELSE 0 END);
END;

-- The warmup day of a profile today (its warmup_start is day 1).
CREATE FUNCTION pw.warmup_day(profile text DEFAULT 'default') RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT (current_date - p.warmup_start) + 1 FROM pw.profiles p WHERE p.name = warmup_day.profile;
END;

-- Configuration tables are dumped by pg_dump (rows the user adds or edits).
SELECT pg_catalog.pg_extension_config_dump('pw.verify_results', '');
SELECT pg_catalog.pg_extension_config_dump('pw.operator_classes', '');
SELECT pg_catalog.pg_extension_config_dump('pw.operators', '');
SELECT pg_catalog.pg_extension_config_dump('pw.mx_suffix_rules', '');
SELECT pg_catalog.pg_extension_config_dump('pw.blocked_domains', '');
SELECT pg_catalog.pg_extension_config_dump('pw.suppressions', '');
SELECT pg_catalog.pg_extension_config_dump('pw.carriers_config', '');
SELECT pg_catalog.pg_extension_config_dump('pw.profiles', '');
SELECT pg_catalog.pg_extension_config_dump('pw.warmup_ramp', '');
SELECT pg_catalog.pg_extension_config_dump('pw.operator_ramp', '');

-- ---------------------------------------------------------------------------
-- The carriers contract, checked
-- ---------------------------------------------------------------------------

-- The configured carriers relation and its columns as the catalog has them
-- (identifiers quoted for SQL), or an error naming what is missing.  With a
-- sent_column, that column is checked too.
CREATE FUNCTION pw.carriers_check(sent_column name DEFAULT NULL)
RETURNS TABLE (relation regclass, id_column text, email_column text,
               result_column text, mx_column text, sent_column_checked text)
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'pw_carriers_check';

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

-- Wakes the background tagger (after an import); false when none runs.
CREATE FUNCTION pw.wake_tagger() RETURNS boolean
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pw_wake_tagger';

REVOKE EXECUTE ON FUNCTION pw.wake_tagger() FROM PUBLIC;

-- The background tagger's process id, or NULL.
CREATE FUNCTION pw.tagger_pid() RETURNS integer
LANGUAGE c VOLATILE
AS 'MODULE_PATHNAME', 'pw_tagger_pid';

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

-- The dry run of a selection: one row per bucket with unsent candidates.
CREATE FUNCTION pw.selection_composition(quota integer, profile text DEFAULT 'default',
                                         warmup_day integer DEFAULT NULL)
RETURNS TABLE (bucket text, operator_class text, available bigint, allowance bigint,
               selected bigint)
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
-- campaign send.
INSERT INTO pw.profiles (name, purpose, warmup_start, sent_column, sendable_results,
                         per_op_run_cap, null_run_cap, note) VALUES
    ('verify', 'verification', current_date, 'verify_sent_at',
     '{catch_all_domain,mx_unreachable}', 30, 20,
     'burner-domain verification sends: catch_all_domain + mx_unreachable');

INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap) VALUES
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
    ('verify', 'consumer', 52,  40);

-- ---------------------------------------------------------------------------
-- Mail logs: reading, ingestion and bounce writeback
-- ---------------------------------------------------------------------------

-- One row per delivery-status line (smtp, lmtp, local, virtual, pipe, error,
-- retry, discard, ...) and per qmgr "status=expired" line of a Postfix log
-- inside pw_deliverability.maillog_directory, from start_offset on.
-- line_offset is the byte offset where the line starts.
CREATE FUNCTION pw.read_maillog(path text, start_offset bigint DEFAULT 0)
RETURNS TABLE (line_offset bigint, logged_at timestamptz, host text, program text,
               pid integer, queue_id text, recipient text, orig_recipient text,
               relay text, delay float8, dsn text, status text, reason text)
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
-- Every ingest updates the rows of the addresses it saw: half of each page
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
    confirmed_at     timestamptz
) WITH (fillfactor = 50);

-- Outcomes per day (of the log time, in the ingesting session's time zone)
-- and operator (the carrier's mx_provider when ingested; '(untagged)' for
-- carriers without one, '(not a carrier)' for other addresses).
CREATE TABLE pw.maillog_daily (
    day         date NOT NULL,
    mx_provider text NOT NULL,
    sent        bigint NOT NULL DEFAULT 0,
    deferred    bigint NOT NULL DEFAULT 0,
    bounced     bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, mx_provider)
);

-- Per-operator outcomes with rates: watch each operator's reject rate.
CREATE VIEW pw.operator_outcomes AS
SELECT day, mx_provider, sent, deferred, bounced,
       round(bounced::numeric / nullif(sent + bounced, 0), 4) AS bounce_rate,
       round(deferred::numeric / nullif(sent + bounced + deferred, 0), 4) AS deferral_rate
  FROM pw.maillog_daily;

-- Reads a mail log from where the last call on it stopped (following
-- rotation to path.1), records deliveries, deferrals and bounces, writes
-- hard bounces back to the carriers and the suppression list, and advances
-- the stored offset, all in the caller's transaction.
CREATE FUNCTION pw.ingest_maillog(path text,
    OUT files integer, OUT lines bigint, OUT events bigint, OUT unparsed bigint,
    OUT overlong bigint, OUT sent bigint, OUT deferred bigint, OUT bounced bigint,
    OUT expired bigint, OUT carriers_bounced bigint, OUT unknown_addresses bigint,
    OUT suppressed bigint, OUT end_offset bigint)
RETURNS record
LANGUAGE c VOLATILE STRICT
SET jit = off SET work_mem = '64MB'
AS 'MODULE_PATHNAME', 'pw_ingest_maillog';

-- Carriers whose address was delivered longer ago than older_than and never
-- bounced become send_confirmed (never over hard_bounced or a suppressed
-- address).  Returns the number of carriers changed.
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
-- ---------------------------------------------------------------------------
-- Operations: mail logs per profile, the reputation brake, reporting and
-- pg_cron schedules.  Written as ALTERs and new objects so that this
-- fragment can double as upgrade content.
-- ---------------------------------------------------------------------------

-- The mail logs the extension ingests, each mapped to the send profile whose
-- traffic it records (the MTA of the campaign, the burner MTA of the
-- verification stream).  pw.schedule_jobs() ingests each on its schedule.
CREATE TABLE pw.maillogs (
    path     text PRIMARY KEY
             CONSTRAINT maillogs_path_nonempty CHECK (path <> ''),
    profile  text REFERENCES pw.profiles (name) ON UPDATE CASCADE ON DELETE SET NULL,
    schedule text NOT NULL DEFAULT '*/5 * * * *'
             CONSTRAINT maillogs_schedule_format CHECK (schedule ~ '^\S+(\s+\S+){4}$|^@\w+$|^\d+ seconds$'),
    note     text
);

-- The profile pw.maillogs maps a log to, by the path as given or its
-- canonical path ('' if none).  Ingestion calls it: security definer, so
-- that a role granted ingestion needs no privilege on pw.maillogs.
CREATE FUNCTION pw.maillog_profile(path text, canonical_path text) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
RETURN coalesce((SELECT m.profile FROM pw.maillogs m
                  WHERE m.path IN (maillog_profile.path, maillog_profile.canonical_path)
                  ORDER BY m.path = maillog_profile.path DESC LIMIT 1), '');

-- Outcomes are kept per profile of the log they came from ('' for a log not
-- mapped to a profile in pw.maillogs).
ALTER TABLE pw.maillog_daily ADD COLUMN profile text NOT NULL DEFAULT '';
ALTER TABLE pw.maillog_daily DROP CONSTRAINT maillog_daily_pkey;
ALTER TABLE pw.maillog_daily ADD PRIMARY KEY (day, mx_provider, profile);

-- Per-operator outcomes with rates, over all logs as before.
DROP VIEW pw.operator_outcomes;
CREATE VIEW pw.operator_outcomes AS
SELECT day, mx_provider, sent, deferred, bounced,
       round(bounced::numeric / nullif(sent + bounced, 0), 4) AS bounce_rate,
       round(deferred::numeric / nullif(sent + bounced + deferred, 0), 4) AS deferral_rate
  FROM (SELECT d.day, d.mx_provider, sum(d.sent)::bigint AS sent,
               sum(d.deferred)::bigint AS deferred, sum(d.bounced)::bigint AS bounced
          FROM pw.maillog_daily d GROUP BY d.day, d.mx_provider) m;

-- ---------------------------------------------------------------------------
-- Reputation brake
-- ---------------------------------------------------------------------------

ALTER TABLE pw.profiles
    ADD COLUMN brake_enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN brake_window_days integer NOT NULL DEFAULT 3
        CONSTRAINT profiles_brake_window_days_positive CHECK (brake_window_days >= 1),
    ADD COLUMN brake_min_sample integer NOT NULL DEFAULT 50
        CONSTRAINT profiles_brake_min_sample_positive CHECK (brake_min_sample >= 1),
    ADD COLUMN brake_bounce_rate numeric NOT NULL DEFAULT 0.05
        CONSTRAINT profiles_brake_bounce_rate_range CHECK (brake_bounce_rate >= 0 AND brake_bounce_rate <= 1),
    ADD COLUMN brake_deferral_rate numeric NOT NULL DEFAULT 0.20
        CONSTRAINT profiles_brake_deferral_rate_range CHECK (brake_deferral_rate >= 0 AND brake_deferral_rate <= 1),
    ADD COLUMN brake_slow_factor numeric NOT NULL DEFAULT 0.5
        CONSTRAINT profiles_brake_slow_factor_range CHECK (brake_slow_factor >= 0 AND brake_slow_factor <= 1);

-- The verification stream exists to find the addresses that bounce: its
-- bounce rate is the measurement, not a reputation signal.  It still slows
-- down on deferrals, and never pauses on bounces.
UPDATE pw.profiles SET brake_bounce_rate = 1 WHERE name = 'verify';

-- Every operator's outcomes in a profile's brake window (the last
-- brake_window_days days, today included), from the logs mapped to the
-- profile and the logs mapped to none, with what the brake does: 'paused'
-- when the bounce rate is over brake_bounce_rate, 'slowed' when the
-- deferral rate is over brake_deferral_rate, NULL otherwise; nothing is
-- judged below brake_min_sample outcomes or with the brake disabled.
-- "since" is the first day of the window with an outcome of the kind that
-- triggered the brake: the brake lifts once the window has moved past the
-- days that triggered it and the rates are back under the thresholds.
CREATE FUNCTION pw.brake_status(profile text DEFAULT 'default')
RETURNS TABLE (operator text, op_class text, sent bigint, deferred bigint, bounced bigint,
               sample bigint, bounce_rate numeric, deferral_rate numeric,
               action text, reason text, since date)
LANGUAGE sql STABLE
BEGIN ATOMIC
    WITH p AS (
        SELECT * FROM pw.profiles p WHERE p.name = brake_status.profile
    ), o AS (
        SELECT d.mx_provider AS operator, sum(d.sent)::bigint AS sent,
               sum(d.deferred)::bigint AS deferred, sum(d.bounced)::bigint AS bounced,
               min(d.day) FILTER (WHERE d.bounced > 0) AS first_bounce,
               min(d.day) FILTER (WHERE d.deferred > 0) AS first_deferral
          FROM pw.maillog_daily d, p
         WHERE d.day > current_date - p.brake_window_days AND d.day <= current_date
           AND d.profile IN (p.name, '')
           AND d.mx_provider <> '(not a carrier)'
         GROUP BY d.mx_provider
    ), r AS (
        SELECT o.*, o.sent + o.deferred + o.bounced AS sample,
               round(o.bounced::numeric / nullif(o.sent + o.bounced, 0), 4) AS bounce_rate,
               round(o.deferred::numeric / nullif(o.sent + o.deferred + o.bounced, 0), 4) AS deferral_rate
          FROM o
    )
    SELECT r.operator,
           CASE WHEN r.operator = '(untagged)' THEN NULL ELSE coalesce(op.op_class, 'default') END,
           r.sent, r.deferred, r.bounced, r.sample, r.bounce_rate, r.deferral_rate,
           CASE WHEN NOT p.brake_enabled OR r.sample < p.brake_min_sample THEN NULL
                WHEN r.bounce_rate > p.brake_bounce_rate THEN 'paused'
                WHEN r.deferral_rate > p.brake_deferral_rate THEN 'slowed' END,
           CASE WHEN NOT p.brake_enabled THEN NULL
                WHEN r.sample < p.brake_min_sample THEN NULL
                WHEN r.bounce_rate > p.brake_bounce_rate
                THEN format('bounce rate %s > %s over %s outcomes in %s day(s)',
                            r.bounce_rate, p.brake_bounce_rate, r.sample, p.brake_window_days)
                WHEN r.deferral_rate > p.brake_deferral_rate
                THEN format('deferral rate %s > %s over %s outcomes in %s day(s): allowance x %s',
                            r.deferral_rate, p.brake_deferral_rate, r.sample, p.brake_window_days,
                            p.brake_slow_factor) END,
           CASE WHEN NOT p.brake_enabled OR r.sample < p.brake_min_sample THEN NULL
                WHEN r.bounce_rate > p.brake_bounce_rate THEN r.first_bounce
                WHEN r.deferral_rate > p.brake_deferral_rate THEN r.first_deferral END
      FROM r CROSS JOIN p
      LEFT JOIN pw.operators op ON op.label = r.operator
     ORDER BY r.operator;
END;

-- The operators braked now, for every profile.
CREATE VIEW pw.braked_operators AS
SELECT p.name AS profile, b.operator, b.op_class, b.sample, b.bounce_rate, b.deferral_rate,
       b.action, b.reason, b.since
  FROM pw.profiles p
 CROSS JOIN LATERAL pw.brake_status(p.name) b
 WHERE b.action IS NOT NULL;

-- The dry run of a selection now also shows the brake on each bucket.
DROP FUNCTION pw.selection_composition(integer, text, integer);
CREATE FUNCTION pw.selection_composition(quota integer, profile text DEFAULT 'default',
                                         warmup_day integer DEFAULT NULL)
RETURNS TABLE (bucket text, operator_class text, available bigint, allowance bigint,
               selected bigint, brake text, brake_reason text)
LANGUAGE c STABLE ROWS 100
AS 'MODULE_PATHNAME', 'pw_selection_composition';

-- ---------------------------------------------------------------------------
-- Reporting
-- ---------------------------------------------------------------------------

-- The daily loop at a glance, for one campaign profile and every
-- verification profile, one row per figure:
--   pool          per result of the profile's pool and operator class: unsent
--                 candidates (count) of all carriers with that result (total)
--   backlog       the MX-tagging backlog (pw.mx_backlog), one row per figure
--   today         per operator: sent today by the profile (count) against its
--                 daily cap on today's warmup day (total), brake in note
--   outcomes      per operator, over the profile's brake window: outcomes
--                 (count), bounce and deferral rates, brake in note
--   verification  per verification profile (note): carriers it sent to that
--                 became hard_bounced or send_confirmed, those still awaiting
--                 an outcome, and per result of its pool those still unsent
-- Operator classes: the class of the operator, '(untagged)' for carriers
-- without mx_provider, '(no mx)' for mx_provider 'none'.
CREATE FUNCTION pw.report(profile text DEFAULT 'default')
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

    -- today's sends per operator against the day's caps
    RETURN QUERY EXECUTE format(
        'SELECT ''today''::text, coalesce(t.mx, ''__null__''),'
        '       CASE WHEN t.mx IS NULL THEN ''(untagged)'' ELSE pw.operator_class(t.mx) END,'
        '       t.n, CASE WHEN t.mx IS NOT NULL THEN pw.daily_cap($1, t.mx, $2)::bigint END,'
        '       NULL::numeric, NULL::numeric, b.action'
        '  FROM (SELECT c.%2$s::text AS mx, count(*) AS n FROM %1$s c'
        '         WHERE c.%3$s >= current_date AND c.%3$s < current_date + 1 GROUP BY 1) t'
        '  LEFT JOIN pw.brake_status($1) b ON b.operator = coalesce(t.mx, ''(untagged)'')'
        ' ORDER BY 2',
        cc.relation, cc.mx_column, cc.sent_column_checked)
        USING p.name, vday;

    -- outcomes per operator over the brake window
    RETURN QUERY
        SELECT 'outcomes'::text, s.operator, s.op_class, s.sample, NULL::bigint,
               s.bounce_rate, s.deferral_rate, coalesce(s.action || ': ' || s.reason, 'ok')
          FROM pw.brake_status(p.name) s
         ORDER BY s.operator;

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

-- ---------------------------------------------------------------------------
-- Schedules (pg_cron)
-- ---------------------------------------------------------------------------

-- Fails unless pg_cron is installed in this database.
CREATE FUNCTION pw.require_pg_cron() RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database "%"', current_database()
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Preload pg_cron (shared_preload_libraries), set cron.database_name to this '
                         'database, and run CREATE EXTENSION pg_cron here; or schedule the jobs '
                         'with another scheduler (see pw.schedule_jobs() in the README).';
    END IF;
END
$$;

-- Registers the daily loop with pg_cron under stable job names, as the
-- calling role: the MX tagging ("pw_mx_tag", daily before the builder), the
-- ingest of every log of pw.maillogs ("pw_ingest:<path>", on the log's
-- schedule unless ingest_schedule overrides it) and the confirmation of
-- deliveries ("pw_confirm_deliveries", hourly).  Idempotent: pg_cron updates
-- a job of the same name, and the ingest jobs of logs no longer in
-- pw.maillogs are removed.  Returns the jobs registered.
CREATE FUNCTION pw.schedule_jobs(tag_schedule text DEFAULT '45 5 * * *',
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
               format('SELECT * FROM pw.mx_tag(%s)', tag_max_domains) AS cmd
        UNION ALL
        SELECT 2, 'pw_ingest:' || m.path, coalesce(ingest_schedule, m.schedule),
               format('SELECT * FROM pw.ingest_maillog(%L)', m.path)
          FROM pw.maillogs m
        UNION ALL
        SELECT 3, 'pw_confirm_deliveries', confirm_schedule,
               'SELECT * FROM pw.confirm_deliveries()'
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
CREATE FUNCTION pw.unschedule_jobs()
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
        '   AND (c.jobname IN (''pw_mx_tag'', ''pw_confirm_deliveries'')'
        '        OR c.jobname LIKE ''pw\_ingest:%'')'
    LOOP
        EXECUTE 'SELECT cron.unschedule($1)' USING j.jobname;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION pw.schedule_jobs(text, text, text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION pw.unschedule_jobs() FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pw.maillogs', '');
-- ---------------------------------------------------------------------------
-- Shipped defaults and pg_dump
-- ---------------------------------------------------------------------------

-- CREATE EXTENSION seeds the configuration tables with shipped defaults
-- (profiles, ramps, operators, suffix rules, ...).  pg_dump must dump only
-- what the user changed: a restore runs CREATE EXTENSION first, which seeds
-- the defaults again.  Every seeded row carries seeded = true; inserting or
-- updating a row makes it the user's (seeded = false), and only those rows
-- are dumped.  On restore, a dumped row whose key matches a seeded row
-- replaces that row (pw.config_row_insert), so user edits of a shipped
-- default (say the default profile's warmup_start) survive dump/restore.

-- Any update makes the row the user's, except the replacement of a seeded
-- row by pw.config_row_insert(), which keeps the inserted row's flag.
CREATE FUNCTION pw.config_row_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    IF pg_catalog.current_setting('pw_seeded.replacing', true) IS DISTINCT FROM 'on' THEN
        NEW.seeded := false;
    END IF;
    RETURN NEW;
END
$$;

-- A row whose primary key matches a seeded row replaces the seeded row in
-- place (foreign keys to it stay valid); any other row is inserted.
CREATE FUNCTION pw.config_row_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    keys text;
    cols text;
    n    bigint;
BEGIN
    SELECT string_agg(format('t.%I IS NOT DISTINCT FROM ($1).%I', a.attname, a.attname), ' AND ')
      INTO keys
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = TG_RELID AND i.indisprimary;
    SELECT string_agg(format('%I = ($1).%I', a.attname, a.attname), ', ' ORDER BY a.attnum)
      INTO cols
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped;
    PERFORM pg_catalog.set_config('pw_seeded.replacing', 'on', true);
    EXECUTE format('UPDATE %I.%I t SET %s WHERE t.seeded AND %s',
                   TG_TABLE_SCHEMA, TG_TABLE_NAME, cols, keys)
      USING NEW;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM pg_catalog.set_config('pw_seeded.replacing', 'off', true);
    IF n > 0 THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;

-- Marks the rows seeded so far, and dumps only the user's rows.
CREATE FUNCTION pw.config_mark_seeded(tbl regclass, dump_all boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    EXECUTE format('ALTER TABLE %s ADD COLUMN seeded boolean NOT NULL DEFAULT true', tbl);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN seeded SET DEFAULT false', tbl);
    EXECUTE format('CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION pw.config_row_update()', tbl);
    EXECUTE format('CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert()', tbl);
    PERFORM pg_catalog.pg_extension_config_dump(tbl, CASE WHEN dump_all THEN '' ELSE 'WHERE NOT seeded' END);
END
$$;

SELECT pw.config_mark_seeded('pw.verify_results');
SELECT pw.config_mark_seeded('pw.operator_classes');
SELECT pw.config_mark_seeded('pw.operators');
SELECT pw.config_mark_seeded('pw.mx_suffix_rules');
SELECT pw.config_mark_seeded('pw.blocked_domains');
SELECT pw.config_mark_seeded('pw.carriers_config');
-- The shipped profiles start their warmup on the install day: all profiles
-- are dumped, so that a restore keeps their warmup_start.
SELECT pw.config_mark_seeded('pw.profiles', dump_all => true);
SELECT pw.config_mark_seeded('pw.warmup_ramp');
DROP FUNCTION pw.config_mark_seeded(regclass, boolean);
