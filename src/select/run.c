/*-------------------------------------------------------------------------
 *
 * run.c
 *	  The run loop of a selection: walks the profile's unsent candidates in
 *	  ascending carrier id, in batches of an ordered, LIMITed query, and
 *	  takes a candidate while its bucket still has allowance, stopping at
 *	  the quota.  Buckets with no allowance left (held out by the warmup,
 *	  capped for the day, exhausted in this run) are passed to the next
 *	  batch so that the scan no longer returns their rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "common/spi.h"
#include "select/select.h"

/* Columns of the batch query (SelCandidateQuery) */
enum
{
	CANDIDATE_COL_ID = 1,
	CANDIDATE_COL_EMAIL,
	CANDIDATE_COL_LABEL
};

/*
 * The batch query: candidates from id "from_id" on, in ascending id, at most
 * "limit", without the labels in "excluded" (a text[] parameter: the
 * planner folds it into a constant, so that the filter is a hash lookup)
 * and without the untagged bucket unless "with_null".  The pool stays
 * literal so that the profile's partial index matches.
 */
static char *
SelCandidateQuery(SelState *st, int64 from_id, int64 limit, const char *excluded,
				  bool with_null)
{
	PwCarriers *c = &st->carriers;
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT c.%s::int8, c.%s::text, c.%s::text FROM %s c",
					 c->id_col, c->email_col, c->mx_col, c->relation);
	SelAppendCandidateWhere(st, &sql, true);
	if (from_id > PG_INT64_MIN)
		appendStringInfo(&sql, " AND c.%s >= " INT64_FORMAT, c->id_col, from_id);
	appendStringInfo(&sql,
					 " AND (c.%s %s NULL %s c.%s <> ALL (%s))"
					 " ORDER BY c.%s LIMIT " INT64_FORMAT,
					 c->mx_col, with_null ? "IS" : "IS NOT",
					 with_null ? "OR" : "AND", c->mx_col, excluded,
					 c->id_col, limit);
	return sql.data;
}

/* The labels of the buckets with no allowance left, as a text[] datum. */
static Datum
SelExhaustedLabels(SelState *st, int *nlabels)
{
	HASH_SEQ_STATUS seq;
	SelBucket  *b;
	Datum	   *labels;
	int			n = 0;
	Datum		arr;

	labels = palloc(sizeof(Datum) * (hash_get_num_entries(st->buckets) + 1));
	labels[n++] = CStringGetTextDatum("none");
	hash_seq_init(&seq, st->buckets);
	while ((b = hash_seq_search(&seq)) != NULL)
	{
		SelResolve(st, b);
		if (b->taken >= b->allowance)
			labels[n++] = CStringGetTextDatum(b->label);
	}
	arr = PointerGetDatum(construct_array(labels, n, TEXTOID, -1, false, TYPALIGN_INT));
	for (int i = 0; i < n; i++)
		pfree(DatumGetPointer(labels[i]));
	pfree(labels);
	*nlabels = n;
	return arr;
}

/*
 * Runs the batch query of candidates from "from_id" on, leaving out every
 * exhausted bucket (a hashed "<> ALL" filter costs the same for thousands of
 * labels as for a few).
 *
 * The scan must stay in id order and stop early, so the planner must not
 * trade the ordered index scan for a sort of the pool when the left-out
 * buckets make it expect few rows: the query is planned with sorts disabled,
 * and with parallel workers and JIT off (the cost of a disabled sort would
 * trigger them), for this query only.
 */
static uint64
SelFetchCandidates(SelState *st, int64 from_id, int64 limit)
{
	Oid			types[1] = {TEXTARRAYOID};
	Datum		values[1];
	int			nexcluded;
	char	   *sql;
	int			level;
	uint64		n;

	values[0] = SelExhaustedLabels(st, &nexcluded);
	SelResolve(st, &st->null_bucket);
	sql = SelCandidateQuery(st, from_id, limit, "$1",
							st->null_bucket.taken < st->null_bucket.allowance);

	level = PwPlannerScopeBegin(PW_PLAN_NO_SORT | PW_PLAN_NO_PARALLEL | PW_PLAN_NO_JIT);
	n = PwSpiExecute(sql, 1, types, values, NULL, st->read_only, SPI_OK_SELECT);
	PwScopeEnd(level);
	pfree(sql);
	pfree(DatumGetPointer(values[0]));
	return n;
}

/* Appends a taken row. */
static void
SelAddRow(SelState *st, int64 id, const char *email, SelBucket *b)
{
	if (st->nrows == st->rows_alloc)
	{
		st->rows_alloc = st->rows_alloc ? st->rows_alloc * 2 : 256;
		st->rows = st->rows ? repalloc_huge(st->rows, sizeof(SelRow) * st->rows_alloc)
			: palloc(sizeof(SelRow) * st->rows_alloc);
	}
	st->rows[st->nrows].id = id;
	st->rows[st->nrows].email = pstrdup(email);
	st->rows[st->nrows].bucket = b;
	st->rows[st->nrows].dropped = false;
	st->nrows++;
	st->ntaken++;
	b->taken++;
}

/*
 * Looks at candidate "i" of the batch "tt": takes it when its bucket has
 * allowance and its address is neither blocked nor suppressed.  Sets *id to
 * its carrier id; returns false when the id is NULL (such rows sort last:
 * the pool ends there).  Per-row strings live in "rowcxt".
 */
static bool
SelConsiderCandidate(SelState *st, SPITupleTable *tt, uint64 i,
					 MemoryContext rowcxt, int64 *id)
{
	bool		isnull;
	Datum		d;
	char	   *email;
	char	   *label = NULL;
	SelBucket  *b;
	MemoryContext oldcxt;

	d = SPI_getbinval(tt->vals[i], tt->tupdesc, CANDIDATE_COL_ID, &isnull);
	if (isnull)
		return false;
	*id = DatumGetInt64(d);
	MemoryContextReset(rowcxt);
	oldcxt = MemoryContextSwitchTo(rowcxt);
	d = SPI_getbinval(tt->vals[i], tt->tupdesc, CANDIDATE_COL_LABEL, &isnull);
	if (!isnull)
		label = TextDatumGetCString(d);
	b = SelGetBucket(st, label);
	SelResolve(st, b);
	b->seen++;
	if (b->taken >= b->allowance)
	{
		MemoryContextSwitchTo(oldcxt);
		return true;
	}
	d = SPI_getbinval(tt->vals[i], tt->tupdesc, CANDIDATE_COL_EMAIL, &isnull);
	if (isnull)					/* the query asks for addresses that are not */
		elog(ERROR, "pw selection: candidate " INT64_FORMAT " has no address", *id);
	email = TextDatumGetCString(d);
	MemoryContextSwitchTo(oldcxt);
	if (SelBlocked(st, email) || (st->suppressed && SelSuppressed(st, email)))
		return true;
	SelAddRow(st, *id, email, b);
	return true;
}

/*
 * The selection: streams the candidates in ascending id in batches and
 * takes each while its bucket has allowance, until the quota.  With claim,
 * taken rows are locked batch by batch and finally marked sent.
 */
void
SelRun(SelState *st, int64 quota, bool claim)
{
	int64		from_id = PG_INT64_MIN;
	int64		limit = Min(Max(2 * quota, SEL_MIN_BATCH), SEL_MAX_BATCH);
	int64		pending_from = 0;
	MemoryContext rowcxt = AllocSetContextCreate(st->cxt, "pw selection row",
												 ALLOCSET_SMALL_SIZES);

	while (st->ntaken < quota)
	{
		SPITupleTable *tt;
		uint64		n;
		int64		last_id = PG_INT64_MAX;
		bool		pool_ends = false;

		CHECK_FOR_INTERRUPTS();
		n = SelFetchCandidates(st, from_id, limit);
		tt = SPI_tuptable;
		for (uint64 i = 0; i < n && st->ntaken < quota; i++)
		{
			if (!SelConsiderCandidate(st, tt, i, rowcxt, &last_id))
			{
				pool_ends = true;
				break;
			}
			if (claim && st->ntaken == quota)
			{
				SelLockPending(st, pending_from);
				pending_from = st->nrows;
			}
		}
		if (claim)
		{
			SelLockPending(st, pending_from);
			pending_from = st->nrows;
		}
		SPI_freetuptable(tt);
		if (pool_ends || n < (uint64) limit || last_id == PG_INT64_MAX)
			break;				/* the pool is exhausted */
		from_id = last_id + 1;
		limit = Min(limit * 2, SEL_MAX_BATCH);
	}
	MemoryContextDelete(rowcxt);
	if (claim)
		SelMarkSent(st);
}
