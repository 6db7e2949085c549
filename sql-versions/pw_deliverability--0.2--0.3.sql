-- pw_deliverability 0.2 -> 0.3: only what changed; the objects' final shape
-- is in src/sql/.
\echo Use "ALTER EXTENSION pw_deliverability UPDATE TO '0.3'" to load this file. \quit

-- a mail log's state is found by its file's identity too (issue 12 item 4)
CREATE INDEX maillog_files_identity ON pw.maillog_files (dev, inode);
