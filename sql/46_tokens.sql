-- VERP return paths and opt-out tokens
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pw_deliverability;
RESET client_min_messages;

-- VERP: Postfix style, the domain lower-cased, round trip
SELECT pw.verp_address('Jo.Smith@Example.COM', 'bounce', 'burner.example');
SELECT pw.verp_recipient('bounce+Jo.Smith=example.com@burner.example');
SELECT pw.verp_recipient('bounce+Jo.Smith=example.com@burner.example', 'bounce');
SELECT pw.verp_recipient('BOUNCE+a=b.example@burner.example', 'bounce');
-- a local part holding the second delimiter: the last one before @ counts
SELECT pw.verp_recipient(pw.verp_address('a=b+c@d.example', 'r', 'o.example'));
-- not VERP addresses
SELECT pw.verp_recipient(a) IS NULL AS not_verp
  FROM (VALUES ('bounce@burner.example'), ('bounce+@burner.example'),
               ('bounce+user@burner.example'), ('bounce+user=@burner.example'),
               ('+user=example.com@burner.example'), ('no-at-sign'),
               ('bounce+=example.com@burner.example')) v(a);
SELECT pw.verp_recipient('other+user=example.com@burner.example', 'bounce') IS NULL AS wrong_prefix;
SELECT pw.verp_recipient(NULL) IS NULL AS null_in;
-- other delimiters
SET pw_deliverability.verp_delimiters = '-#';
SELECT pw.verp_address('user@example.com', 'bounce', 'burner.example');
SELECT pw.verp_recipient('bounce-user#example.com@burner.example');
RESET pw_deliverability.verp_delimiters;
-- bad input
SELECT pw.verp_address('no-domain', 'bounce', 'burner.example');
SELECT pw.verp_address('user@example.com', 'bad+prefix', 'burner.example');
SET pw_deliverability.verp_delimiters = '+';
SET pw_deliverability.verp_delimiters = '@=';

-- opt-out tokens: 26 base32 characters naming the message, signed with the key
SELECT length(pw.optout_token(42, 'user@example.com')) AS len,
       pw.optout_token(42, 'user@example.com') ~ '^[a-z2-7]{26}$' AS base32;
SELECT pw.optout_token_message(pw.optout_token(42, 'user@example.com')) AS id,
       pw.optout_token_message(pw.optout_token(-1, 'user@example.com')) AS negative,
       pw.optout_token_message(pw.optout_token(9223372036854775807, 'x@y.example')) AS max;
-- the address is normalised; upper-case tokens are read
SELECT pw.optout_token(7, ' User@Example.com') = pw.optout_token(7, 'user@example.com') AS normalised,
       pw.optout_token_valid(upper(pw.optout_token(7, 'user@example.com')), 7, 'user@example.com') AS upper_ok;
SELECT pw.optout_token_valid(pw.optout_token(7, 'user@example.com'), 7, 'user@example.com') AS valid,
       pw.optout_token_valid(pw.optout_token(7, 'user@example.com'), 8, 'user@example.com') AS other_id,
       pw.optout_token_valid(pw.optout_token(7, 'user@example.com'), 7, 'other@example.com') AS other_email;
-- a changed character or a forged id fails
SELECT pw.optout_token_valid(overlay(t placing (CASE WHEN substr(t, 20, 1) = 'a' THEN 'b' ELSE 'a' END) from 20 for 1),
                             7, 'user@example.com') AS tampered
  FROM pw.optout_token(7, 'user@example.com') t;
SELECT pw.optout_token_message(v) IS NULL AS malformed
  FROM (VALUES (''), ('short'), ('aaaaaaaaaaaaaaaaaaaaaaaaa1'), ('aaaaaaaaaaaaaaaaaaaaaaaaab'),
               ('aaaaaaaaaaaaaaaaaaaaaaaaaaa')) m(v);
-- a new key invalidates old tokens; no key is an error with a hint
CREATE TEMP TABLE old_token AS SELECT pw.optout_token(7, 'user@example.com') AS t;
BEGIN;
UPDATE pw.token_key SET key = sha256('another key'::bytea);
SELECT pw.optout_token_valid(t, 7, 'user@example.com') AS valid_after_new_key FROM old_token;
DELETE FROM pw.token_key;
SELECT pw.optout_token(7, 'user@example.com');
ROLLBACK;
SELECT pw.optout_token_valid(t, 7, 'user@example.com') AS valid_again FROM old_token;
-- the key and the token maker are not for PUBLIC
SELECT has_table_privilege('public', 'pw.token_key', 'SELECT') AS public_reads_key,
       has_function_privilege('public', 'pw.optout_token(bigint, text)', 'EXECUTE') AS public_makes_tokens,
       octet_length(key) AS key_bytes FROM pw.token_key;
