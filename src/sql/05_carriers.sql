
-- ---------------------------------------------------------------------------
-- The carriers contract, checked
-- ---------------------------------------------------------------------------

-- The configured carriers relation and its columns as the catalog has them
-- (identifiers quoted for SQL), or an error naming what is missing.  With a
-- sent_column, that column is checked too.
CREATE FUNCTION pw.carriers_check(sent_column name DEFAULT NULL)
RETURNS TABLE (relation regclass, id_column text, email_column text,
               result_column text, mx_column text, sent_column_checked text)
LANGUAGE c STABLE
AS 'MODULE_PATHNAME', 'pw_carriers_check';

-- The contract checked when its configuration changes, by the same code as
-- pw.carriers_check(): a carriers_config row naming a missing relation or
-- column is refused (with a warning for each profile whose sent column the
-- relation lacks), as is a profile whose sent column the configured relation
-- lacks.  Not checked inside extension scripts, nor with
-- session_replication_role = replica or pg_restore --disable-triggers.
CREATE FUNCTION pw.carriers_config_check() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'pw_carriers_config_check';

CREATE FUNCTION pw.profiles_sent_column_check() RETURNS trigger
LANGUAGE c
AS 'MODULE_PATHNAME', 'pw_profiles_sent_column_check';

CREATE TRIGGER carriers_config_check
    AFTER INSERT OR UPDATE ON pw.carriers_config
    FOR EACH ROW EXECUTE FUNCTION pw.carriers_config_check();

CREATE TRIGGER profiles_sent_column_check
    AFTER INSERT OR UPDATE OF sent_column ON pw.profiles
    FOR EACH ROW EXECUTE FUNCTION pw.profiles_sent_column_check();
