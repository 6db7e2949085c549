/*-------------------------------------------------------------------------
 *
 * loaders.c
 *	  What a selection loads before it scans: the profile and its pool, the
 *	  caps of the warmup day, the operator classes, the reputation brake,
 *	  the blocked domains and suppressions, today's sends; and, for the dry
 *	  run, the candidates available per bucket.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "common/spi.h"
#include "select/select.h"

/* Columns of the profile query (SelLoadProfile) */
enum
{
	PROFILE_COL_SENT_COLUMN = 1,
	PROFILE_COL_PURPOSE,
	PROFILE_COL_SKIP_BIG_MX,
	PROFILE_COL_EXCLUDE_UNTIL_DAY,
	PROFILE_COL_PER_OP_RUN_CAP,
	PROFILE_COL_NULL_RUN_CAP,
	PROFILE_COL_TODAY_DAY,
	PROFILE_COL_POOL,
	PROFILE_COL_BRAKE_SLOW_FACTOR,
	PROFILE_COL_BRAKE_ENABLED
};

/* Columns of pw.daily_caps() */
enum
{
	CAPS_COL_CLASS = 1,			/* NULL on an operator's override */
	CAPS_COL_OPERATOR,			/* NULL on a class's cap */
	CAPS_COL_DAILY_CAP
};

/* Columns of the operator classes query */
enum
{
	OPERATOR_COL_LABEL = 1,
	OPERATOR_COL_CLASS
};

/* Columns of the braked operators (pw.brake_status(profile, true)) */
enum
{
	BRAKE_COL_OPERATOR = 1,
	BRAKE_COL_ACTION,
	BRAKE_COL_REASON
};

/* Columns of the per-bucket counts (today's sends, available candidates) */
enum
{
	COUNT_COL_LABEL = 1,
	COUNT_COL_COUNT
};

/* The single column of the blocked domains and suppressions queries */
#define VALUE_COL 1

/* Checks the warmup day asked for (or today's) and sets it and the hold. */
static void
SelSetWarmupDay(SelState *st, bool day_given, int32 day, int32 today_day,
				bool skip_big_mx, int32 exclude_until_day)
{
	if (day_given)
	{
		if (day < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("warmup_day must be 1 or more, not %d", day),
					 errhint("Day 1 is the profile's warmup_start; pass NULL for today.")));
		st->day = day;
	}
	else
	{
		if (today_day < 1)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the warmup of send profile \"%s\" has not started", st->profile),
					 errdetail("Its warmup_start is %d day(s) in the future.", 1 - today_day),
					 errhint("Pass warmup_day explicitly or move pw.profiles.warmup_start.")));
		st->day = today_day;
	}
	st->rules.hold = skip_big_mx && st->day <= exclude_until_day;
}

/* Turns the profile's pool (a text[]) into quoted literals for SQL text. */
static void
SelSetPoolSql(SelState *st, Datum pool)
{
	ArrayType  *arr = DatumGetArrayTypeP(pool);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	StringInfoData buf;

	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &nelems);
	if (nelems == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("send profile \"%s\" has no result it may select", st->profile),
				 errhint("Set pw.profiles.sendable_results to results that are not dead.")));
	initStringInfo(&buf);
	for (int i = 0; i < nelems; i++)
	{
		if (nulls[i])
			continue;			/* pw.profile_pool() has none */
		appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "",
						 quote_literal_cstr(TextDatumGetCString(elems[i])));
	}
	st->pool_sql = buf.data;
}

/* Loads the profile, its pool of results and the carriers contract. */
void
SelLoadProfile(SelState *st, const char *profile, bool day_given, int32 day)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	Datum		pool;
	bool		pool_isnull;

	values[0] = CStringGetTextDatum(profile);
	if (PwSpiExecute("SELECT p.sent_column::text, p.purpose, p.skip_big_mx,"
					 "       p.exclude_until_day, p.per_op_run_cap, p.null_run_cap,"
					 "       (current_date - p.warmup_start) + 1,"
					 "       pw.profile_pool(p.name), p.brake_slow_factor::float8,"
					 "       p.brake_enabled"
					 "  FROM pw.profiles p WHERE p.name = $1",
					 1, types, values, NULL, st->read_only, SPI_OK_SELECT) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("send profile \"%s\" does not exist", profile),
				 errhint("Profiles are the rows of pw.profiles.")));

	st->profile = pstrdup(profile);
	st->sent_col_raw = PwSpiGetTextNotNull(0, PROFILE_COL_SENT_COLUMN);
	st->purpose = PwSpiGetTextNotNull(0, PROFILE_COL_PURPOSE);
	st->rules.per_op_run_cap = PwSpiGetInt32(0, PROFILE_COL_PER_OP_RUN_CAP);
	st->rules.null_run_cap = PwSpiGetInt32(0, PROFILE_COL_NULL_RUN_CAP);
	st->rules.brake_slow_factor = PwSpiGetFloat8(0, PROFILE_COL_BRAKE_SLOW_FACTOR);
	st->brake_enabled = PwSpiGetBool(0, PROFILE_COL_BRAKE_ENABLED);
	SelSetWarmupDay(st, day_given, day, PwSpiGetInt32(0, PROFILE_COL_TODAY_DAY),
					PwSpiGetBool(0, PROFILE_COL_SKIP_BIG_MX),
					PwSpiGetInt32(0, PROFILE_COL_EXCLUDE_UNTIL_DAY));
	pool = PwSpiGetDatum(0, PROFILE_COL_POOL, TEXTARRAYOID, &pool_isnull);
	if (pool_isnull)
		pool = PointerGetDatum(construct_empty_array(TEXTOID));
	SelSetPoolSql(st, pool);

	PwCarriersLoad(&st->carriers);
	MemoryContextSwitchTo(st->cxt);
	st->sent_col = PwCarriersCheckColumn(&st->carriers, st->sent_col_raw,
										 "sent", TIMESTAMPTZOID);
}

/*
 * Loads the daily caps of the warmup day (pw.daily_caps()): a cap per
 * operator class, and the operators whose override wins over their class.
 */
static void
SelLoadDailyCaps(SelState *st)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	SelClassCap *caps;
	int			ncaps = 0;
	uint64		n;

	values[0] = CStringGetTextDatum(st->profile);
	values[1] = Int32GetDatum(st->day);
	n = PwSpiExecute("SELECT c.op_class, c.operator, c.daily_cap"
					 "  FROM pw.daily_caps($1, $2) c",
					 2, types, values, NULL, st->read_only, SPI_OK_SELECT);
	caps = palloc0(sizeof(SelClassCap) * (n + 1));
	for (uint64 i = 0; i < n; i++)
	{
		char	   *op_class = PwSpiGetText(i, CAPS_COL_CLASS);
		char	   *op = PwSpiGetText(i, CAPS_COL_OPERATOR);
		int32		cap = PwSpiGetInt32(i, CAPS_COL_DAILY_CAP);

		if (op != NULL)
		{
			SelBucket  *b = SelGetBucket(st, op);

			b->facts.has_override = true;
			b->facts.override_cap = cap;
		}
		else if (op_class != NULL)
		{
			caps[ncaps].op_class = op_class;
			caps[ncaps].daily_cap = cap;
			ncaps++;
		}
	}
	st->rules.class_caps = caps;
	st->rules.nclass_caps = ncaps;
	SPI_freetuptable(SPI_tuptable);
}

/* Loads every operator's class (pw.operators). */
static void
SelLoadOperatorClasses(SelState *st)
{
	uint64		n;

	n = PwSpiExecute("SELECT o.label, o.op_class FROM pw.operators o",
					 0, NULL, NULL, NULL, st->read_only, SPI_OK_SELECT);
	for (uint64 i = 0; i < n; i++)
	{
		SelBucket  *b = SelGetBucket(st, PwSpiGetTextNotNull(i, OPERATOR_COL_LABEL));

		b->facts.op_class = PwSpiGetTextNotNull(i, OPERATOR_COL_CLASS);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Loads the operators the reputation brake pauses or slows down now, as
 * pw.brake_status() judges them (its braked_only form aggregates only the
 * operators that may be braked); '(untagged)' outcomes brake the untagged
 * bucket.
 */
static void
SelLoadBrake(SelState *st)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	uint64		n;

	values[0] = CStringGetTextDatum(st->profile);
	n = PwSpiExecute("SELECT b.operator, b.action, b.reason"
					 "  FROM pw.brake_status($1, braked_only => true) b",
					 1, types, values, NULL, st->read_only, SPI_OK_SELECT);
	for (uint64 i = 0; i < n; i++)
	{
		char	   *label = PwSpiGetTextNotNull(i, BRAKE_COL_OPERATOR);
		char	   *action = PwSpiGetTextNotNull(i, BRAKE_COL_ACTION);
		SelBucket  *b;

		CHECK_FOR_INTERRUPTS();
		b = SelGetBucket(st, strcmp(label, SEL_UNTAGGED_OPERATOR) == 0 ? NULL : label);
		if (!SelBrakeActionParse(action, &b->facts.brake))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("pw.brake_status() returned the unknown action \"%s\"", action)));
		b->brake_reason = PwSpiGetText(i, BRAKE_COL_REASON);
	}
	SPI_freetuptable(SPI_tuptable);
}

/* Adds column VALUE_COL of the n rows of SPI_tuptable to a string set. */
static void
SelAddToStringSet(HTAB *set, uint64 n)
{
	for (uint64 i = 0; i < n; i++)
	{
		char	   *value = PwSpiGetTextNotNull(i, VALUE_COL);

		(void) hash_search(set, &value, HASH_ENTER, NULL);
	}
}

/*
 * Loads the blocked domains into their in-memory set, and a short
 * suppression list into its own (a long one stays in SQL).
 */
static void
SelLoadBlockedAndSuppressed(SelState *st)
{
	uint64		n;

	n = PwSpiExecute("SELECT d.domain FROM pw.blocked_domains d",
					 0, NULL, NULL, NULL, st->read_only, SPI_OK_SELECT);
	SelAddToStringSet(st->blocked, n);
	SPI_freetuptable(SPI_tuptable);

	n = PwSpiExecute("SELECT s.email FROM pw.suppressions s LIMIT "
					 CppAsString2(SEL_SUPPRESSIONS_IN_MEMORY) " + 1",
					 0, NULL, NULL, NULL, st->read_only, SPI_OK_SELECT);
	if (n <= SEL_SUPPRESSIONS_IN_MEMORY)
	{
		st->suppressed = SelCreateStringHash(st, "pw suppressions", sizeof(char *));
		SelAddToStringSet(st->suppressed, n);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Loads the caps of the warmup day (per class, operator overrides), the
 * operator classes, the brake, the blocked domains and the suppressions.
 */
void
SelLoadCaps(SelState *st)
{
	SelLoadDailyCaps(st);
	SelLoadOperatorClasses(st);
	if (st->brake_enabled)
		SelLoadBrake(st);
	SelLoadBlockedAndSuppressed(st);
}

/* Counts today's sends per operator (the sent column within current_date). */
void
SelLoadSentToday(SelState *st)
{
	StringInfoData sql;
	char	   *type;
	uint64		n;

	/* bounds of the column's own type: no conversion per index entry */
	type = format_type_be(get_atttype(st->carriers.relid,
									  get_attnum(st->carriers.relid, st->sent_col_raw)));
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT c.%s::text, count(*) FROM %s c"
					 " WHERE c.%s >= current_date::%s AND c.%s < (current_date + 1)::%s"
					 "   AND c.%s IS NOT NULL"
					 " GROUP BY 1",
					 st->carriers.mx_col, st->carriers.relation,
					 st->sent_col, type, st->sent_col, type, st->carriers.mx_col);
	n = PwSpiExecute(sql.data, 0, NULL, NULL, NULL,
					 st->read_only, SPI_OK_SELECT);
	for (uint64 i = 0; i < n; i++)
	{
		SelBucket  *b = SelGetBucket(st, PwSpiGetTextNotNull(i, COUNT_COL_LABEL));

		b->facts.sent_today = PwSpiGetInt64(i, COUNT_COL_COUNT);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * The WHERE clause of the candidates: unsent, a result of the pool (the
 * shape of the partial index of pw.selection_index_ddl()), an address, not
 * suppressed (unless "in_memory" and the list is checked in memory).
 */
void
SelAppendCandidateWhere(SelState *st, StringInfo sql, bool in_memory)
{
	PwCarriers *c = &st->carriers;

	appendStringInfo(sql,
					 " WHERE c.%s IS NULL AND c.%s IN (%s) AND c.%s IS NOT NULL",
					 st->sent_col, c->result_col, st->pool_sql, c->email_col);
	if (!in_memory || st->suppressed == NULL)
		appendStringInfo(sql,
						 "   AND NOT EXISTS (SELECT 1 FROM pw.suppressions s"
						 "                    WHERE s.email = pw.normalize_email(c.%s))",
						 c->email_col);
}

/* Counts the unsent candidates of every bucket, held-out ones included. */
void
SelLoadAvailable(SelState *st)
{
	PwCarriers *c = &st->carriers;
	StringInfoData sql;
	uint64		n;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT c.%s::text, count(*) FROM %s c",
					 c->mx_col, c->relation);
	SelAppendCandidateWhere(st, &sql, false);
	appendStringInfo(&sql,
					 "   AND c.%s IS DISTINCT FROM 'none'"
					 "   AND NOT EXISTS (SELECT 1 FROM pw.blocked_domains b"
					 "                    WHERE b.domain = pw.email_domain(c.%s))"
					 " GROUP BY 1",
					 c->mx_col, c->email_col);
	n = PwSpiExecute(sql.data, 0, NULL, NULL, NULL,
					 st->read_only, SPI_OK_SELECT);
	for (uint64 i = 0; i < n; i++)
	{
		SelBucket  *b = SelGetBucket(st, PwSpiGetText(i, COUNT_COL_LABEL));

		b->available = PwSpiGetInt64(i, COUNT_COL_COUNT);
	}
	SPI_freetuptable(SPI_tuptable);
}
