/*-------------------------------------------------------------------------
 *
 * mx_write.c
 *	  The writes of a tagging run: labels of already resolved domains to
 *	  untagged carriers, and per batch the outcomes to pw.mx_domains and the
 *	  labels to the carriers (by row version in physical order where the
 *	  discovery query gave them, else by domain), in set-based statements
 *	  prepared once per run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "common/spi.h"
#include "mx.h"

/* Builds a text[] from C strings (NULL entries become NULL elements). */
static Datum
TextArray(char **vals, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = vals[i] == NULL;
		d[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(vals[i]);
	}
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, TEXTOID,
											  -1, false, TYPALIGN_INT));
}

/*
 * Labels the untagged carriers of already resolved domains (they need no
 * DNS at all); returns the number of carriers labelled.
 */
uint64
MxWriteCachedLabels(const PwCarriers *carriers)
{
	char	   *sql = psprintf("UPDATE %s c SET %s = m.label FROM pw.mx_domains m"
							   " WHERE c.%s IS NULL AND m.label IS NOT NULL"
							   " AND m.domain = pw.email_domain(c.%s)",
							   carriers->relation, carriers->mx_col, carriers->mx_col,
							   carriers->email_col);

	uint64		n = PwSpiRun(sql, SPI_OK_UPDATE);

	pfree(sql);
	return n;
}

/* The batch statements, prepared once per run, and the backoff settings */
struct MxWritePlans
{
	SPIPlanPtr	insert;			/* new domains' outcomes into pw.mx_domains */
	SPIPlanPtr	upsert;			/* cached domains' outcomes */
	SPIPlanPtr	update;			/* labels to untagged carriers */
	SPIPlanPtr	update_tids;	/* labels to carriers found by discovery */
	SPIPlanPtr	relabel;		/* carriers of relabelled domains */
	int			recheck_after;	/* seconds until a resolved domain is due */
	int			retry_after;	/* first delay after a failed lookup */
};

/* Prepares one batch statement with a generic plan (never re-planned). */
static SPIPlanPtr
PrepareGenericPlan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, types,
										  CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "could not prepare a tagging statement: %s",
			 SPI_result_code_string(SPI_result));
	return plan;
}

/*
 * Prepares the batch statements for the carriers relation: their arrays
 * are parameters, so a generic plan spares planning (and copying the
 * arrays into the plan) at every batch.  Allocated in the current memory
 * context; the plans are SPI's until MxWritePlansFree().
 */
MxWritePlans *
MxWritePlansPrepare(const PwCarriers *carriers, int recheck_after,
					int retry_after)
{
	MxWritePlans *plans = palloc0(sizeof(MxWritePlans));
	Oid			types[7] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, INT4OID, INT4OID};
	Oid			t3[3] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Oid			ttid[2] = {TIDARRAYOID, TEXTARRAYOID};
	char	   *sql;

	/* a new domain's outcome (the run holds pw.mx_domains against writers) */
	const char *insert =
		"INSERT INTO pw.mx_domains AS m (domain, label, mx_hosts, outcome, resolved_at,"
		" checked_at, next_check_at, attempts, last_error)"
		" SELECT d.domain, d.label, string_to_array(d.hosts, ' '), d.outcome,"
		"  CASE WHEN d.outcome <> 'failed' THEN now() END, now(),"
		"  CASE WHEN d.outcome = 'invalid' THEN NULL"
		"       WHEN d.outcome = 'failed' THEN now() + make_interval(secs => least($7, $6))"
		"       ELSE now() + make_interval(secs => $6) END,"
		"  CASE WHEN d.outcome = 'failed' THEN 1 ELSE 0 END, d.err"
		" FROM unnest($1, $2, $3, $4, $5) AS d(domain, label, hosts, outcome, err)";

	plans->recheck_after = recheck_after;
	plans->retry_after = retry_after;
	plans->insert = PrepareGenericPlan(insert, 7, types);

	/*
	 * A cached domain's: a success replaces everything; a failure keeps the
	 * last good answer, counts the attempt and backs off exponentially
	 * (capped at recheck_after); an invalid name is never checked again.
	 */
	sql = psprintf("%s ON CONFLICT (domain) DO UPDATE SET"
				   "  label = CASE WHEN excluded.outcome = 'failed' THEN m.label ELSE excluded.label END,"
				   "  mx_hosts = CASE WHEN excluded.outcome = 'failed' THEN m.mx_hosts ELSE excluded.mx_hosts END,"
				   "  outcome = excluded.outcome,"
				   "  resolved_at = coalesce(excluded.resolved_at, m.resolved_at),"
				   "  checked_at = excluded.checked_at,"
				   "  next_check_at = CASE WHEN excluded.outcome = 'failed'"
				   "   THEN now() + make_interval(secs => least($6::float8, $7::float8 * power(2, least(m.attempts, 40))))"
				   "   ELSE excluded.next_check_at END,"
				   "  attempts = CASE WHEN excluded.outcome = 'failed' THEN m.attempts + 1 ELSE 0 END,"
				   "  last_error = excluded.last_error",
				   insert);
	plans->upsert = PrepareGenericPlan(sql, 7, types);

	sql = psprintf("UPDATE %s c SET %s = d.label"
				   " FROM unnest($1, $2) AS d(domain, label)"
				   " WHERE c.%s IS NULL AND d.label IS NOT NULL"
				   " AND pw.email_domain(c.%s) = d.domain",
				   carriers->relation, carriers->mx_col,
				   carriers->mx_col, carriers->email_col);
	plans->update = PrepareGenericPlan(sql, 2, types);

	/*
	 * The carriers of a new domain are known by their row versions from the
	 * discovery query: no index probe, no recomputed domain.  A carrier
	 * updated since then has a new row version that this statement does not
	 * find; if it is still untagged, the run's last statement tags it.
	 */
	sql = psprintf("UPDATE %s c SET %s = d.label"
				   " FROM unnest($1, $2) AS d(tid, label)"
				   " WHERE c.ctid = d.tid AND c.%s IS NULL",
				   carriers->relation, carriers->mx_col,
				   carriers->mx_col);
	plans->update_tids = PrepareGenericPlan(sql, 2, ttid);

	sql = psprintf("UPDATE %s c SET %s = d.label"
				   " FROM unnest($1, $2, $3) AS d(domain, label, old)"
				   " WHERE d.old IS NOT NULL AND c.%s = d.old"
				   " AND pw.email_domain(c.%s) = d.domain",
				   carriers->relation, carriers->mx_col,
				   carriers->mx_col, carriers->email_col);
	plans->relabel = PrepareGenericPlan(sql, 3, t3);
	return plans;
}

/* Frees the batch statements of a run. */
void
MxWritePlansFree(MxWritePlans *plans)
{
	SPI_freeplan(plans->insert);
	SPI_freeplan(plans->upsert);
	SPI_freeplan(plans->update);
	SPI_freeplan(plans->update_tids);
	SPI_freeplan(plans->relabel);
	pfree(plans);
}

/* A carrier's row version and the label it gets */
typedef struct TidLabel
{
	ItemPointerData tid;
	char	   *label;
} TidLabel;

/* qsort order of TidLabels: physical order of the rows. */
static int
TidLabelCmp(const void *a, const void *b)
{
	return ItemPointerCompare(&((TidLabel *) unconstify(void *, a))->tid,
							  &((TidLabel *) unconstify(void *, b))->tid);
}

/*
 * Writes the outcomes of the new (cached false) or the cached jobs of a
 * batch to pw.mx_domains.
 */
static void
WriteDomainOutcomes(MxWritePlans *plans, MxDomainJob *jobs, int njobs, bool cached)
{
	char	  **domains = palloc(sizeof(char *) * njobs);
	char	  **labels = palloc(sizeof(char *) * njobs);
	char	  **hosts = palloc(sizeof(char *) * njobs);
	char	  **outcomes = palloc(sizeof(char *) * njobs);
	char	  **errors = palloc(sizeof(char *) * njobs);
	Datum		values[7];
	int			n = 0;

	for (int i = 0; i < njobs; i++)
	{
		if (jobs[i].cached != cached)
			continue;
		domains[n] = jobs[i].domain;
		labels[n] = jobs[i].label;
		hosts[n] = jobs[i].hosts;
		outcomes[n] = unconstify(char *, jobs[i].outcome);
		errors[n] = unconstify(char *, jobs[i].error);
		n++;
	}
	if (n == 0)
		return;
	values[0] = TextArray(domains, n);
	values[1] = TextArray(labels, n);
	values[2] = TextArray(hosts, n);
	values[3] = TextArray(outcomes, n);
	values[4] = TextArray(errors, n);
	values[5] = Int32GetDatum(plans->recheck_after);
	values[6] = Int32GetDatum(plans->retry_after);
	if (SPI_execute_plan(cached ? plans->upsert : plans->insert, values, NULL,
						 false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write pw.mx_domains");
}

/*
 * Labels the carriers found by the discovery query (by row version, in
 * physical order) of the labelled jobs of a batch.
 */
static uint64
WriteLabelsByTid(MxWritePlans *plans, MxDomainJob *jobs, int njobs)
{
	TidLabel   *pairs = NULL;
	int			npairs = 0;
	int			maxpairs = 0;
	Datum	   *tids;
	char	  **labels;
	Datum		values[2];

	for (int i = 0; i < njobs; i++)
	{
		Datum	   *elems;
		bool	   *enulls;
		int			n;

		if (jobs[i].label == NULL || jobs[i].tids == (Datum) 0)
			continue;
		deconstruct_array(DatumGetArrayTypeP(jobs[i].tids), TIDOID,
						  sizeof(ItemPointerData), false, TYPALIGN_SHORT,
						  &elems, &enulls, &n);
		if (npairs + n > maxpairs)
		{
			maxpairs = Max(2 * maxpairs, npairs + n + 1024);
			pairs = pairs ? repalloc(pairs, sizeof(TidLabel) * maxpairs) :
				palloc(sizeof(TidLabel) * maxpairs);
		}
		for (int k = 0; k < n; k++)
		{
			if (enulls[k])
				continue;
			pairs[npairs].tid = *(ItemPointer) DatumGetPointer(elems[k]);
			pairs[npairs++].label = jobs[i].label;
		}
	}
	if (npairs == 0)
		return 0;
	qsort(pairs, npairs, sizeof(TidLabel), TidLabelCmp);
	tids = palloc(sizeof(Datum) * npairs);
	labels = palloc(sizeof(char *) * npairs);
	for (int i = 0; i < npairs; i++)
	{
		tids[i] = PointerGetDatum(&pairs[i].tid);
		labels[i] = pairs[i].label;
	}
	values[0] = PointerGetDatum(construct_array(tids, npairs, TIDOID,
												sizeof(ItemPointerData), false,
												TYPALIGN_SHORT));
	values[1] = TextArray(labels, npairs);
	if (SPI_execute_plan(plans->update_tids, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update carriers");
	return SPI_processed;
}

/*
 * Labels by domain the untagged carriers of the labelled jobs that came
 * without row versions (cached domains, a partitioned carriers table), and
 * moves the carriers of relabelled domains.
 */
static uint64
WriteLabelsByDomain(MxWritePlans *plans, MxDomainJob *jobs, int njobs)
{
	char	  **domains = palloc(sizeof(char *) * njobs);
	char	  **labels = palloc(sizeof(char *) * njobs);
	char	  **olds = palloc(sizeof(char *) * njobs);
	int			n = 0;
	int			nchanged = 0;
	uint64		updated = 0;
	Datum		values[3];

	for (int i = 0; i < njobs; i++)
	{
		MxDomainJob *j = &jobs[i];

		if (j->label == NULL)
			continue;
		olds[n] = NULL;
		if (j->old_label != NULL && strcmp(j->label, j->old_label) != 0)
		{
			olds[n] = j->old_label;
			nchanged++;
		}
		else if (j->tids != (Datum) 0)
			continue;
		domains[n] = j->domain;
		labels[n++] = j->label;
	}
	if (n == 0)
		return 0;
	values[0] = TextArray(domains, n);
	values[1] = TextArray(labels, n);
	values[2] = TextArray(olds, n);
	if (SPI_execute_plan(plans->update, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update carriers");
	updated += SPI_processed;
	if (nchanged > 0)
	{
		if (SPI_execute_plan(plans->relabel, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update carriers");
		updated += SPI_processed;
	}
	return updated;
}

/* Adds a batch's outcomes to the counts of the run. */
static void
CountOutcomes(const MxDomainJob *jobs, int njobs, MxTagCounts *counts)
{
	for (int i = 0; i < njobs; i++)
	{
		const MxDomainJob *j = &jobs[i];

		if (strcmp(j->outcome, MX_OUTCOME_INVALID) != 0)
			counts->looked_up++;
		if (strcmp(j->outcome, MX_OUTCOME_FAILED) == 0)
			counts->failed++;
		else if (strcmp(j->outcome, MX_OUTCOME_INVALID) == 0)
			counts->invalid++;
		else if (strcmp(j->label, MX_LABEL_NONE) == 0)
			counts->none++;
		else
			counts->tagged++;
	}
}

/*
 * Writes a batch's outcomes to pw.mx_domains and its labels to the
 * carriers; adds to the counts.
 */
void
MxWriteBatch(MxWritePlans *plans, MxDomainJob *jobs, int njobs,
			 MxTagCounts *counts)
{
	CountOutcomes(jobs, njobs, counts);
	WriteDomainOutcomes(plans, jobs, njobs, false);
	WriteDomainOutcomes(plans, jobs, njobs, true);
	counts->carriers += WriteLabelsByTid(plans, jobs, njobs);
	counts->carriers += WriteLabelsByDomain(plans, jobs, njobs);
}
