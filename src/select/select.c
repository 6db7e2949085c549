/*-------------------------------------------------------------------------
 *
 * select.c
 *	  Selection: whom a run of a send profile may mail (SQL entry points).
 *
 *	  pw.select_sendable_carriers() takes candidates in ascending carrier id
 *	  while their bucket (operator label, or the untagged bucket) still has
 *	  allowance, up to the quota (run.c); the allowance follows the warmup
 *	  ramp, the caps and the reputation brake (allowance.c, loaders.c).
 *	  pw.selection_composition() is the dry run, one row per bucket.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common/runs.h"
#include "common/spi.h"
#include "pw_deliverability.h"
#include "select/select.h"

PG_FUNCTION_INFO_V1(pw_select_sendable_carriers);
PG_FUNCTION_INFO_V1(pw_selection_composition);

/* Arguments of both functions */
#define ARG_QUOTA 0
#define ARG_PROFILE 1
#define ARG_WARMUP_DAY 2
#define ARG_CLAIM 3				/* pw.select_sendable_carriers() only */

/* Columns of pw.select_sendable_carriers() */
enum
{
	SELECTED_COL_CARRIER_ID = 0,
	SELECTED_COL_EMAIL,
	SELECTED_COL_MX_PROVIDER,
	SELECTED_COL_BUCKET,
	SELECTED_NCOLS
};

/* Columns of pw.selection_composition() */
enum
{
	COMPOSITION_COL_BUCKET = 0,
	COMPOSITION_COL_CLASS,
	COMPOSITION_COL_AVAILABLE,
	COMPOSITION_COL_ALLOWANCE,
	COMPOSITION_COL_SELECTED,
	COMPOSITION_COL_BRAKE,
	COMPOSITION_COL_BRAKE_REASON,
	COMPOSITION_NCOLS
};

/* Creates the state and its context, and checks the common arguments. */
static SelState *
SelBegin(FunctionCallInfo fcinfo, bool claim)
{
	MemoryContext cxt;
	SelState   *st;

	if (PG_ARGISNULL(ARG_QUOTA))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("quota must not be NULL")));
	if (PG_GETARG_INT32(ARG_QUOTA) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("quota must be 0 or more, not %d", PG_GETARG_INT32(ARG_QUOTA))));
	if (PG_ARGISNULL(ARG_PROFILE))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("profile must not be NULL"),
				 errhint("Name a row of pw.profiles, e.g. 'default'.")));

	cxt = AllocSetContextCreate(CurrentMemoryContext, "pw selection",
								ALLOCSET_DEFAULT_SIZES);
	st = MemoryContextAllocZero(cxt, sizeof(SelState));
	st->cxt = cxt;
	st->read_only = !claim;
	st->buckets = SelCreateStringHash(st, "pw selection buckets", sizeof(SelBucket));
	st->blocked = SelCreateStringHash(st, "pw blocked domains", sizeof(char *));
	return st;
}

/*
 * Connects to SPI, fixes the search_path and loads profile, caps and today's
 * sends.  Returns the GUC nest level to restore before SPI_finish().
 */
static int
SelPrepare(SelState *st, FunctionCallInfo fcinfo, bool claim)
{
	char	   *profile = text_to_cstring(PG_GETARG_TEXT_PP(ARG_PROFILE));
	bool		day_given = !PG_ARGISNULL(ARG_WARMUP_DAY);
	int			nestlevel;

	SPI_connect();
	nestlevel = PwSafeSearchPath();
	/* first the extension: a DROP EXTENSION under way is waited for */
	(void) PwLockExtension(false);
	MemoryContextSwitchTo(st->cxt);
	SelLoadProfile(st, profile, day_given,
				   day_given ? PG_GETARG_INT32(ARG_WARMUP_DAY) : 0);
	SelLoadCaps(st);
	if (claim)
	{
		SelClaimLock(st);
		st->run_id = PwRunBegin(PW_RUN_CLAIM, st->profile);
	}
	SelLoadSentToday(st);
	return nestlevel;
}

/* Records the end of the claim run: quota, rows claimed and their mark. */
static void
SelEndClaimRun(SelState *st, int32 quota)
{
	StringInfoData counts;

	PwRunCountsInit(&counts);
	PwRunCount(&counts, "quota", quota);
	PwRunCount(&counts, "claimed", st->ntaken);
	PwRunCount(&counts, "warmup_day", st->day);
	PwRunCountText(&counts, "sent_column", st->sent_col_raw);
	PwRunCountText(&counts, "marked_at",
				   JsonEncodeDateTime(NULL, TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
									  TIMESTAMPTZOID, NULL));
	PwRunEnd(st->run_id, &counts);
}

/*
 * Runs a selection for the function called: checks the arguments, loads
 * what it needs, runs it up to the quota (claiming the rows with claim) and,
 * with count_available, counts the candidates of every bucket.  The result
 * is a materialised set the caller fills from the returned state.
 */
static SelState *
SelSelect(FunctionCallInfo fcinfo, bool claim, bool count_available)
{
	SelState   *st = SelBegin(fcinfo, claim);
	int			nestlevel;

	InitMaterializedSRF(fcinfo, 0);
	nestlevel = SelPrepare(st, fcinfo, claim);
	if (PG_GETARG_INT32(ARG_QUOTA) > 0)
		SelRun(st, PG_GETARG_INT32(ARG_QUOTA), claim);
	if (st->run_id != 0)
		SelEndClaimRun(st, PG_GETARG_INT32(ARG_QUOTA));
	if (count_available)
		SelLoadAvailable(st);
	PwScopeEnd(nestlevel);
	SPI_finish();
	return st;
}

/* Returns the rows taken (not the dropped ones) as the function's result. */
static void
SelPutSelectedRows(SelState *st, ReturnSetInfo *rsinfo)
{
	for (int64 i = 0; i < st->nrows; i++)
	{
		SelRow	   *r = &st->rows[i];
		Datum		values[SELECTED_NCOLS];
		bool		nulls[SELECTED_NCOLS] = {0};

		if (r->dropped)
			continue;
		values[SELECTED_COL_CARRIER_ID] = Int64GetDatum(r->id);
		values[SELECTED_COL_EMAIL] = CStringGetTextDatum(r->email);
		if (r->bucket->label)
		{
			values[SELECTED_COL_MX_PROVIDER] = CStringGetTextDatum(r->bucket->label);
			values[SELECTED_COL_BUCKET] = values[SELECTED_COL_MX_PROVIDER];
		}
		else
		{
			nulls[SELECTED_COL_MX_PROVIDER] = true;
			values[SELECTED_COL_BUCKET] = CStringGetTextDatum(SEL_NULL_BUCKET);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * pw.select_sendable_carriers(quota, profile, warmup_day, claim): whom this
 * run may mail, in ascending carrier id.
 */
Datum
pw_select_sendable_carriers(PG_FUNCTION_ARGS)
{
	bool		claim;
	SelState   *st;

	if (PG_ARGISNULL(ARG_CLAIM))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("claim must not be NULL")));
	claim = PG_GETARG_BOOL(ARG_CLAIM);
	st = SelSelect(fcinfo, claim, false);
	SelPutSelectedRows(st, (ReturnSetInfo *) fcinfo->resultinfo);
	MemoryContextDelete(st->cxt);
	return (Datum) 0;
}

/* Orders composition rows by bucket name (the untagged bucket first). */
static int
SelBucketCmp(const void *a, const void *b)
{
	const SelBucket *ba = *(SelBucket *const *) a;
	const SelBucket *bb = *(SelBucket *const *) b;

	if (ba->label == NULL || bb->label == NULL)
		return (ba->label != NULL) - (bb->label != NULL);
	return strcmp(ba->label, bb->label);
}

/* The buckets with available candidates, ordered by name; sets *n. */
static SelBucket **
SelAvailableBuckets(SelState *st, int *n)
{
	SelBucket **list;
	HASH_SEQ_STATUS seq;
	SelBucket  *b;
	int			nlist = 0;

	list = MemoryContextAlloc(st->cxt,
							  sizeof(SelBucket *) * (hash_get_num_entries(st->buckets) + 1));
	if (st->null_bucket.available > 0)
		list[nlist++] = &st->null_bucket;
	hash_seq_init(&seq, st->buckets);
	while ((b = hash_seq_search(&seq)) != NULL)
		if (b->available > 0)
			list[nlist++] = b;
	qsort(list, nlist, sizeof(SelBucket *), SelBucketCmp);
	*n = nlist;
	return list;
}

/* Returns one composition row per bucket with available candidates. */
static void
SelPutCompositionRows(SelState *st, ReturnSetInfo *rsinfo)
{
	int			nlist;
	SelBucket **list = SelAvailableBuckets(st, &nlist);

	for (int i = 0; i < nlist; i++)
	{
		SelBucket  *b = list[i];
		Datum		values[COMPOSITION_NCOLS];
		bool		nulls[COMPOSITION_NCOLS] = {0};
		const char *brake;

		SelResolve(st, b);
		if (b->label)
		{
			values[COMPOSITION_COL_BUCKET] = CStringGetTextDatum(b->label);
			values[COMPOSITION_COL_CLASS] =
				CStringGetTextDatum(b->facts.op_class ? b->facts.op_class : "default");
		}
		else
		{
			values[COMPOSITION_COL_BUCKET] = CStringGetTextDatum(SEL_NULL_BUCKET);
			nulls[COMPOSITION_COL_CLASS] = true;
		}
		values[COMPOSITION_COL_AVAILABLE] = Int64GetDatum(b->available);
		values[COMPOSITION_COL_ALLOWANCE] = Int64GetDatum(b->allowance);
		values[COMPOSITION_COL_SELECTED] = Int64GetDatum(b->taken);
		brake = SelBrakeActionName(b->facts.brake);
		if (brake != NULL)
		{
			values[COMPOSITION_COL_BRAKE] = CStringGetTextDatum(brake);
			if (b->brake_reason)
				values[COMPOSITION_COL_BRAKE_REASON] = CStringGetTextDatum(b->brake_reason);
			else
				nulls[COMPOSITION_COL_BRAKE_REASON] = true;
		}
		else
			nulls[COMPOSITION_COL_BRAKE] = nulls[COMPOSITION_COL_BRAKE_REASON] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
}

/*
 * pw.selection_composition(quota, profile, warmup_day): the dry run, one row
 * per bucket with candidates: class, candidates, allowance, selected, and
 * the brake on it with its reason.
 */
Datum
pw_selection_composition(PG_FUNCTION_ARGS)
{
	SelState   *st = SelSelect(fcinfo, false, true);

	SelPutCompositionRows(st, (ReturnSetInfo *) fcinfo->resultinfo);
	MemoryContextDelete(st->cxt);
	return (Datum) 0;
}

/* Registers nothing: selection has no GUCs. */
void
SelInit(void)
{
}
