-- Bad input gets a clear error when it is stored, not a failure later
-- (issue 12 item 7)
SELECT relation AS saved_relation FROM pw.carriers_config \gset

-- an address longer than RFC 5321 allows: a clear error, not an index row
-- size error; 254 bytes is still an address
SELECT pw.suppress(repeat('x', 1000000) || '@example.com', 'too long');
SELECT pw.suppress(repeat('x', 242) || '@example.com', 'just fits');
SELECT octet_length(email) FROM pw.suppressions WHERE reason = 'just fits';

-- profile values every selection would fail on are refused (terse: the
-- failing row holds today's date)
\set VERBOSITY terse
INSERT INTO pw.profiles (name, warmup_start) VALUES ('inf', 'infinity');
INSERT INTO pw.profiles (name, warmup_start) VALUES ('ninf', '-infinity');
INSERT INTO pw.profiles (name, brake_window_days) VALUES ('wide', 2000000000);
INSERT INTO pw.profiles (name, brake_window_days) VALUES ('year', 366);
\set VERBOSITY default
SELECT brake_window_days FROM pw.profiles WHERE name = 'year';

-- pw.daily_cap() of an unknown profile is NULL whatever the operator's class
SELECT pw.daily_cap('nosuch', 'mx:host1.net', 40) AS default_class,
       pw.daily_cap('nosuch', 'google', 40) AS big,
       pw.daily_cap('nosuch', 'mx:yahoodns.net', 40) AS consumer;
-- a known profile is unchanged
SELECT pw.daily_cap('default', 'mx:host1.net', 40) AS default_class,
       pw.daily_cap('default', 'google', 40) AS big;

-- the sent column must be timestamptz, as the carriers contract says
CREATE TABLE public.chk_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                  mx_provider text, sent_ts timestamp, sent_date date,
                                  sent_tz timestamptz);
UPDATE pw.carriers_config SET relation = 'public.chk_carriers';
SELECT sent_column_checked FROM pw.carriers_check('sent_ts');
SELECT sent_column_checked FROM pw.carriers_check('sent_date');
SELECT sent_column_checked FROM pw.carriers_check('sent_tz');
-- refused when set (issue 18), and by the selection if the column's type
-- changes later
UPDATE pw.profiles SET sent_column = 'sent_ts' WHERE name = 'year';
UPDATE pw.profiles SET sent_column = 'sent_tz' WHERE name = 'year';
ALTER TABLE public.chk_carriers ALTER COLUMN sent_tz TYPE timestamp;
SELECT count(*) FROM pw.select_sendable_carriers(10, 'year');


DELETE FROM pw.suppressions WHERE reason = 'just fits';
DELETE FROM pw.profiles WHERE name = 'year';
-- back to the saved relation (unchecked: its table may not exist now)
SET session_replication_role = replica;
UPDATE pw.carriers_config SET relation = :'saved_relation';
RESET session_replication_role;
DROP TABLE public.chk_carriers;
