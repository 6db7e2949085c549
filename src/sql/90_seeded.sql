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

-- The seeded configuration tables: each has the seeded column (its shipped
-- rows inserted with seeded = true) and is dumped WHERE NOT seeded, except
-- pw.profiles, dumped whole (src/sql/00_schema.sql).
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.verify_results
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.verify_results
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.operator_classes
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.operator_classes
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.operators
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.operators
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.mx_suffix_rules
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.mx_suffix_rules
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.blocked_domains
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.blocked_domains
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.carriers_config
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.carriers_config
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.profiles
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.profiles
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.warmup_ramp
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.warmup_ramp
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.bounce_categories
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.bounce_categories
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();
CREATE TRIGGER aa_config_row_insert BEFORE INSERT ON pw.bounce_rules
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_insert();
CREATE TRIGGER zz_config_row_update BEFORE UPDATE ON pw.bounce_rules
    FOR EACH ROW EXECUTE FUNCTION pw.config_row_update();
