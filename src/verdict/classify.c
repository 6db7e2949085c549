/*-------------------------------------------------------------------------
 *
 * classify.c
 *	  The category of a bounce or deferral: one Hyperscan scan of each part
 *	  of the reply sets a bit for every rule whose pattern of that part
 *	  matches; the first rule, in order, whose every part matches names the
 *	  category.  pw.classify_bounce() and pw.bounce_reply_parts().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hs.h>

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "verdict.h"

PG_FUNCTION_INFO_V1(pw_classify_bounce);
PG_FUNCTION_INFO_V1(pw_bounce_reply_parts);

#define EXPIRED_PREFIX VERDICT_EXPIRY_REASON
#define EXPIRED_LEN ((int) strlen(EXPIRED_PREFIX))
#define EXPIRED_AFTER VERDICT_EXPIRY_AFTER
#define EXPIRED_AFTER_LEN ((int) strlen(EXPIRED_PREFIX EXPIRED_AFTER))

/* Sets the bit of the rule that matched (a Hyperscan match callback). */
static int
SetMatchBit(unsigned int id, unsigned long long from, unsigned long long to,
			unsigned int flags, void *ctx)
{
	uint64	   *bits = (uint64 *) ctx;

	bits[id / 64] |= UINT64CONST(1) << (id % 64);
	return 0;
}

/* Scans one part (len bytes) with a database into its bitset. */
static void
ScanPart(const VerdictRuleset *rs, void *db, const char *s, int len, uint64 *bits)
{
	memset(bits, 0, rs->words * sizeof(uint64));
	if (db == NULL || s == NULL)
		return;
	if (hs_scan((const hs_database_t *) db, s, (unsigned int) len, 0,
				(hs_scratch_t *) rs->scratch, SetMatchBit, bits) != HS_SUCCESS)
		elog(ERROR, "Hyperscan failed to scan a bounce reply");
}

/*
 * The matches of a status (part 0) or code (part 1): kept from an earlier
 * scan of the same string, or scanned (and kept while there is room).
 */
static const uint64 *
PartMatches(const VerdictRuleset *rs, int part, void *db, const char *s, int len,
			uint64 *scratch_bits)
{
	VerdictCache *c = rs->cache;

	if (s == NULL || len > VERDICT_KEY_MAX)
	{
		ScanPart(rs, db, s, len, scratch_bits);
		return scratch_bits;
	}
	for (int k = 0; k < c->n[part]; k++)
	{
		VerdictPartMatch *m = &c->parts[part][k];

		if (memcmp(m->key, s, len) == 0 && m->key[len] == '\0')
			return m->bits;
	}
	ScanPart(rs, db, s, len, scratch_bits);
	if (c->n[part] < VERDICT_CACHE_SIZE)
	{
		VerdictPartMatch *m = &c->parts[part][c->n[part]++];

		memcpy(m->key, s, len);
		m->key[len] = '\0';
		memcpy(m->bits, scratch_bits, rs->words * sizeof(uint64));
	}
	return scratch_bits;
}

/* Whether bit i of a bitset is set. */
static inline bool
BitIsSet(const uint64 *bits, int i)
{
	return (bits[i / 64] >> (i % 64)) & 1;
}

/*
 * The category (an index into rs->cats) of a bounce or deferral with
 * enhanced status dsn (NULL: the one in the reply, if any) and reply or
 * reason text (may be NULL).
 */
int
VerdictClassify(const VerdictRuleset *rs, const char *dsn, int dsn_len,
				const char *reply, int reply_len)
{
	VerdictReply parts;
	const uint64 *status_bits;
	const uint64 *code_bits;
	uint64	   *reply_bits = rs->bits + 2 * rs->words;

	/* an expiry as the ingest records it: judged by the last deferral */
	if (reply != NULL && reply_len >= EXPIRED_LEN &&
		memcmp(reply, EXPIRED_PREFIX, EXPIRED_LEN) == 0)
	{
		if (reply_len >= EXPIRED_AFTER_LEN &&
			memcmp(reply, EXPIRED_PREFIX EXPIRED_AFTER, EXPIRED_AFTER_LEN) == 0)
			return VerdictExpiryCategory(rs, VerdictClassify(rs, dsn, dsn_len,
															 reply + EXPIRED_AFTER_LEN,
															 reply_len - EXPIRED_AFTER_LEN));
		return VerdictExpiryCategory(rs, -1);
	}
	if (reply != NULL)
		VerdictSplitReply(reply, reply_len, &parts);
	else
		memset(&parts, 0, sizeof(parts));
	if (dsn == NULL)
	{
		dsn = parts.status;
		dsn_len = parts.status_len;
	}
	status_bits = PartMatches(rs, 0, rs->status_db, dsn, dsn_len, rs->bits);
	code_bits = PartMatches(rs, 1, rs->code_db, parts.code, 3, rs->bits + rs->words);
	ScanPart(rs, rs->reply_db, parts.text, parts.text_len, reply_bits);
	for (int i = 0; i < rs->nrules; i++)
	{
		const VerdictRule *r = &rs->rules[i];

		if ((r->has_status && !BitIsSet(status_bits, i)) ||
			(r->has_code && !BitIsSet(code_bits, i)) ||
			(r->has_reply && !BitIsSet(reply_bits, i)) ||
			(r->stage != STAGE_ANY && r->stage != parts.stage))
			continue;
		return r->category;
	}
	return rs->other;
}

/*
 * The category of an expiry whose recipient's last deferral had category
 * last_deferral (-1: none known): the MX never answered, the address's
 * fault; a deferral that was the address's fault stays so; anything else
 * (reputation, rate limits, greylisting, ...) is not the address's fault.
 */
int
VerdictExpiryCategory(const VerdictRuleset *rs, int last_deferral)
{
	if (last_deferral == rs->routing)
		return rs->unreachable;
	if (last_deferral >= 0 && rs->cats[last_deferral].address_fault)
		return last_deferral;
	return rs->expired;
}

/* pw.classify_bounce(dsn text, reply text) RETURNS text */
Datum
pw_classify_bounce(PG_FUNCTION_ARGS)
{
	const VerdictRuleset *rs;
	text	   *dsn = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);
	text	   *reply = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	int			cat;

	if (dsn == NULL && reply == NULL)
		PG_RETURN_NULL();
	rs = VerdictRules();
	cat = VerdictClassify(rs,
						  dsn ? VARDATA_ANY(dsn) : NULL, dsn ? VARSIZE_ANY_EXHDR(dsn) : 0,
						  reply ? VARDATA_ANY(reply) : NULL, reply ? VARSIZE_ANY_EXHDR(reply) : 0);
	PG_RETURN_TEXT_P(cstring_to_text(rs->cats[cat].name));
}

/* pw.bounce_reply_parts(reply text): code, reply_status, stage, remote_reply */
Datum
pw_bounce_reply_parts(PG_FUNCTION_ARGS)
{
	text	   *reply = PG_GETARG_TEXT_PP(0);
	VerdictReply parts;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	const char *stage;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	VerdictSplitReply(VARDATA_ANY(reply), VARSIZE_ANY_EXHDR(reply), &parts);
	stage = VerdictStageName(parts.stage);
	nulls[0] = parts.code == NULL;
	if (parts.code)
		values[0] = PointerGetDatum(cstring_to_text_with_len(parts.code, 3));
	nulls[1] = parts.status == NULL;
	if (parts.status)
		values[1] = PointerGetDatum(cstring_to_text_with_len(parts.status, parts.status_len));
	nulls[2] = stage == NULL;
	if (stage)
		values[2] = PointerGetDatum(cstring_to_text(stage));
	values[3] = PointerGetDatum(cstring_to_text_with_len(parts.text, parts.text_len));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
