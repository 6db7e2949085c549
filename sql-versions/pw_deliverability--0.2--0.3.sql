-- pw_deliverability 0.2 -> 0.3: only what changed; the objects' final shape
-- is in src/sql/.
\echo Use "ALTER EXTENSION pw_deliverability UPDATE TO '0.3'" to load this file. \quit

-- a mail log's state is found by its file's identity too (issue 12 item 4)
CREATE INDEX maillog_files_identity ON pw.maillog_files (dev, inode);

-- pw.maillog_profile() (security definer) is no longer executable by PUBLIC;
-- the ingest calls it without an EXECUTE check (issue 12 item 7)
REVOKE ALL ON FUNCTION pw.maillog_profile(text, text) FROM PUBLIC;
