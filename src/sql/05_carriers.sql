
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
