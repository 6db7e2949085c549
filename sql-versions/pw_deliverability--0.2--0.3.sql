-- pw_deliverability 0.2 -> 0.3: only what changed; the objects' final shape
-- is in src/sql/.
\echo Use "ALTER EXTENSION pw_deliverability UPDATE TO '0.3'" to load this file. \quit
