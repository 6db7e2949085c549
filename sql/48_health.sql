-- pw.health(), pw.carrier_objects(), pw.drop_carrier_objects()
\getenv srcdir PWD
\set fixtures :srcdir '/test/fixtures/maillog'

CREATE TABLE public.health_carriers (
    id                  bigint PRIMARY KEY,
    email               text,
    email_verify_result text,
    mx_provider         text,
    listmonk_sent_at    timestamptz,
    verify_sent_at      timestamptz
);
INSERT INTO public.health_carriers (id, email, email_verify_result)
SELECT i, 'h' || i || '@d' || (i % 5) || '.com', 'smtp_valid' FROM generate_series(1, 50) AS i;
SELECT relation AS saved_relation FROM pw.carriers_config \gset
UPDATE pw.carriers_config SET relation = 'public.health_carriers';

-- without indexes, schedules, tagging runs or a mail-log directory
SELECT "check", status FROM pw.health() ORDER BY 1;
SELECT hint FROM pw.health() WHERE "check" = 'profile default';
SELECT detail, hint FROM pw.health() WHERE "check" IN ('tagging index', 'mail-log directory') ORDER BY 1;

-- with them
SELECT pw.create_tagging_index(), pw.create_writeback_index();
SELECT count(*) FROM pw.create_selection_indexes('default');
SELECT count(*) FROM pw.create_selection_indexes('verify');
SET pw_deliverability.maillog_directory = :'fixtures';
SELECT "check", status FROM pw.health()
 WHERE "check" IN ('profile default', 'profile verify', 'tagging index', 'writeback index',
                   'mail-log directory') ORDER BY 1;
SET pw_deliverability.maillog_directory = '/nonexistent/pw';
SELECT status, detail FROM pw.health() WHERE "check" = 'mail-log directory';
RESET pw_deliverability.maillog_directory;

-- a mail log that was never ingested
INSERT INTO pw.maillogs (path) VALUES ('never.log');
SELECT status, detail, hint FROM pw.health() WHERE "check" = 'ingest never.log';
DELETE FROM pw.maillogs;

-- the extension's objects on the carriers table, and dropping them
SELECT object_type, regexp_replace(object_name, '_[0-9a-f]{8}_', '_X_') AS object_name, relation
  FROM pw.carrier_objects();
SELECT pw.drop_carrier_objects();
SELECT count(*) FROM pw.carrier_objects();

-- a broken contract fails its checks, with the contract's hint
SET session_replication_role = replica;
UPDATE pw.carriers_config SET relation = 'public.no_such_carriers';
RESET session_replication_role;
SELECT "check", status, detail, hint FROM pw.health() WHERE "check" IN ('carriers contract', 'profile default');

SET session_replication_role = replica;
UPDATE pw.carriers_config SET relation = :'saved_relation';
RESET session_replication_role;
DROP TABLE public.health_carriers;
