/*-------------------------------------------------------------------------
 *
 * token.c
 *	  VERP envelope senders and opt-out tokens.
 *
 *	  VERP (Postfix's variable envelope return path): the recipient
 *	  user@domain of a message is encoded in its envelope sender as
 *	  prefix+user=domain@origin, so that a bounce returned to that address
 *	  names the recipient it is about.  The two delimiters are the setting
 *	  pw_deliverability.verp_delimiters (Postfix's default_verp_delimiters).
 *
 *	  An opt-out token names one sent message: base32 (RFC 4648, lower case,
 *	  unpadded) of the message's id, 8 bytes big-endian, followed by the first
 *	  8 bytes of HMAC-SHA256(key, "pw-optout:<id>:<normalised address>").
 *	  It is short enough for an address's local part (unsubscribe+TOKEN@...)
 *	  and safe in a URL.  The key is the one row of pw.token_key, made at
 *	  CREATE EXTENSION from the server's strong random source, readable only
 *	  by its owner and dumped by pg_dump so that tokens survive a restore.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "common/pw_common.h"
#include "common/token.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_verp_address);
PG_FUNCTION_INFO_V1(pw_verp_recipient);
PG_FUNCTION_INFO_V1(pw_optout_token);
PG_FUNCTION_INFO_V1(pw_optout_token_message);
PG_FUNCTION_INFO_V1(pw_optout_token_valid);

/* Bytes of the message id and of the MAC in a token */
#define TOKEN_ID_BYTES 8
#define TOKEN_MAC_BYTES 8
#define TOKEN_BYTES (TOKEN_ID_BYTES + TOKEN_MAC_BYTES)

static const char base32_alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

/* pw_deliverability.verp_delimiters */
static char *verp_delimiters = NULL;

/* The key, read once per statement */
static uint8 *token_key = NULL;
static int	token_key_len = 0;
static LocalTransactionId token_key_lxid = InvalidLocalTransactionId;
static CommandId token_key_cid = InvalidCommandId;

/*
 * Check hook of verp_delimiters: two different printable characters; the
 * second replaces the recipient's @, so it cannot be one a domain holds.
 */
static bool
TokenCheckDelimiters(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;

	if (v != NULL && strlen(v) == 2 && v[0] != v[1])
	{
		bool		ok = true;

		for (int i = 0; i < 2; i++)
			if (!(v[i] > ' ' && v[i] < 0x7f) || strchr("@<>\"\\", v[i]) != NULL)
				ok = false;
		if (isalnum((unsigned char) v[1]) || v[1] == '.' || v[1] == '-')
			ok = false;
		if (ok)
			return true;
	}
	GUC_check_errdetail("VERP delimiters are two different printable characters other than @ < > \" \\; the second cannot be a letter, a digit, a dot or a hyphen (it replaces the @ before a domain).");
	GUC_check_errhint("Postfix's default is \"+=\" (default_verp_delimiters).");
	return false;
}

/* Defines the VERP setting. */
void
PwTokenInit(void)
{
	DefineCustomStringVariable(PW_GUC_PREFIX ".verp_delimiters",
							   "Sets the two VERP delimiters: the first follows the return path's prefix, the second replaces the recipient's @.",
							   "As Postfix's default_verp_delimiters: prefix+user=domain@origin with \"+=\".",
							   &verp_delimiters, "+=",
							   PGC_SUSET, 0, TokenCheckDelimiters, NULL, NULL);
}

/* The delimiters in force (the default before the module's GUCs exist). */
static const char *
TokenDelimiters(void)
{
	return verp_delimiters != NULL ? verp_delimiters : "+=";
}

/* Whether s is a non-empty string without spaces, controls or '@'. */
static bool
TokenPlainPart(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) s[i] <= ' ' || s[i] == '@' || s[i] == 0x7f)
			return false;
	return true;
}

/* Envelope sender prefix+user=domain@origin naming recipient (palloc'd). */
char *
PwVerpEncode(const char *prefix, const char *origin_domain, const char *recipient)
{
	const char *delims = TokenDelimiters();
	const char *at = strrchr(recipient, '@');
	StringInfoData buf;
	char	   *domain;

	if (at == NULL || !TokenPlainPart(recipient, at - recipient) ||
		!TokenPlainPart(at + 1, strlen(at + 1)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot encode \"%s\" in a VERP address", recipient),
				 errdetail("A recipient must be local-part@domain without spaces.")));
	if (!TokenPlainPart(prefix, strlen(prefix)) || strchr(prefix, delims[0]) != NULL ||
		!TokenPlainPart(origin_domain, strlen(origin_domain)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid VERP return path \"%s@%s\"", prefix, origin_domain),
				 errhint("The prefix must be a non-empty local part without \"%c\" and the domain a non-empty domain.",
						 delims[0])));
	domain = str_tolower(at + 1, strlen(at + 1), C_COLLATION_OID);
	initStringInfo(&buf);
	appendStringInfo(&buf, "%s%c", prefix, delims[0]);
	appendBinaryStringInfo(&buf, recipient, at - recipient);
	appendStringInfo(&buf, "%c%s@%s", delims[1], domain, origin_domain);
	return buf.data;
}

/* The recipient a VERP address names (palloc'd), or NULL if it names none. */
char *
PwVerpDecode(const char *address, const char *prefix)
{
	const char *delims = TokenDelimiters();
	const char *at = strrchr(address, '@');
	const char *first;
	const char *second;
	StringInfoData buf;

	if (at == NULL)
		return NULL;
	first = memchr(address, delims[0], at - address);
	if (first == NULL || first == address)
		return NULL;
	if (prefix != NULL &&
		((size_t) (first - address) != strlen(prefix) ||
		 pg_strncasecmp(address, prefix, first - address) != 0))
		return NULL;
	/* the domain cannot hold the second delimiter: the last one is the @ */
	second = NULL;
	for (const char *p = first + 1; p < at; p++)
		if (*p == delims[1])
			second = p;
	if (second == NULL || second == first + 1 || second + 1 == at)
		return NULL;
	if (!TokenPlainPart(first + 1, second - first - 1) ||
		!TokenPlainPart(second + 1, at - second - 1))
		return NULL;
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, first + 1, second - first - 1);
	appendStringInfoChar(&buf, '@');
	appendBinaryStringInfo(&buf, second + 1, at - second - 1);
	return buf.data;
}

/* Reads the key of pw.token_key into token_key (once per statement). */
static void
TokenLoadKey(void)
{
	Oid			nsp;
	Oid			relid;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	if (token_key != NULL && token_key_lxid == MyProc->lxid &&
		token_key_cid == GetCurrentCommandId(false))
		return;
	nsp = get_namespace_oid(PW_SCHEMA, false);
	relid = get_relname_relid("token_key", nsp);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table %s.token_key does not exist", PW_SCHEMA),
				 errhint("Update the extension: ALTER EXTENSION pw_deliverability UPDATE.")));
	/* the key is the extension's own: read it whatever the caller may read */
	rel = table_open(relid, AccessShareLock);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, 2, RelationGetDescr(rel), &isnull);
		bytea	   *key;

		if (isnull)
			continue;
		key = DatumGetByteaPP(d);
		if (token_key != NULL)
			pfree(token_key);
		token_key_len = VARSIZE_ANY_EXHDR(key);
		token_key = MemoryContextAlloc(TopMemoryContext, Max(token_key_len, 1));
		memcpy(token_key, VARDATA_ANY(key), token_key_len);
		found = true;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!found || token_key_len < PW_TOKEN_KEY_MIN_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s.token_key holds no key of at least %d bytes", PW_SCHEMA,
						PW_TOKEN_KEY_MIN_LEN),
				 errhint("Restore its row, or set a new key (tokens already sent stop working): INSERT INTO pw.token_key (key) SELECT sha256(gen_random_uuid()::text::bytea || gen_random_uuid()::text::bytea).")));
	token_key_lxid = MyProc->lxid;
	token_key_cid = GetCurrentCommandId(false);
}

/* The MAC of (message_id, email) into mac (TOKEN_MAC_BYTES). */
static void
TokenMac(int64 message_id, const char *email, uint8 *mac)
{
	char	   *normal = PwNormalizeEmail(email, strlen(email), C_COLLATION_OID);
	char	   *text = psprintf("pw-optout:" INT64_FORMAT ":%s", message_id, normal);
	uint8		full[PG_SHA256_DIGEST_LENGTH];
	pg_hmac_ctx *ctx;

	TokenLoadKey();
	ctx = pg_hmac_create(PG_SHA256);
	if (ctx == NULL)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (pg_hmac_init(ctx, token_key, token_key_len) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) text, strlen(text)) < 0 ||
		pg_hmac_final(ctx, full, sizeof(full)) < 0)
	{
		const char *err = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute an opt-out token: %s", err)));
	}
	pg_hmac_free(ctx);
	memcpy(mac, full, TOKEN_MAC_BYTES);
	pfree(normal);
	pfree(text);
}

/* Base32 of TOKEN_BYTES bytes into out (PW_OPTOUT_TOKEN_LEN + 1). */
static void
TokenBase32(const uint8 *bytes, char *out)
{
	uint32		acc = 0;
	int			bits = 0;
	int			n = 0;

	for (int i = 0; i < TOKEN_BYTES; i++)
	{
		acc = (acc << 8) | bytes[i];
		bits += 8;
		while (bits >= 5)
		{
			out[n++] = base32_alphabet[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	if (bits > 0)
		out[n++] = base32_alphabet[(acc << (5 - bits)) & 31];
	out[n] = '\0';
	Assert(n == PW_OPTOUT_TOKEN_LEN);
}

/* Bytes of a base32 token (any case); false if it is not one. */
static bool
TokenUnBase32(const char *token, uint8 *bytes)
{
	uint32		acc = 0;
	int			bits = 0;
	int			n = 0;

	if (token == NULL || strlen(token) != PW_OPTOUT_TOKEN_LEN)
		return false;
	for (int i = 0; i < PW_OPTOUT_TOKEN_LEN; i++)
	{
		char		c = pg_ascii_tolower((unsigned char) token[i]);
		const char *pos = c != '\0' ? strchr(base32_alphabet, c) : NULL;

		if (pos == NULL)
			return false;
		acc = (acc << 5) | (uint32) (pos - base32_alphabet);
		bits += 5;
		if (bits >= 8)
		{
			bytes[n++] = (acc >> (bits - 8)) & 0xff;
			bits -= 8;
		}
	}
	/* 130 bits carry 128: the two left over must be zero */
	return n == TOKEN_BYTES && (acc & ((1u << bits) - 1)) == 0;
}

/* The opt-out token of one sent message (palloc'd). */
char *
PwOptoutToken(int64 message_id, const char *email)
{
	uint8		bytes[TOKEN_BYTES];
	char	   *out = palloc(PW_OPTOUT_TOKEN_LEN + 1);
	uint64		id = (uint64) message_id;

	for (int i = 0; i < TOKEN_ID_BYTES; i++)
		bytes[i] = (id >> (8 * (TOKEN_ID_BYTES - 1 - i))) & 0xff;
	TokenMac(message_id, email, bytes + TOKEN_ID_BYTES);
	TokenBase32(bytes, out);
	return out;
}

/* The message id a token names; false if it is not a well-formed token. */
bool
PwOptoutTokenId(const char *token, int64 *message_id)
{
	uint8		bytes[TOKEN_BYTES];
	uint64		id = 0;

	if (!TokenUnBase32(token, bytes))
		return false;
	for (int i = 0; i < TOKEN_ID_BYTES; i++)
		id = (id << 8) | bytes[i];
	*message_id = (int64) id;
	return true;
}

/* Whether token was made for (message_id, email) with this database's key. */
bool
PwOptoutTokenVerify(const char *token, int64 message_id, const char *email)
{
	uint8		bytes[TOKEN_BYTES];
	uint8		mac[TOKEN_MAC_BYTES];
	int64		id;
	uint8		diff = 0;

	if (!PwOptoutTokenId(token, &id) || id != message_id)
		return false;
	TokenUnBase32(token, bytes);
	TokenMac(message_id, email, mac);
	for (int i = 0; i < TOKEN_MAC_BYTES; i++)
		diff |= mac[i] ^ bytes[TOKEN_ID_BYTES + i];
	return diff == 0;
}

/* pw.verp_address(recipient, prefix, origin_domain) */
Datum
pw_verp_address(PG_FUNCTION_ARGS)
{
	char	   *recipient = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *prefix = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *origin = text_to_cstring(PG_GETARG_TEXT_PP(2));

	PG_RETURN_TEXT_P(cstring_to_text(PwVerpEncode(prefix, origin, recipient)));
}

/* pw.verp_recipient(address, prefix DEFAULT NULL) */
Datum
pw_verp_recipient(PG_FUNCTION_ARGS)
{
	char	   *address;
	char	   *prefix = NULL;
	char	   *recipient;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	address = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!PG_ARGISNULL(1))
		prefix = text_to_cstring(PG_GETARG_TEXT_PP(1));
	recipient = PwVerpDecode(address, prefix);
	if (recipient == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(recipient));
}

/* pw.optout_token(message_id, email) */
Datum
pw_optout_token(PG_FUNCTION_ARGS)
{
	char	   *email = text_to_cstring(PG_GETARG_TEXT_PP(1));

	PG_RETURN_TEXT_P(cstring_to_text(PwOptoutToken(PG_GETARG_INT64(0), email)));
}

/* pw.optout_token_message(token) */
Datum
pw_optout_token_message(PG_FUNCTION_ARGS)
{
	char	   *token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		id;

	if (!PwOptoutTokenId(token, &id))
		PG_RETURN_NULL();
	PG_RETURN_INT64(id);
}

/* pw.optout_token_valid(token, message_id, email) */
Datum
pw_optout_token_valid(PG_FUNCTION_ARGS)
{
	char	   *token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *email = text_to_cstring(PG_GETARG_TEXT_PP(2));

	PG_RETURN_BOOL(PwOptoutTokenVerify(token, PG_GETARG_INT64(1), email));
}
