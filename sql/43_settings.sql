-- Settings and configuration rows checked when they are set, descriptions
-- of every object (issue 18)

-- dns_servers: numeric addresses with optional ports (one parser with the
-- resolver); a host name, a bad port or an empty entry is refused at once
SET pw_deliverability.dns_servers = 'dns.local:53';
SET pw_deliverability.dns_servers = '127.0.0.1:0';
SET pw_deliverability.dns_servers = '127.0.0.1:53x';
SET pw_deliverability.dns_servers = '127.0.0.1:70000';
SET pw_deliverability.dns_servers = '127.0.0.1:5353,';
SET pw_deliverability.dns_servers = '[::1';
SET pw_deliverability.dns_servers = '[localhost]:53';
SET pw_deliverability.dns_servers = '127.0.0.1:5353, [::1]:53, ::1, 10.0.0.1';
SHOW pw_deliverability.dns_servers;
-- ALTER SYSTEM runs the check too (nothing is written)
ALTER SYSTEM SET pw_deliverability.dns_servers = 'dns.local:53';
RESET pw_deliverability.dns_servers;
SHOW pw_deliverability.dns_servers;

-- maillog_directory: a directory that does not exist, or a file, is taken
-- (it may be created later) with a warning; a readable directory without one
SET pw_deliverability.maillog_directory = '/nonexistent/pw_deliverability';
SHOW pw_deliverability.maillog_directory;
SET pw_deliverability.maillog_directory = '/dev/null';
SET pw_deliverability.maillog_directory = '/';
RESET pw_deliverability.maillog_directory;

-- every setting's description is a sentence
SELECT count(*) > 10 AS settings FROM pg_settings WHERE name LIKE 'pw\_deliverability.%';
SELECT name, short_desc FROM pg_settings
 WHERE name LIKE 'pw\_deliverability.%' AND short_desc !~ '^[A-Z][^\n]* [^\n]*\.$';

-- the carriers contract is checked when pw.carriers_config changes
SELECT relation AS saved_relation FROM pw.carriers_config \gset
CREATE TABLE public.set_carriers (id bigint, email text, email_verify_result text,
                                  mx_provider text, listmonk_sent_at timestamptz,
                                  verify_sent_at timestamptz, sent_ts timestamp);
UPDATE pw.carriers_config SET relation = 'public.set_carriers';
UPDATE pw.carriers_config SET relation = 'crm.carrier';
UPDATE pw.carriers_config SET relation = 'set_carriers';
UPDATE pw.carriers_config SET email_column = 'mail';
UPDATE pw.carriers_config SET mx_column = 'sent_ts';
SELECT relation, email_column, mx_column FROM pw.carriers_config;

-- a profile's sent column is checked against the carriers relation
UPDATE pw.profiles SET sent_column = 'nonexistent' WHERE name = 'default';
UPDATE pw.profiles SET sent_column = 'sent_ts' WHERE name = 'default';
INSERT INTO pw.profiles (name, sent_column) VALUES ('p18', 'nonexistent');
INSERT INTO pw.profiles (name, sent_column) VALUES ('p18', 'listmonk_sent_at');
-- changing other columns does not check the sent column again
UPDATE pw.profiles SET note = 'issue 18' WHERE name = 'p18';
SELECT name, sent_column, note FROM pw.profiles WHERE name IN ('default', 'p18') ORDER BY name;

-- a relation without the profiles' sent columns is taken, with a warning for
-- each profile
CREATE TABLE public.set_carriers2 (id bigint, email text, email_verify_result text,
                                   mx_provider text, listmonk_sent_at timestamp);
UPDATE pw.carriers_config SET relation = 'public.set_carriers2';
-- without the relation a sent column cannot be checked: a warning says so
DROP TABLE public.set_carriers2;
UPDATE pw.profiles SET sent_column = 'anything' WHERE name = 'p18';

-- no check with session_replication_role = replica (as in a replica or a
-- restore with triggers disabled)
SET session_replication_role = replica;
UPDATE pw.carriers_config SET relation = 'crm.carrier';
SELECT relation FROM pw.carriers_config;
UPDATE pw.carriers_config SET relation = :'saved_relation';
RESET session_replication_role;

DELETE FROM pw.profiles WHERE name = 'p18';
DROP TABLE public.set_carriers;

-- pw.maillog_status is pw.maillog_files without the tail
SELECT attname FROM pg_attribute
 WHERE attrelid = 'pw.maillog_status'::regclass AND attnum > 0 ORDER BY attnum;

-- every table, view, sequence and function of schema pw has a description
SELECT count(*) >= 60 AS objects FROM (
    SELECT oid FROM pg_proc WHERE pronamespace = 'pw'::regnamespace
    UNION ALL
    SELECT oid FROM pg_class WHERE relnamespace = 'pw'::regnamespace
       AND relkind IN ('r', 'p', 'v', 'm', 'f', 'S')) o;
SELECT p.oid::regprocedure::text AS missing_description FROM pg_proc p
 WHERE p.pronamespace = 'pw'::regnamespace AND obj_description(p.oid, 'pg_proc') IS NULL
UNION ALL
SELECT c.oid::regclass::text FROM pg_class c
 WHERE c.relnamespace = 'pw'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
   AND obj_description(c.oid, 'pg_class') IS NULL
ORDER BY 1;
