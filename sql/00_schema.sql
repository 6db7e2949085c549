-- The schema, its seeded configuration and the constraints that guard it
CREATE EXTENSION pw_deliverability;

SELECT extversion, extrelocatable, n.nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'pw_deliverability';

-- operator classes as the seeds define them
SELECT op_class, string_agg(label, ' ' ORDER BY label) FROM pw.operators GROUP BY 1 ORDER BY 1;
SELECT pw.operator_class('google'), pw.operator_class('mx:yahoodns.net'),
       pw.operator_class('mx:host7.net'), pw.operator_class(NULL);

-- every clean label has suffix rules
SELECT label, count(*) FROM pw.mx_suffix_rules GROUP BY 1 ORDER BY 1;
SELECT suffix FROM pw.mx_suffix_rules
 WHERE suffix IN ('mail.protection.outlook.com', 'iphmx.com', 'emailsrvr.com', 'pphosted.com',
                  'google.com', 'secureserver.net') ORDER BY 1;

-- blocked literal domains by category
SELECT category, count(*) > 0 AS has_rows FROM pw.blocked_domains GROUP BY 1 ORDER BY 1;
SELECT domain FROM pw.blocked_domains WHERE domain IN ('yahoo.com', 'aol.com', 'icloud.com', 'me.com') ORDER BY 1;

-- the default profile and its defaults
SELECT name, warmup_start = current_date AS starts_today, exclude_until_day, skip_big_mx,
       include_catch_all, null_run_cap, sent_column, sendable_results
  FROM pw.profiles;
SELECT pw.warmup_day('default');

-- ramp: big and consumer start after day 30 and grow stepwise
SELECT op_class, min(from_day) AS first_day, count(*) AS steps,
       bool_and(daily_cap > 0) AS positive
  FROM pw.warmup_ramp WHERE profile = 'default' GROUP BY 1 ORDER BY 1;
SELECT d, pw.daily_cap('default', 'google', d) AS google,
       pw.daily_cap('default', 'mx:yahoodns.net', d) AS yahoo,
       pw.daily_cap('default', 'mx:host1.net', d) AS tail
  FROM unnest(ARRAY[1, 17, 30, 31, 38, 45, 90]) AS d;

-- a per-operator override wins over the class ramp from its day on
INSERT INTO pw.operator_ramp VALUES ('default', 'mx:yahoodns.net', 40, 2);
SELECT pw.daily_cap('default', 'mx:yahoodns.net', 39), pw.daily_cap('default', 'mx:yahoodns.net', 40);
DELETE FROM pw.operator_ramp;

-- bad configuration is refused with a clear message
INSERT INTO pw.warmup_ramp VALUES ('default', 'huge', 1, 10);
INSERT INTO pw.warmup_ramp VALUES ('default', 'big', 1, -1);
INSERT INTO pw.warmup_ramp VALUES ('nosuch', 'big', 1, 1);
INSERT INTO pw.operators VALUES ('aol', 'premium');
\set VERBOSITY terse
INSERT INTO pw.profiles (name, per_op_run_cap) VALUES ('p1', -5);
INSERT INTO pw.profiles (name, null_run_cap) VALUES ('p1', -1);
INSERT INTO pw.profiles (name, exclude_until_day) VALUES ('p1', -1);
\set VERBOSITY default
INSERT INTO pw.profiles (name, sendable_results) VALUES ('p1', '{smtp_valid,great}');
INSERT INTO pw.profiles (name, sendable_results) VALUES ('p1', '{smtp_valid,hard_bounced}');
\set VERBOSITY terse
INSERT INTO pw.profiles (name, sendable_results) VALUES ('p1', '{}');
\set VERBOSITY default
INSERT INTO pw.mx_suffix_rules VALUES ('.Google.com', 'google');
INSERT INTO pw.blocked_domains VALUES ('Yahoo.com', 'yahoo_aol');
-- an insert over an untouched shipped default replaces it, and the row is then
-- the user's (dumped by pg_dump); a second insert collides (the contract is
-- checked on insert: the default relation must exist)
SELECT seeded FROM pw.carriers_config;
CREATE TABLE public.fmcsa_carriers (id bigint, email text, email_verify_result text,
                                    mx_provider text);
INSERT INTO pw.carriers_config DEFAULT VALUES;
SELECT count(*), bool_or(seeded) FROM pw.carriers_config;
INSERT INTO pw.carriers_config DEFAULT VALUES;
DROP TABLE public.fmcsa_carriers;
-- an update makes a seeded row the user's; untouched seeds stay seeded
UPDATE pw.operators SET note = note WHERE label = 'google';
SELECT label, seeded FROM pw.operators WHERE label IN ('google', 'microsoft') ORDER BY label;
SELECT c.relname, e.extcondition[i] AS dump_condition
  FROM pg_extension e, generate_subscripts(e.extconfig, 1) i, pg_class c
 WHERE e.extname = 'pw_deliverability' AND c.oid = e.extconfig[i]
 ORDER BY 1;

-- suppressions are stored normalised: case-insensitive
INSERT INTO pw.suppressions (email, reason) VALUES ('  Someone@Example.COM ', 'opt-out');
SELECT email, reason FROM pw.suppressions;
INSERT INTO pw.suppressions (email, reason) VALUES ('someone@example.com', 'again');
\set VERBOSITY terse
INSERT INTO pw.suppressions (email, reason) VALUES ('not-an-address', 'x');
\set VERBOSITY default
DELETE FROM pw.suppressions;

SELECT pw.email_domain('Dot12@C7.Example.COM.'), pw.normalize_email(' A@B.c ');
-- the C functions give exactly the SQL expressions they are defined by
SELECT count(*) AS cases,
       count(*) FILTER (WHERE pw.email_domain(e) IS NOT DISTINCT FROM
                              nullif(rtrim(lower(btrim(split_part(e, '@', -1))), '.'), '')) AS domain_same,
       count(*) FILTER (WHERE pw.normalize_email(e) = lower(btrim(e))) AS normal_same
  FROM unnest(ARRAY['a@b.c', 'A@B.C', '  x@Example.COM.. ', 'no-at-sign', 'two@at@Signs.org',
                    'trailing@', '@', '', ' ', 'dots@...', 'sp@ . ', 'tab@x.com	',
                    'ünï@Bücher.DE', 'ÄÖ@ÉXAMPLE.fr.', 'x@xn--bcher-kva.de', '@@Only.At']) AS t(e);
SELECT pw.email_domain('x@'), pw.email_domain('a@b@C.d'), pw.email_domain(' Plain.Org. '),
       pw.normalize_email(' Mixed@Case ');

-- the carriers contract
SELECT * FROM pw.carriers_check();
CREATE TABLE public.fmcsa_carriers (id bigint, email text, email_verify_result text,
                                    mx_provider text, listmonk_sent_at timestamptz);
SELECT * FROM pw.carriers_check('listmonk_sent_at');
SELECT * FROM pw.carriers_check('verify_sent_at');
ALTER TABLE public.fmcsa_carriers RENAME COLUMN mx_provider TO mx_operator;
SELECT * FROM pw.carriers_check();
UPDATE pw.carriers_config SET mx_column = 'mx_operator';
SELECT relation, mx_column FROM pw.carriers_check();
ALTER TABLE public.fmcsa_carriers ALTER COLUMN mx_operator TYPE integer USING NULL;
SELECT * FROM pw.carriers_check();
-- a change of the configuration is checked when made (issue 18); a change
-- of the table shows at the next run or pw.carriers_check()
UPDATE pw.carriers_config SET relation = 'public.no_such_table';
UPDATE pw.carriers_config SET mx_column = 'email_verify_result', relation = 'public.fmcsa_carriers';
SELECT * FROM pw.carriers_check();
ALTER TABLE public.fmcsa_carriers ALTER COLUMN mx_operator TYPE text;
ALTER TABLE public.fmcsa_carriers RENAME COLUMN mx_operator TO mx_provider;
UPDATE pw.carriers_config SET relation = DEFAULT, mx_column = DEFAULT;
DROP TABLE public.fmcsa_carriers;

-- configuration tables are dumped with the extension
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS t(oid)
  JOIN pg_class c ON c.oid = t.oid WHERE e.extname = 'pw_deliverability' ORDER BY 1;
