-- ---------------------------------------------------------------------------
-- Shipped defaults and pg_dump
-- ---------------------------------------------------------------------------

-- CREATE EXTENSION seeds the configuration tables with shipped defaults
-- (profiles, ramps, operators, suffix rules, ...).  pg_dump must dump only
-- what the user changed: a restore runs CREATE EXTENSION first, which seeds
-- the defaults again.  Every seeded row carries seeded = true; inserting or
-- updating a row makes it the user's (seeded = false), and only those rows
-- are dumped.  On restore, a dumped row whose key matches a seeded row
-- replaces that row (pw.config_row_insert), so user edits of a shipped
-- default (say the default profile's warmup_start) survive dump/restore.

-- Any update makes the row the user's, except the replacement of a seeded
-- row by pw.config_row_insert(), which keeps the inserted row's flag.
CREATE FUNCTION pw.config_row_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    IF pg_catalog.current_setting('pw_seeded.replacing', true) IS DISTINCT FROM 'on' THEN
        NEW.seeded := false;
    END IF;
    RETURN NEW;
END
$$;

-- A row whose primary key matches a seeded row replaces the seeded row in
-- place (foreign keys to it stay valid); any other row is inserted.
CREATE FUNCTION pw.config_row_insert() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
DECLARE
    keys text;
    cols text;
    n    bigint;
BEGIN
    SELECT string_agg(format('t.%I IS NOT DISTINCT FROM ($1).%I', a.attname, a.attname), ' AND ')
      INTO keys
      FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
     WHERE i.indrelid = TG_RELID AND i.indisprimary;
    SELECT string_agg(format('%I = ($1).%I', a.attname, a.attname), ', ' ORDER BY a.attnum)
      INTO cols
      FROM pg_catalog.pg_attribute a
     WHERE a.attrelid = TG_RELID AND a.attnum > 0 AND NOT a.attisdropped;
    PERFORM pg_catalog.set_config('pw_seeded.replacing', 'on', true);
    EXECUTE format('UPDATE %I.%I t SET %s WHERE t.seeded AND %s',
                   TG_TABLE_SCHEMA, TG_TABLE_NAME, cols, keys)
      USING NEW;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM pg_catalog.set_config('pw_seeded.replacing', 'off', true);
    IF n > 0 THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$;

-- Marks the rows seeded so far, and dumps only the user's rows.
CREATE FUNCTION pw.config_mark_seeded(tbl regclass, dump_all boolean DEFAULT false) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    EXECUTE format('ALTER TABLE %s ADD COLUMN seeded boolean NOT NULL DEFAULT true', tbl);
    EXECUTE format('ALTER TABLE %s ALTER COLUMN seeded SET DEFAULT false', tbl);
    EXECUTE format('CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION pw.config_row_update()', tbl);
    EXECUTE format('CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert()', tbl);
    PERFORM pg_catalog.pg_extension_config_dump(tbl, CASE WHEN dump_all THEN '' ELSE 'WHERE NOT seeded' END);
END
$$;

SELECT pw.config_mark_seeded('pw.verify_results');
SELECT pw.config_mark_seeded('pw.operator_classes');
SELECT pw.config_mark_seeded('pw.operators');
SELECT pw.config_mark_seeded('pw.mx_suffix_rules');
SELECT pw.config_mark_seeded('pw.blocked_domains');
SELECT pw.config_mark_seeded('pw.carriers_config');
-- The shipped profiles start their warmup on the install day: all profiles
-- are dumped, so that a restore keeps their warmup_start.
SELECT pw.config_mark_seeded('pw.profiles', dump_all => true);
SELECT pw.config_mark_seeded('pw.warmup_ramp');
DROP FUNCTION pw.config_mark_seeded(regclass, boolean);
