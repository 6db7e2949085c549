-- pw_deliverability 0.1 install script.
-- Frozen copy of the 0.1 install script (main at commit 722c061, the
-- fragments src/sql/*.sql of that commit concatenated); never edit it.
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
CREATE FUNCTION pw.normalize_email(email text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN lower(btrim(email));

-- The domain part of an address, normalised.
CREATE FUNCTION pw.email_domain(email text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN nullif(rtrim(lower(btrim(split_part(email, '@', -1))), '.'), '');

CREATE FUNCTION pw.suppressions_normalize() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS
$$
BEGIN
    NEW.email := pw.normalize_email(NEW.email);
    RETURN NEW;
END
$$;

CREATE TRIGGER suppressions_normalize
    BEFORE INSERT OR UPDATE OF email ON pw.suppressions
    FOR EACH ROW EXECUTE FUNCTION pw.suppressions_normalize();

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
LANGUAGE plpgsql SET search_path = pg_catalog AS
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

-- Creates the partial index that keeps finding untagged carriers cheap:
-- the domain of every carrier whose MX column is NULL.
CREATE FUNCTION pw.create_tagging_index() RETURNS text
LANGUAGE plpgsql AS
$$
DECLARE
    c record;
    idx text;
BEGIN
    SELECT * INTO c FROM pw.carriers_check();
    idx := (SELECT relname FROM pg_class WHERE oid = c.relation) || '_pw_untagged_domain';
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s (pw.email_domain(%s)) WHERE %s IS NULL',
                   idx, c.relation, c.email_column, c.mx_column);
    RETURN idx;
END
$$;

-- The tagging backlog in one row.
CREATE FUNCTION pw.mx_backlog_stats(
    OUT untagged_carriers bigint, OUT untagged_domains bigint,
    OUT unresolved_domains bigint, OUT failing_domains bigint,
    OUT due_domains bigint, OUT invalid_domains bigint, OUT cached_domains bigint)
LANGUAGE plpgsql STABLE AS
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
LANGUAGE plpgsql STABLE AS
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
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS
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
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
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
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog AS
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
-- offset after the last line applied, with running totals.
CREATE TABLE pw.maillog_files (
    path        text PRIMARY KEY,
    dev         bigint NOT NULL,
    inode       bigint NOT NULL,
    "offset"    bigint NOT NULL DEFAULT 0 CONSTRAINT maillog_files_offset_nonnegative CHECK ("offset" >= 0),
    lines       bigint NOT NULL DEFAULT 0,
    events      bigint NOT NULL DEFAULT 0,
    unparsed    bigint NOT NULL DEFAULT 0,
    overlong    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
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
);

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
