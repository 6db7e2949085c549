-- pw_deliverability install script (see the Makefile: EXTVERSION).
-- Assembled by the Makefile from src/sql/*.sql, in name order.  Every object
-- is created once, in its final shape; an upgrade from an earlier version is
-- the change-only script sql-versions/pw_deliverability--OLD--NEW.sql.  A
-- column added by a later version goes last in its CREATE TABLE, where the
-- upgrade's ADD COLUMN puts it (test/t/080_upgrade.pl compares positions).

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
    verifiable  boolean NOT NULL DEFAULT false,
    seeded      boolean NOT NULL DEFAULT false
);

-- The shipped defaults of the configuration tables are inserted as seeded
-- rows (see src/sql/90_seeded.sql).
INSERT INTO pw.verify_results (result, dead, verifiable, description, seeded)
SELECT result, dead, verifiable, description, true FROM (VALUES
    ('smtp_valid',        false, false, 'an MX explicitly accepted this mailbox at RCPT TO'),
    ('send_confirmed',    false, false, 'a real verification send was delivered and never bounced'),
    ('catch_all_domain',  false, false, 'the domain accepts every recipient at SMTP time; may bounce later'),
    ('mx_unreachable',    true,  true,  'an MX exists but never answered the probe; hard-bounces on a real send'),
    ('no_mx_records',     true,  false, 'the domain has no mail exchanger'),
    ('invalid_syntax',    true,  false, 'the address is not syntactically valid'),
    ('smtp_rejected_550', true,  false, 'the MX rejected this mailbox with 550'),
    ('hard_bounced',      true,  false, 'a real send hard-bounced; suppressed forever')
) AS s (result, dead, verifiable, description);

-- The classes operators fall in.  Operators not listed in pw.operators are
-- in the default class.
CREATE TABLE pw.operator_classes (
    name        text PRIMARY KEY,
    description text NOT NULL,
    seeded      boolean NOT NULL DEFAULT false
);

INSERT INTO pw.operator_classes (name, description, seeded)
SELECT name, description, true FROM (VALUES
    ('big',      'large filtering operators: held out during warmup, then ramped in'),
    ('consumer', 'consumer mailbox operators behind custom domains: treated like big'),
    ('default',  'everything else: the long tail of small and self-hosted systems')
) AS s (name, description);

-- Operators (mx_provider labels) with a class other than default.
CREATE TABLE pw.operators (
    label    text PRIMARY KEY
             CONSTRAINT operators_label_format
             CHECK (label = lower(label) AND label <> '' AND label <> 'none'
                    AND label <> '__null__'),
    op_class text NOT NULL REFERENCES pw.operator_classes (name)
             ON UPDATE CASCADE,
    note     text,
    seeded   boolean NOT NULL DEFAULT false
);

INSERT INTO pw.operators (label, op_class, note, seeded)
SELECT label, op_class, note, true FROM (VALUES
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
    ('mx:earthlink-vadesecure.net', 'consumer', 'EarthLink (filtered by Vade Secure)')
) AS s (label, op_class, note);

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
    note   text,
    seeded boolean NOT NULL DEFAULT false
);

INSERT INTO pw.mx_suffix_rules (suffix, label, note, seeded)
SELECT suffix, label, note, true FROM (VALUES
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
    ('emailsrvr.com',                'rackspace',  'Rackspace Email')
) AS s (suffix, label, note);

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
    note     text,
    seeded   boolean NOT NULL DEFAULT false
);

INSERT INTO pw.blocked_domains (domain, category, seeded)
SELECT domain, category, true FROM (VALUES
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
    ('peoplepc.com', 'dead_isp'), ('wildblue.net', 'dead_isp'), ('hughes.net', 'dead_isp')
) AS s (domain, category);

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
-- lower(btrim(email)), in C (src/common/email.c).
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
    mx_column     name NOT NULL DEFAULT 'mx_provider',
    seeded        boolean NOT NULL DEFAULT false
);

INSERT INTO pw.carriers_config (seeded) VALUES (true);

-- ---------------------------------------------------------------------------
-- Send profiles and the warmup ramp
-- ---------------------------------------------------------------------------

CREATE TABLE pw.profiles (
    name              text PRIMARY KEY
                      CONSTRAINT profiles_name_format CHECK (name ~ '^[A-Za-z0-9_.-]+$'),
    warmup_start      date NOT NULL DEFAULT current_date
                      CONSTRAINT profiles_warmup_start_finite CHECK (isfinite(warmup_start)),
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
                      CHECK (purpose IN ('campaign', 'verification')),
    -- The reputation brake (pw.brake_status()): an operator whose bounce
    -- rate over the last brake_window_days days exceeds brake_bounce_rate is
    -- paused, one whose deferral rate exceeds brake_deferral_rate is slowed
    -- to brake_slow_factor of its allowance; below brake_min_sample outcomes
    -- nothing is judged.
    brake_enabled       boolean NOT NULL DEFAULT true,
    brake_window_days   integer NOT NULL DEFAULT 3
                        CONSTRAINT profiles_brake_window_days_positive CHECK (brake_window_days >= 1)
                        CONSTRAINT profiles_brake_window_days_max CHECK (brake_window_days <= 366),
    brake_min_sample    integer NOT NULL DEFAULT 50
                        CONSTRAINT profiles_brake_min_sample_positive CHECK (brake_min_sample >= 1),
    brake_bounce_rate   numeric NOT NULL DEFAULT 0.05
                        CONSTRAINT profiles_brake_bounce_rate_range
                        CHECK (brake_bounce_rate >= 0 AND brake_bounce_rate <= 1),
    brake_deferral_rate numeric NOT NULL DEFAULT 0.20
                        CONSTRAINT profiles_brake_deferral_rate_range
                        CHECK (brake_deferral_rate >= 0 AND brake_deferral_rate <= 1),
    brake_slow_factor   numeric NOT NULL DEFAULT 0.5
                        CONSTRAINT profiles_brake_slow_factor_range
                        CHECK (brake_slow_factor >= 0 AND brake_slow_factor <= 1),
    seeded              boolean NOT NULL DEFAULT false,
    -- Pauses an operator whose block rate (bounces for the sender's IP,
    -- domain, reputation, content or authentication) exceeds it.
    brake_block_rate    numeric NOT NULL DEFAULT 0.05
                        CONSTRAINT profiles_brake_block_rate_range
                        CHECK (brake_block_rate >= 0 AND brake_block_rate <= 1),
    -- A verification send without a verdict (a block, a full mailbox, an
    -- expiry for the sender's reasons) is sent again after verify_retry_after,
    -- at most verify_max_attempts sends in all (pw.requeue_verifications()).
    verify_retry_after  interval NOT NULL DEFAULT '7 days'
                        CONSTRAINT profiles_verify_retry_after_positive CHECK (verify_retry_after > '0'),
    verify_max_attempts integer NOT NULL DEFAULT 3
                        CONSTRAINT profiles_verify_max_attempts_positive CHECK (verify_max_attempts >= 1)
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

INSERT INTO pw.profiles (name, warmup_start, note, seeded) VALUES
    ('default', current_date,
     'PW trucking campaigns: smtp_valid + send_confirmed, big/consumer held out until day 30', true);

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
    seeded    boolean NOT NULL DEFAULT false,
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

INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap, seeded)
SELECT profile, op_class, from_day, daily_cap, true FROM (VALUES
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
    ('default', 'consumer', 60, 120)
) AS s (profile, op_class, from_day, daily_cap);

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
CREATE FUNCTION pw.daily_cap(profile text, label text, warmup_day integer)
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

-- The warmup day of a profile today (its warmup_start is day 1).
CREATE FUNCTION pw.warmup_day(profile text DEFAULT 'default') RETURNS integer
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT (current_date - p.warmup_start) + 1 FROM pw.profiles p WHERE p.name = warmup_day.profile;
END;

-- Configuration tables are dumped by pg_dump: the rows the user added or
-- edited (not the seeded ones, see src/sql/90_seeded.sql).  The shipped
-- profiles start their warmup on the install day: all profiles are dumped,
-- so that a restore keeps their warmup_start.
SELECT pg_catalog.pg_extension_config_dump('pw.verify_results', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('pw.operator_classes', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('pw.operators', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('pw.mx_suffix_rules', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('pw.blocked_domains', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('pw.suppressions', '');
SELECT pg_catalog.pg_extension_config_dump('pw.carriers_config', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('pw.profiles', '');
SELECT pg_catalog.pg_extension_config_dump('pw.warmup_ramp', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('pw.operator_ramp', '');
