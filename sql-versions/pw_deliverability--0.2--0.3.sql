-- pw_deliverability 0.2 -> 0.3: only what changed; the objects' final shape
-- is in src/sql/.
\echo Use "ALTER EXTENSION pw_deliverability UPDATE TO '0.3'" to load this file. \quit

-- a mail log's state is found by its file's identity too (issue 12 item 4)
CREATE INDEX maillog_files_identity ON pw.maillog_files (dev, inode);

-- pw.maillog_profile() (security definer) is no longer executable by PUBLIC;
-- the ingest calls it without an EXECUTE check (issue 12 item 7)
REVOKE ALL ON FUNCTION pw.maillog_profile(text, text) FROM PUBLIC;

-- profiles no selection could use: an infinite warmup_start, a brake window
-- beyond a year (issue 12 item 7)
ALTER TABLE pw.profiles
    ADD CONSTRAINT profiles_warmup_start_finite CHECK (isfinite(warmup_start)),
    ADD CONSTRAINT profiles_brake_window_days_max CHECK (brake_window_days <= 366);

-- The daily cap of one operator (label) under a profile on a warmup day;
-- NULL for a profile that does not exist.
CREATE OR REPLACE FUNCTION pw.daily_cap(profile text, label text, warmup_day integer)
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
             ELSE 0 END)
     WHERE EXISTS (SELECT 1 FROM pw.profiles p WHERE p.name = daily_cap.profile);
END;

-- pw.suppress(): an address longer than RFC 5321 allows is a clear error, not
-- an index row size error (issue 12 item 7)
-- Adds an address to the suppression list (an opt-out, from any sending
-- domain).  True when it was not suppressed yet.
CREATE OR REPLACE FUNCTION pw.suppress(email text, reason text)
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
    -- PW_EMAIL_MAX_LEN (src/common/pw_common.h): RFC 5321's limit
    IF octet_length(pw.normalize_email(email)) > 254 THEN
        RAISE EXCEPTION 'cannot suppress an address of % bytes: longer than RFC 5321 allows',
                        octet_length(pw.normalize_email(email))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'An email address has at most 254 bytes.';
    END IF;
    INSERT INTO pw.suppressions (email, reason, source)
    VALUES (pw.normalize_email(email), reason, 'pw.suppress')
    ON CONFLICT ON CONSTRAINT suppressions_pkey DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added > 0;
END
$$;
