/*-------------------------------------------------------------------------
 *
 * rules.c
 *	  The rules of pw.bounce_rules compiled for this backend: every pattern
 *	  of a part (enhanced status, SMTP code, reply text) in one Hyperscan
 *	  database, so that one scan of a reply finds every rule it matches.
 *	  The rules are rebuilt on the first use after a change of
 *	  pw.bounce_rules or pw.bounce_categories (their statement triggers
 *	  send a relcache invalidation), never while a caller holds them: the
 *	  invalidation only marks them stale.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hs.h>

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "pw_deliverability.h"
#include "common/spi.h"
#include "verdict.h"

PG_FUNCTION_INFO_V1(pw_bounce_rules_check);
PG_FUNCTION_INFO_V1(pw_bounce_rules_changed);

/* Columns of the rules query */
#define RULE_STATUS		1
#define RULE_CODE		2
#define RULE_REPLY		3
#define RULE_STAGE		4
#define RULE_CATEGORY	5

/* Columns of the categories query */
#define CAT_NAME		1
#define CAT_FAULT		2
#define CAT_BLOCK		3
#define CAT_THROTTLE	4

static VerdictRuleset *current = NULL;
static bool rules_stale = true;
/* the tables the rules are read from: a change of either makes them stale */
static Oid	rules_relid = InvalidOid;
static Oid	categories_relid = InvalidOid;

/* Hyperscan flags of every pattern: case-insensitive, one report a rule */
#define VERDICT_HS_FLAGS (HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH)

/* A pattern as compiled: a whole-field pattern is anchored at both ends. */
static char *
CompiledPattern(const char *pattern, bool anchored)
{
	return anchored ? psprintf("^(?:%s)$", pattern) : pstrdup(pattern);
}

/*
 * Hyperscan's error for a pattern that does not compile (palloc'd), or
 * NULL when it compiles.
 */
char *
VerdictPatternError(const char *pattern, bool anchored)
{
	hs_database_t *db = NULL;
	hs_compile_error_t *err = NULL;
	char	   *expr = CompiledPattern(pattern, anchored);
	char	   *msg = NULL;

	if (hs_compile(expr, VERDICT_HS_FLAGS, HS_MODE_BLOCK, NULL, &db, &err) != HS_SUCCESS)
	{
		msg = pstrdup(err != NULL && err->message != NULL ? err->message : "unknown error");
		if (err != NULL)
			hs_free_compile_error(err);
	}
	if (db != NULL)
		hs_free_database(db);
	pfree(expr);
	return msg;
}

/* Frees what Hyperscan allocated for a ruleset. */
static void
FreeRuleset(VerdictRuleset *rs)
{
	if (rs->scratch)
		hs_free_scratch((hs_scratch_t *) rs->scratch);
	if (rs->status_db)
		hs_free_database((hs_database_t *) rs->status_db);
	if (rs->code_db)
		hs_free_database((hs_database_t *) rs->code_db);
	if (rs->reply_db)
		hs_free_database((hs_database_t *) rs->reply_db);
}

/*
 * Compiles the n patterns of one part (ids: rule indexes) into a database,
 * growing the ruleset's scratch to fit it; NULL when n is 0.
 */
static void *
CompileDatabase(VerdictRuleset *rs, char **exprs, unsigned int *ids, int n,
				const char *part)
{
	hs_database_t *db = NULL;
	hs_compile_error_t *err = NULL;
	unsigned int *flags;
	hs_scratch_t *scratch = (hs_scratch_t *) rs->scratch;

	if (n == 0)
		return NULL;
	flags = palloc(n * sizeof(unsigned int));
	for (int i = 0; i < n; i++)
		flags[i] = VERDICT_HS_FLAGS;
	if (hs_compile_multi((const char *const *) exprs, flags, ids, (unsigned int) n,
						 HS_MODE_BLOCK, NULL, &db, &err) != HS_SUCCESS)
	{
		char	   *msg = pstrdup(err != NULL && err->message != NULL ? err->message : "unknown error");
		int			at = err != NULL ? err->expression : -1;

		if (err != NULL)
			hs_free_compile_error(err);
		FreeRuleset(rs);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_REGULAR_EXPRESSION),
				 errmsg("cannot compile the %s patterns of pw.bounce_rules: %s", part, msg),
				 at >= 0 ? errdetail("The pattern was \"%s\".", exprs[at]) : 0,
				 errhint("Patterns are Hyperscan regular expressions: PCRE syntax without back-references or look-around.")));
	}
	if (hs_alloc_scratch(db, &scratch) != HS_SUCCESS)
	{
		hs_free_database(db);
		FreeRuleset(rs);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("cannot allocate the scratch space of the %s patterns of pw.bounce_rules", part)));
	}
	rs->scratch = scratch;
	pfree(flags);
	return db;
}

/* The index of a category by name, or -1. */
static int
CategoryIndex(VerdictRuleset *rs, const char *name)
{
	for (int i = 0; i < rs->ncats; i++)
		if (strcmp(rs->cats[i].name, name) == 0)
			return i;
	return -1;
}

/* The index of a category the ingest needs; fails if it was deleted. */
static int
RequiredCategory(VerdictRuleset *rs, const char *name)
{
	int			i = CategoryIndex(rs, name);

	if (i < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pw.bounce_categories has no category \"%s\"", name),
				 errhint("The categories other, routing, unreachable_domain and message_expired are needed by the classification; insert the row again.")));
	return i;
}

/* The stage of a rule as written in pw.bounce_rules. */
static VerdictStage
RuleStage(const char *stage)
{
	static const VerdictStage all[] = {STAGE_CONNECT, STAGE_HELO, STAGE_MAIL,
	STAGE_RCPT, STAGE_DATA, STAGE_ANY};

	for (int i = 0; i < (int) lengthof(all); i++)
		if (strcmp(stage, VerdictStageName(all[i])) == 0)
			return all[i];
	elog(ERROR, "unknown stage \"%s\" in pw.bounce_rules", stage);
	return STAGE_ANY;
}

/* Reads the categories and rules and compiles them into rs (in rules_cxt). */
static void
LoadRuleset(VerdictRuleset *rs, MemoryContext rules_cxt)
{
	char	  **exprs[3];
	unsigned int *ids[3];
	int			nexpr[3] = {0, 0, 0};
	uint64		n;
	MemoryContext old;

	PwSpiRun("SELECT to_regclass('pw.bounce_rules') IS NULL", SPI_OK_SELECT);
	if (PwSpiGetBool(0, 1))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the pw_deliverability objects in this database are older than its library"),
				 errdetail("pw.bounce_rules, which classifies bounces, is missing."),
				 errhint("Run ALTER EXTENSION pw_deliverability UPDATE.")));
	PwSpiRun("SELECT category, address_fault, block, throttle FROM pw.bounce_categories"
			 " ORDER BY category", SPI_OK_SELECT);
	old = MemoryContextSwitchTo(rules_cxt);
	rs->ncats = (int) SPI_processed;
	rs->cats = palloc0(Max(rs->ncats, 1) * sizeof(VerdictCategory));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		rs->cats[i].name = PwSpiGetTextNotNull(i, CAT_NAME);
		rs->cats[i].address_fault = PwSpiGetBool(i, CAT_FAULT);
		rs->cats[i].block = PwSpiGetBool(i, CAT_BLOCK);
		rs->cats[i].throttle = PwSpiGetBool(i, CAT_THROTTLE);
	}
	MemoryContextSwitchTo(old);
	rs->other = RequiredCategory(rs, VERDICT_OTHER);
	rs->unreachable = RequiredCategory(rs, VERDICT_UNREACHABLE);
	rs->expired = RequiredCategory(rs, VERDICT_EXPIRED);
	rs->routing = RequiredCategory(rs, VERDICT_ROUTING);

	n = PwSpiRun("SELECT status_pattern, code_pattern, reply_pattern, stage, category"
				 "  FROM pw.bounce_rules ORDER BY seeded, position, name", SPI_OK_SELECT);
	old = MemoryContextSwitchTo(rules_cxt);
	rs->nrules = (int) n;
	rs->rules = palloc0(Max(n, 1) * sizeof(VerdictRule));
	rs->words = (int) (n / 64 + 1);
	rs->bits = palloc0(3 * rs->words * sizeof(uint64));
	rs->cache = palloc0(sizeof(VerdictCache));
	for (int part = 0; part < 2; part++)
		for (int k = 0; k < VERDICT_CACHE_SIZE; k++)
			rs->cache->parts[part][k].bits = palloc0(rs->words * sizeof(uint64));
	MemoryContextSwitchTo(old);
	for (int part = 0; part < 3; part++)
	{
		exprs[part] = palloc(Max(n, 1) * sizeof(char *));
		ids[part] = palloc(Max(n, 1) * sizeof(unsigned int));
	}
	for (uint64 i = 0; i < n; i++)
	{
		VerdictRule *r = &rs->rules[i];
		char	   *cat = PwSpiGetTextNotNull(i, RULE_CATEGORY);

		r->category = CategoryIndex(rs, cat);
		if (r->category < 0)
			elog(ERROR, "unknown category \"%s\" in pw.bounce_rules", cat);
		r->stage = RuleStage(PwSpiGetTextNotNull(i, RULE_STAGE));
		for (int part = 0; part < 3; part++)
		{
			char	   *pattern = PwSpiGetText(i, RULE_STATUS + part);

			if (pattern == NULL)
				continue;
			exprs[part][nexpr[part]] = CompiledPattern(pattern, part != 2);
			ids[part][nexpr[part]++] = (unsigned int) i;
			if (part == 0)
				r->has_status = true;
			else if (part == 1)
				r->has_code = true;
			else
				r->has_reply = true;
		}
	}
	rs->status_db = CompileDatabase(rs, exprs[0], ids[0], nexpr[0], "status");
	rs->code_db = CompileDatabase(rs, exprs[1], ids[1], nexpr[1], "code");
	rs->reply_db = CompileDatabase(rs, exprs[2], ids[2], nexpr[2], "reply");
}

/*
 * The compiled rules, rebuilt first when they changed since the last use.
 * Valid until the next call of VerdictRules().
 */
const VerdictRuleset *
VerdictRules(void)
{
	VerdictRuleset *rs;
	MemoryContext cxt;

	if (!rules_stale && current != NULL)
		return current;
	if (hs_valid_platform() != HS_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("this CPU cannot run Hyperscan, which classifies bounces"),
				 errhint("Hyperscan needs an x86-64 CPU with SSSE3.")));
	cxt = AllocSetContextCreate(CacheMemoryContext, "pw bounce rules",
								ALLOCSET_SMALL_SIZES);
	rs = MemoryContextAllocZero(cxt, sizeof(VerdictRuleset));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PG_TRY();
	{
		LoadRuleset(rs, cxt);
	}
	PG_CATCH();
	{
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	SPI_finish();
	if (current != NULL)
	{
		FreeRuleset(current);
		MemoryContextDelete(GetMemoryChunkContext(current));
	}
	current = rs;
	rules_stale = false;
	rules_relid = get_relname_relid("bounce_rules", get_namespace_oid(PW_SCHEMA, false));
	categories_relid = get_relname_relid("bounce_categories", get_namespace_oid(PW_SCHEMA, false));
	return current;
}

/* Marks the rules stale when their tables changed. */
static void
VerdictRelcacheCallback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == rules_relid || relid == categories_relid)
		rules_stale = true;
}

/* Checks the patterns of a pw.bounce_rules row being written. */
Datum
pw_bounce_rules_check(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	static const char *const cols[3] = {"status_pattern", "code_pattern", "reply_pattern"};
	HeapTuple	tuple;
	TupleDesc	desc;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		elog(ERROR, "pw.bounce_rules_check() must be called as a row trigger");
	tuple = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	desc = RelationGetDescr(td->tg_relation);
	for (int i = 0; i < 3; i++)
	{
		int			att = SPI_fnumber(desc, cols[i]);
		char	   *pattern;
		char	   *err;

		if (att <= 0)
			elog(ERROR, "pw.bounce_rules has no column %s", cols[i]);
		pattern = SPI_getvalue(tuple, desc, att);
		if (pattern == NULL)
			continue;
		if ((err = VerdictPatternError(pattern, i != 2)) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_REGULAR_EXPRESSION),
					 errmsg("invalid %s of bounce rule \"%s\": %s", cols[i],
							SPI_getvalue(tuple, desc, SPI_fnumber(desc, "name")), err),
					 errdetail("The pattern was \"%s\".", pattern),
					 errhint("Patterns are Hyperscan regular expressions: PCRE syntax without back-references or look-around.")));
	}
	return PointerGetDatum(tuple);
}

/* Invalidates every session's compiled rules after a change of the rules. */
Datum
pw_bounce_rules_changed(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "pw.bounce_rules_changed() must be called as a trigger");
	CacheInvalidateRelcache(td->tg_relation);
	return PointerGetDatum(NULL);
}

/* Registers the invalidation callback of the compiled rules. */
void
VerdictInit(void)
{
	CacheRegisterRelcacheCallback(VerdictRelcacheCallback, (Datum) 0);
}
