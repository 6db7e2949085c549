-- The domain cache, propagation without DNS, the backlog views
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pw_deliverability;
RESET client_min_messages;

CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                             mx_provider text);
INSERT INTO fmcsa_carriers VALUES
    (1, 'a@cached.example', 'smtp_valid', NULL),
    (2, 'b@CACHED.example.', 'smtp_valid', NULL),
    (3, 'c@dead.example', 'smtp_valid', NULL),
    (4, 'd@failing.example', 'smtp_valid', NULL),
    (5, 'e@unknown.example', 'smtp_valid', NULL),
    (6, 'f@done.example', 'smtp_valid', 'google');
INSERT INTO pw.mx_domains (domain, label, mx_hosts, outcome, resolved_at, next_check_at, attempts, last_error) VALUES
    ('cached.example', 'microsoft', '{cached-example.mail.protection.outlook.com}', 'mx', now(), now() + interval '30 days', 0, NULL),
    ('dead.example', 'none', NULL, 'nxdomain', now(), now() + interval '30 days', 0, NULL),
    ('failing.example', NULL, NULL, 'failed', NULL, now() + interval '1 hour', 3, 'SERVFAIL');

-- outcomes and labels must agree
\set VERBOSITY terse
INSERT INTO pw.mx_domains (domain, label, outcome) VALUES ('x.example', 'google', 'nxdomain');
INSERT INTO pw.mx_domains (domain, label, outcome) VALUES ('x.example', 'google', 'address');
INSERT INTO pw.mx_domains (domain, label, outcome) VALUES ('x.example', NULL, 'mx');
INSERT INTO pw.mx_domains (domain, label, outcome) VALUES ('x.example', 'google', 'maybe');
INSERT INTO pw.mx_domains (domain, label, outcome) VALUES ('x.example', 'Google', 'mx');
\set VERBOSITY default

-- the backlog before tagging
SELECT * FROM pw.mx_backlog;
SELECT * FROM pw.mx_labels;
SELECT domain, attempts, last_error FROM pw.mx_failing;

-- max_domains 0: cached labels reach untagged carriers, nothing is looked up
SELECT looked_up, tagged, "none", invalid, failed, carriers_updated FROM pw.mx_tag(0);
SELECT id, mx_provider FROM fmcsa_carriers ORDER BY id;
SELECT untagged_carriers, untagged_domains, unresolved_domains FROM pw.mx_backlog;

-- bad arguments
SELECT * FROM pw.mx_tag(-1);
SELECT * FROM pw.resolve_mx('no_such host');
SET pw_deliverability.dns_servers = 'not a server list!';

-- the tagging index
SELECT pw.create_tagging_index();
SELECT indexdef FROM pg_indexes WHERE indexname = 'fmcsa_carriers_pw_untagged_domain';
-- with statistics of the domain expression, collected
SELECT s.stxname, pg_get_statisticsobjdef_expressions(s.oid) AS expressions,
       (SELECT count(*) FROM pg_statistic_ext_data d WHERE d.stxoid = s.oid) AS collected
  FROM pg_statistic_ext s WHERE s.stxrelid = 'fmcsa_carriers'::regclass;
SELECT pw.create_tagging_index();   -- again: nothing new
SELECT count(*) FROM pg_statistic_ext WHERE stxrelid = 'fmcsa_carriers'::regclass;

DROP TABLE fmcsa_carriers;
DELETE FROM pw.mx_domains;
