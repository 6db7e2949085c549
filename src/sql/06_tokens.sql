-- ---------------------------------------------------------------------------
-- VERP return paths and opt-out tokens (src/common/token.c)
-- ---------------------------------------------------------------------------

-- The key opt-out tokens are signed with: one row, made at CREATE EXTENSION
-- from the server's strong random source (gen_random_uuid()), readable only
-- by the extension's owner; dumped so that tokens already sent survive a
-- restore.
CREATE TABLE pw.token_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key       bytea NOT NULL CHECK (octet_length(key) >= 16),
    created   timestamptz NOT NULL DEFAULT now()
);
-- An inserted key replaces the one there (so that a restore brings the
-- dumped key back over the one CREATE EXTENSION made).
CREATE FUNCTION pw.token_key_replace() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS
$$
BEGIN
    DELETE FROM pw.token_key;
    RETURN NEW;
END
$$;
CREATE TRIGGER token_key_replace BEFORE INSERT ON pw.token_key
    FOR EACH ROW EXECUTE FUNCTION pw.token_key_replace();
INSERT INTO pw.token_key (key)
SELECT pg_catalog.sha256(pg_catalog.convert_to(
           gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8'));
REVOKE ALL ON pw.token_key FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pw.token_key', '');

-- The envelope sender prefix+user=domain@origin_domain that names recipient
-- (Postfix's VERP, delimiters pw_deliverability.verp_delimiters).
CREATE FUNCTION pw.verp_address(recipient text, prefix text, origin_domain text)
RETURNS text
LANGUAGE c STABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_verp_address';

-- The recipient a VERP address names, NULL if it names none (if prefix is
-- given, the address's local part must start with it).
CREATE FUNCTION pw.verp_recipient(address text, prefix text DEFAULT NULL)
RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_verp_recipient';

-- The opt-out token of one sent message (not executable by PUBLIC: whoever
-- can make tokens can opt anyone out).
CREATE FUNCTION pw.optout_token(message_id bigint, email text)
RETURNS text
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'pw_optout_token';
REVOKE ALL ON FUNCTION pw.optout_token(bigint, text) FROM PUBLIC;

-- The message id an opt-out token names, NULL if it is not a well-formed
-- token (its signature is not checked: see pw.optout_token_valid()).
CREATE FUNCTION pw.optout_token_message(token text)
RETURNS bigint
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_optout_token_message';

-- Whether token was made for (message_id, email) with this database's key.
CREATE FUNCTION pw.optout_token_valid(token text, message_id bigint, email text)
RETURNS boolean
LANGUAGE c STABLE STRICT
AS 'MODULE_PATHNAME', 'pw_optout_token_valid';
