
-- ---------------------------------------------------------------------------
-- Last: say what will not work without the library preloaded
-- ---------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT pw.library_preloaded() THEN
        RAISE WARNING 'pw_deliverability is not in shared_preload_libraries'
            USING DETAIL = 'Everything works but the background tagger (no tagger runs), '
                           'pw.mx_tag_progress (always empty), DROP EXTENSION removing the '
                           'extension''s indexes on the carriers table by itself, and the check of '
                           'pw_deliverability.* settings in postgresql.conf at server start.',
                  HINT = 'Add pw_deliverability to shared_preload_libraries and restart the server; '
                         'SELECT * FROM pw.health() lists what else needs attention.';
    END IF;
END
$$;
