/*-------------------------------------------------------------------------
 *
 * mx_tag.c
 *	  MX tagging: look up the MX (then A, AAAA) records of untagged or stale
 *	  recipient domains, classify them, keep the outcome in pw.mx_domains and
 *	  propagate labels to the carriers' MX column in set-based statements.
 *	  pw.mx_tag() runs it in the calling backend, the background worker in
 *	  its own transactions; pw.resolve_mx() is a one-off look.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/nameser.h>
#include <netinet/in.h>

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "mx.h"
#include "common/pw_common.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_mx_tag);
PG_FUNCTION_INFO_V1(pw_resolve_mx);

int			pw_recheck_after = 30 * 86400;
int			pw_retry_after = 300;
int			pw_tag_batch_size = 10000;
bool		pw_dns_process = true;

/* Defines the tagging GUCs. */
void
MxTagInit(void)
{
	DefineCustomIntVariable(PW_GUC_PREFIX ".recheck_after",
							"Age after which a resolved domain is looked up again.",
							NULL, &pw_recheck_after, 30 * 86400, 60, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".retry_after",
							"Delay before a failed lookup is retried; doubles with each failure, up to recheck_after.",
							NULL, &pw_retry_after, 300, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".tag_batch_size",
							"Domains resolved and written per batch by MX tagging.",
							NULL, &pw_tag_batch_size, 10000, 1, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable(PW_GUC_PREFIX ".dns_process",
							 "Resolves in a separate background process while the tagging backend writes the previous batch.",
							 "Used when a run has more than one batch and a background worker slot is free.",
							 &pw_dns_process, true,
							 PGC_USERSET, 0, NULL, NULL, NULL);
}

/* Whether the extension is installed in the current database (needs a transaction). */
bool
PwMxTagInstalled(void)
{
	Oid			nsp = get_namespace_oid("pw", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("mx_domains", nsp));
}

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

/* The batch statements, prepared once per run */
typedef struct WritePlans
{
	SPIPlanPtr	insert;			/* new domains' outcomes into pw.mx_domains */
	SPIPlanPtr	upsert;			/* cached domains' outcomes */
	SPIPlanPtr	update;			/* labels to untagged carriers */
	SPIPlanPtr	update_tids;	/* labels to carriers found by discovery */
	SPIPlanPtr	relabel;		/* carriers of relabelled domains */
} WritePlans;

/* Prepares one batch statement with a generic plan (never re-planned). */
static SPIPlanPtr
PrepareGeneric(const char *sql, int nargs, Oid *types)
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
 * arrays into the plan) at every batch.
 */
static void
PrepareWritePlans(PwCarriers *carriers, WritePlans *plans)
{
	Oid			types[7] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, INT4OID, INT4OID};
	Oid			t3[3] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Oid			ttid[2] = {TIDARRAYOID, TEXTARRAYOID};

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

	plans->insert = PrepareGeneric(insert, 7, types);

	/*
	 * A cached domain's: a success replaces everything; a failure keeps the
	 * last good answer, counts the attempt and backs off exponentially
	 * (capped at recheck_after); an invalid name is never checked again.
	 */
	plans->upsert = PrepareGeneric(psprintf("%s ON CONFLICT (domain) DO UPDATE SET"
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
											insert),
								   7, types);
	plans->update = PrepareGeneric(psprintf("UPDATE %s c SET %s = d.label"
											" FROM unnest($1, $2) AS d(domain, label)"
											" WHERE c.%s IS NULL AND d.label IS NOT NULL"
											" AND pw.email_domain(c.%s) = d.domain",
											carriers->relation, carriers->mx_col,
											carriers->mx_col, carriers->email_col),
								   2, types);
	/*
	 * The carriers of a new domain are known by their row versions from the
	 * discovery query: no index probe, no recomputed domain.  A carrier
	 * updated since then has a new row version that this statement does not
	 * find; if it is still untagged, the next run's first statement tags it.
	 */
	plans->update_tids = PrepareGeneric(psprintf("UPDATE %s c SET %s = d.label"
												 " FROM unnest($1, $2) AS d(tid, label)"
												 " WHERE c.ctid = d.tid AND c.%s IS NULL",
												 carriers->relation, carriers->mx_col,
												 carriers->mx_col),
										2, ttid);
	plans->relabel = PrepareGeneric(psprintf("UPDATE %s c SET %s = d.label"
											 " FROM unnest($1, $2, $3) AS d(domain, label, old)"
											 " WHERE d.old IS NOT NULL AND c.%s = d.old"
											 " AND pw.email_domain(c.%s) = d.domain",
											 carriers->relation, carriers->mx_col,
											 carriers->mx_col, carriers->email_col),
									3, t3);
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
WriteOutcomes(WritePlans *plans, PwDomainJob *jobs, int njobs, bool cached)
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
	values[5] = Int32GetDatum(pw_recheck_after);
	values[6] = Int32GetDatum(pw_retry_after);
	if (SPI_execute_plan(cached ? plans->upsert : plans->insert, values, NULL,
						 false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write pw.mx_domains");
}

/*
 * Labels the carriers found by the discovery query (by row version, in
 * physical order) of the labelled jobs of a batch.
 */
static uint64
WriteLabelsByTid(WritePlans *plans, PwDomainJob *jobs, int njobs)
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
WriteLabelsByDomain(WritePlans *plans, PwDomainJob *jobs, int njobs)
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
		PwDomainJob *j = &jobs[i];

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

/*
 * Writes a batch's outcomes to pw.mx_domains and its labels to the
 * carriers; adds to the counts.
 */
static void
WriteChunk(WritePlans *plans, PwDomainJob *jobs, int njobs, PwMxTagCounts *counts)
{
	for (int i = 0; i < njobs; i++)
	{
		PwDomainJob *j = &jobs[i];

		if (strcmp(j->outcome, PW_OUT_INVALID) != 0)
			counts->looked_up++;
		if (strcmp(j->outcome, PW_OUT_FAILED) == 0)
			counts->failed++;
		else if (strcmp(j->outcome, PW_OUT_INVALID) == 0)
			counts->invalid++;
		else if (strcmp(j->label, "none") == 0)
			counts->none++;
		else
			counts->tagged++;
	}
	WriteOutcomes(plans, jobs, njobs, false);
	WriteOutcomes(plans, jobs, njobs, true);
	counts->carriers += WriteLabelsByTid(plans, jobs, njobs);
	counts->carriers += WriteLabelsByDomain(plans, jobs, njobs);
}

/* Batches alive at once: the one being written and two being resolved */
#define TAG_RING 3

/* One batch of domains in its own memory */
typedef struct TagBatch
{
	MemoryContext cxt;
	PwDomainJob *jobs;
	int			njobs;
} TagBatch;

/*
 * Fetches the next batch of up to want domains from the cursor into
 * batch's memory; invalid names are done at once (never sent to DNS).
 */
static void
FetchBatch(Portal portal, int want, TagBatch *batch)
{
	MemoryContext old;

	MemoryContextReset(batch->cxt);
	batch->njobs = 0;
	batch->jobs = NULL;
	if (want <= 0)
		return;
	SPI_cursor_fetch(portal, true, want);
	old = MemoryContextSwitchTo(batch->cxt);
	batch->njobs = (int) SPI_processed;
	batch->jobs = palloc0(sizeof(PwDomainJob) * Max(batch->njobs, 1));
	for (int i = 0; i < batch->njobs; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		PwDomainJob *job = &batch->jobs[i];
		PwDomainStatus st;
		bool		isnull;

		job->domain = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		job->old_label = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		job->tids = SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull);
		job->tids = isnull ? (Datum) 0 : datumCopy(job->tids, false, -1);
		job->cached = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 4, &isnull));
		job->step = PW_STEP_MX;
		st = MxDomainNormalize(job->domain, strlen(job->domain), job->qname);
		if (st != PW_DOMAIN_OK)
		{
			/* a name not in Unicode may be a valid one: failed, not none */
			bool		unicode = st != PW_DOMAIN_NOT_UNICODE;

			job->step = PW_STEP_DONE;
			job->outcome = unicode ? PW_OUT_INVALID : PW_OUT_FAILED;
			job->label = unicode ? "none" : NULL;
			job->error = PwDomainStatusText(st);
		}
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Tags up to max_domains untagged or due domains: propagates cached labels
 * to untagged carriers, then resolves new and due domains in batches of
 * tag_batch_size, writing each batch.  With dns_process on and more than one
 * batch to do, a separate resolver process looks up the next batch while
 * this backend writes the current one.  Must be called connected to SPI,
 * inside a transaction; the caller commits.
 */
void
PwMxTagRun(int max_domains, PwMxTagCounts *counts)
{
	PwCarriers	carriers;
	MemoryContext runcxt;
	MemoryContext oldcxt;
	PwSuffixRule *rules;
	size_t		nrules;
	PwResolver *res = NULL;
	PwDnsProcess *proc = NULL;
	WritePlans	plans;
	Portal		portal;
	char	   *sql;
	TimestampTz start = GetCurrentTimestamp();
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];
	int			remaining = max_domains;
	long		secs;
	int			usecs;
	int			save_nestlevel;

	memset(counts, 0, sizeof(*counts));

	/*
	 * The batch statements' row estimates are far off and would have them
	 * JIT-compiled at every batch, which costs more than running them: JIT
	 * is off for the run, as a function's SET clause would do it.
	 */
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	/* and the caller's search_path cannot redirect its queries */
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	runcxt = AllocSetContextCreate(CurrentMemoryContext, "pw mx_tag run",
								   ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(runcxt);

	/* one tagging run at a time (pw.mx_tag() callers and the worker) */
	if (SPI_execute("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pw_deliverability.mx_tag'))",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not take the tagging lock");
	/* and no one else adds domains: new ones are inserted without a check */
	if (SPI_execute("LOCK TABLE pw.mx_domains IN SHARE ROW EXCLUSIVE MODE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not lock pw.mx_domains");
	PwCarriersLoad(&carriers);
	PwSuffixRulesLoad(runcxt, &rules, &nrules);

	/* carriers of already resolved domains need no DNS at all */
	sql = psprintf("UPDATE %s c SET %s = m.label FROM pw.mx_domains m"
				   " WHERE c.%s IS NULL AND m.label IS NOT NULL"
				   " AND m.domain = pw.email_domain(c.%s)",
				   carriers.relation, carriers.mx_col, carriers.mx_col,
				   carriers.email_col);
	if (SPI_execute(sql, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update carriers");
	counts->carriers += SPI_processed;

	if (max_domains > 0)
	{
		TagBatch	ring[TAG_RING];
		int			h = 0;
		int			ahead = 0;
		bool		exhausted = false;
		int			batch_size;

		/*
		 * New domains of untagged carriers with those carriers' row versions
		 * (in a plain table; a partitioned one is updated by domain), then
		 * cached domains that are due.
		 */
		sql = psprintf("SELECT n.domain, NULL::text, n.tids, false FROM ("
					   "  SELECT pw.email_domain(c.%s) AS domain, %s AS tids FROM %s c"
					   "  WHERE c.%s IS NULL GROUP BY 1) n"
					   " WHERE n.domain IS NOT NULL"
					   " AND NOT EXISTS (SELECT 1 FROM pw.mx_domains m WHERE m.domain = n.domain)"
					   " UNION ALL"
					   " (SELECT m.domain, m.label, NULL::tid[], true FROM pw.mx_domains m"
					   "  WHERE m.next_check_at <= now() ORDER BY m.next_check_at LIMIT $1)"
					   " LIMIT $1",
					   carriers.email_col,
					   get_rel_relkind(carriers.relid) == RELKIND_RELATION ?
					   "array_agg(c.ctid)" : "NULL::tid[]",
					   carriers.relation, carriers.mx_col);
		args[0] = Int32GetDatum(max_domains);
		portal = SPI_cursor_open_with_args(NULL, sql, 1, argtypes, args, NULL,
										   false, 0);
		/* also checks the resolver settings before any process starts */
		res = PwResolverCreate(runcxt);
		PrepareWritePlans(&carriers, &plans);
		for (int i = 0; i < TAG_RING; i++)
		{
			ring[i].cxt = AllocSetContextCreate(runcxt, "pw mx_tag batch",
												ALLOCSET_DEFAULT_SIZES);
			ring[i].njobs = 0;
		}

		/*
		 * With a resolver process, batches start at an eighth of
		 * tag_batch_size and double, so the first wait for DNS is short, and
		 * the process works two batches ahead of the writes: the lookups of
		 * a batch take about half as long as its writes but come in bursts.
		 */
		batch_size = pw_dns_process ? Max(pw_tag_batch_size / 8, 1) : pw_tag_batch_size;
		FetchBatch(portal, Min(remaining, batch_size), &ring[0]);
		remaining -= ring[0].njobs;
		if (pw_dns_process && remaining > 0 && ring[0].njobs == batch_size)
		{
			proc = PwDnsProcessStart(rules, nrules, pw_tag_batch_size);
			if (proc == NULL)
				ereport(DEBUG1,
						(errmsg("pw mx_tag: no background worker slot for a resolver process, resolving in this backend")));
			else
				PwDnsProcessSubmit(proc, ring[0].jobs, ring[0].njobs);
		}

		while (ring[h].njobs > 0)
		{
			TagBatch   *cur = &ring[h];
			TimestampTz t0;
			TimestampTz t1;

			CHECK_FOR_INTERRUPTS();
			t0 = GetCurrentTimestamp();
			/* the next batches (one without a process): fetched, handed over */
			while (!exhausted && ahead < (proc ? 2 : 1))
			{
				TagBatch   *b = &ring[(h + ahead + 1) % TAG_RING];

				batch_size = Min(batch_size * 2, pw_tag_batch_size);
				FetchBatch(portal, Min(remaining, batch_size), b);
				remaining -= b->njobs;
				ahead++;
				if (b->njobs == 0)
					exhausted = true;
				else if (proc != NULL)
					PwDnsProcessSubmit(proc, b->jobs, b->njobs);
			}
			if (proc != NULL)
				PwDnsProcessCollect(proc, cur->jobs, cur->njobs, cur->cxt);
			else
				PwLookupDomains(res, cur->cxt, rules, nrules, cur->jobs, cur->njobs);
			t1 = GetCurrentTimestamp();
			WriteChunk(&plans, cur->jobs, cur->njobs, counts);
			elog(DEBUG1, "pw mx_tag: batch of %d domains: %s %.3f s, writes %.3f s",
				 cur->njobs, proc ? "fetch and wait for DNS" : "fetch and DNS",
				 (t1 - t0) / 1e6, (GetCurrentTimestamp() - t1) / 1e6);
			cur->njobs = 0;
			h = (h + 1) % TAG_RING;
			ahead--;
		}
		if (proc != NULL)
			PwDnsProcessStop(proc);
		SPI_cursor_close(portal);
		SPI_freeplan(plans.insert);
		SPI_freeplan(plans.upsert);
		SPI_freeplan(plans.update);
		SPI_freeplan(plans.update_tids);
		SPI_freeplan(plans.relabel);
		PwResolverDestroy(res);
	}

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(runcxt);
	AtEOXact_GUC(true, save_nestlevel);
	TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
	counts->seconds = secs + usecs / 1e6;
}

/*
 * pw.mx_tag(max_domains int DEFAULT 20000): tags up to max_domains domains
 * in this backend and transaction; one row of counts.
 */
Datum
pw_mx_tag(PG_FUNCTION_ARGS)
{
	int			max_domains = PG_ARGISNULL(0) ? 20000 : PG_GETARG_INT32(0);
	PwMxTagCounts c;
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {0};

	if (max_domains < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_domains must not be negative")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SPI_connect();
	PwMxTagRun(max_domains, &c);
	SPI_finish();

	values[0] = Int64GetDatum(c.looked_up);
	values[1] = Int64GetDatum(c.tagged);
	values[2] = Int64GetDatum(c.none);
	values[3] = Int64GetDatum(c.invalid);
	values[4] = Int64GetDatum(c.failed);
	values[5] = Int64GetDatum(c.carriers);
	values[6] = Float8GetDatum(c.seconds);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/* State of a pw.resolve_mx() call */
typedef struct ResolveOne
{
	bool		done;
	int			status;
	struct ares_mx_reply *mx;
} ResolveOne;

/* Completion of pw.resolve_mx()'s query. */
static void
ResolveOneDone(void *arg, int status, unsigned char *abuf, int alen)
{
	ResolveOne *r = (ResolveOne *) arg;

	r->done = true;
	r->status = status;
	if (status == ARES_SUCCESS)
		r->status = ares_parse_mx_reply(abuf, alen, &r->mx);
}

/*
 * pw.resolve_mx(domain text): the domain's MX records, lowest preference
 * first; no rows for NXDOMAIN or no MX; an error when DNS fails.
 */
Datum
pw_resolve_mx(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *t = PG_GETARG_TEXT_PP(0);
	char		qname[PW_NAME_BUF];
	PwDomainStatus st;
	PwResolver *res;
	ResolveOne	r = {0};
	struct ares_mx_reply **sorted;
	int			n = 0;

	st = MxDomainNormalize(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), qname);
	if (st != PW_DOMAIN_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid domain name \"%s\": %s", text_to_cstring(t),
						PwDomainStatusText(st)),
				 errhint("A domain needs two or more labels of letters, digits and hyphens.")));

	InitMaterializedSRF(fcinfo, 0);
	res = PwResolverCreate(CurrentMemoryContext);
	PwResolverQuery(res, qname, ns_t_mx, ResolveOneDone, &r);
	while (!r.done)
		PwResolverStep(res, false);
	PwResolverDestroy(res);

	if (r.status == ARES_ENOTFOUND || r.status == ARES_ENODATA)
		PG_RETURN_NULL();
	if (r.status != ARES_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("MX lookup of \"%s\" failed: %s", qname, PwDnsStatusText(r.status)),
				 errhint("Check " PW_GUC_PREFIX ".dns_servers and the servers' health.")));
	for (struct ares_mx_reply *m = r.mx; m != NULL; m = m->next)
		n++;
	sorted = palloc(sizeof(*sorted) * Max(n, 1));
	n = 0;
	for (struct ares_mx_reply *m = r.mx; m != NULL; m = m->next)
		sorted[n++] = m;
	qsort(sorted, n, sizeof(sorted[0]), PwMxCmp);
	for (int i = 0; i < n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {0};

		values[0] = Int32GetDatum(sorted[i]->priority);
		values[1] = CStringGetTextDatum(sorted[i]->host[0] ? sorted[i]->host : ".");
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	ares_free_data(r.mx);
	PG_RETURN_NULL();
}
