/*-------------------------------------------------------------------------
 *
 * mx_tag.c
 *	  The tagging run: look up the MX (then A, AAAA) records of untagged or
 *	  stale recipient domains, classify them, keep the outcome in
 *	  pw.mx_domains and propagate labels to the carriers' MX column
 *	  (mx_write.c).  Domains come from one discovery cursor in batches; a
 *	  ring of batches lets a separate resolver process (dns_process.c) look
 *	  up the next ones while this backend writes the current one.
 *	  pw.mx_tag() (mx_sql.c) runs it in the calling backend, the background
 *	  tagger (worker.c) in its own transactions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common/runs.h"
#include "common/spi.h"
#include "mx.h"
#include "pw_deliverability.h"

static int	recheck_after = 30 * 86400;
static int	retry_after = 300;
static int	tag_batch_size = 10000;
static bool use_dns_process = true;

/* Defines the tagging GUCs. */
void
MxTagInit(void)
{
	DefineCustomIntVariable(PW_GUC_PREFIX ".recheck_after",
							"Sets the age after which a resolved domain is looked up again.",
							NULL, &recheck_after, 30 * 86400, 60, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".retry_after",
							"Sets the delay before a failed lookup is retried; it doubles with each failure, up to recheck_after.",
							NULL, &retry_after, 300, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".tag_batch_size",
							"Sets how many domains MX tagging resolves and writes per batch.",
							NULL, &tag_batch_size, 10000, 1, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable(PW_GUC_PREFIX ".dns_process",
							 "Resolves in a separate background process while the tagging backend writes the previous batch.",
							 "Used when a run has more than one batch and a background worker slot is free.",
							 &use_dns_process, true,
							 PGC_USERSET, 0, NULL, NULL, NULL);
}

/* Whether the extension is installed in the current database (needs a transaction). */
bool
MxTagInstalled(void)
{
	Oid			nsp = get_namespace_oid("pw", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("mx_domains", nsp));
}

/* Batches alive at once: the one being written and two being resolved */
#define TAG_RING 3

/* Columns of the discovery query */
#define DUE_COL_DOMAIN		1
#define DUE_COL_OLD_LABEL	2
#define DUE_COL_TIDS		3
#define DUE_COL_CACHED		4

/* One batch of domains in its own memory */
typedef struct TagBatch
{
	MemoryContext cxt;
	MxDomainJob *jobs;
	int			njobs;
} TagBatch;

/* A run's batches: the cursor, the ring and where their DNS is done */
typedef struct TagPipeline
{
	Portal		portal;			/* the discovery query */
	int			remaining;		/* domains the run may still fetch */
	int			batch_size;		/* size of the next batch fetched */
	bool		exhausted;		/* the cursor returned no more domains */
	TagBatch	ring[TAG_RING];
	int			head;			/* the batch written next */
	int			ahead;			/* batches fetched after it */
	const MxSuffixRule *rules;
	size_t		nrules;
	MxResolver *res;			/* resolves in this backend ... */
	MxDnsProcess *proc;			/* ... unless a resolver process does */
	MxWritePlans *plans;
	const PwCarriers *carriers; /* write-locked before each batch's writes */
	MxTagProgress progress;		/* as pw.mx_tag_progress shows it */
} TagPipeline;

/*
 * Sets the run's GUCs (undone by AtEOXact_GUC() with the returned nest
 * level): the batch statements' row estimates are far off and would have
 * them JIT-compiled at every batch, which costs more than running them, so
 * JIT is off for the run, as a function's SET clause would do it; and the
 * caller's search_path cannot redirect its queries.
 */
static int
SetRunSettings(void)
{
	int			save_nestlevel = NewGUCNestLevel();

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return save_nestlevel;
}

/*
 * Takes the run's locks in the order of docs/internals.md ("Lock order"):
 * the extension (a DROP EXTENSION waits for the run), one tagging run at a
 * time (pw.mx_tag() callers and the worker), and no one else adds domains
 * (new ones are inserted without a check).  The carriers write lock comes
 * later, right before the first carrier row: after the first batch's
 * lookups, which the other writers of carriers then do not wait for.
 */
static void
LockTaggingRun(void)
{
	(void) PwLockExtension(false);
	PwLockNamedAdvisory("pw_deliverability.mx_tag", "the tagging lock (one tagging run at a time)");
	PwSpiRun("LOCK TABLE pw.mx_domains IN SHARE ROW EXCLUSIVE MODE", SPI_OK_UTILITY);
}

/*
 * Opens the discovery cursor: new domains of untagged carriers with those
 * carriers' row versions (in a plain table; a partitioned one is updated
 * by domain), then cached domains that are due; max_domains in all.
 */
static Portal
OpenDueDomains(const PwCarriers *carriers, int max_domains)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];
	char	   *sql;

	sql = psprintf("SELECT n.domain, NULL::text, n.tids, false FROM ("
				   "  SELECT pw.email_domain(c.%s) AS domain, %s AS tids FROM %s c"
				   "  WHERE c.%s IS NULL GROUP BY 1) n"
				   " WHERE n.domain IS NOT NULL"
				   " AND NOT EXISTS (SELECT 1 FROM pw.mx_domains m WHERE m.domain = n.domain)"
				   " UNION ALL"
				   " (SELECT m.domain, m.label, NULL::tid[], true FROM pw.mx_domains m"
				   "  WHERE m.next_check_at <= now() ORDER BY m.next_check_at LIMIT $1)"
				   " LIMIT $1",
				   carriers->email_col,
				   get_rel_relkind(carriers->relid) == RELKIND_RELATION ?
				   "array_agg(c.ctid)" : "NULL::tid[]",
				   carriers->relation, carriers->mx_col);
	args[0] = Int32GetDatum(max_domains);
	return SPI_cursor_open_with_args(NULL, sql, 1, argtypes, args, NULL,
									 false, 0);
}

/* Reads a row of the discovery query into a job (in the current context). */
static void
ReadDueDomain(HeapTuple tup, TupleDesc desc, MxDomainJob *job)
{
	bool		isnull;
	Datum		cached;

	job->domain = SPI_getvalue(tup, desc, DUE_COL_DOMAIN);
	if (job->domain == NULL)
		elog(ERROR, "the tagging discovery query returned a NULL domain");
	job->old_label = SPI_getvalue(tup, desc, DUE_COL_OLD_LABEL);
	job->tids = SPI_getbinval(tup, desc, DUE_COL_TIDS, &isnull);
	job->tids = isnull ? (Datum) 0 : datumCopy(job->tids, false, -1);
	cached = SPI_getbinval(tup, desc, DUE_COL_CACHED, &isnull);
	if (isnull)
		elog(ERROR, "the tagging discovery query returned a NULL cached flag");
	job->cached = DatumGetBool(cached);
}

/*
 * Fetches the next batch of up to want domains from the cursor into
 * batch's memory; invalid names are done at once (never sent to DNS).
 */
static void
FetchDomainBatch(Portal portal, int want, TagBatch *batch)
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
	batch->jobs = palloc0(sizeof(MxDomainJob) * Max(batch->njobs, 1));
	for (int i = 0; i < batch->njobs; i++)
	{
		MxDomainJob *job = &batch->jobs[i];
		MxDomainStatus st;

		ReadDueDomain(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, job);
		job->step = MX_STEP_MX;
		st = MxDomainNormalizeDb(job->domain, strlen(job->domain), job->qname);
		if (st != MX_DOMAIN_OK)
		{
			/* a name not in Unicode may be a valid one: failed, not none */
			bool		unicode = st != MX_DOMAIN_NOT_UNICODE;

			job->step = MX_STEP_DONE;
			job->outcome = unicode ? MX_OUTCOME_INVALID : MX_OUTCOME_FAILED;
			job->label = unicode ? MX_LABEL_NONE : NULL;
			job->error = MxDomainStatusText(st);
		}
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Fetches the first batch and, when dns_process is on and more than one
 * batch is to do, starts a resolver process and hands it the batch.  With
 * a resolver process, batches start at an eighth of tag_batch_size and
 * double, so the first wait for DNS is short, and the process works two
 * batches ahead of the writes: the lookups of a batch take about half as
 * long as its writes but come in bursts.
 */
static void
StartPipeline(TagPipeline *pl)
{
	TagBatch   *first = &pl->ring[0];

	pl->batch_size = use_dns_process ? Max(tag_batch_size / 8, 1) : tag_batch_size;
	FetchDomainBatch(pl->portal, Min(pl->remaining, pl->batch_size), first);
	pl->remaining -= first->njobs;
	pl->progress.fetched += first->njobs;
	if (use_dns_process && pl->remaining > 0 && first->njobs == pl->batch_size)
	{
		pl->proc = MxDnsProcessStart(pl->rules, pl->nrules, tag_batch_size);
		if (pl->proc == NULL)
			ereport(DEBUG1,
					(errmsg("pw mx_tag: no background worker slot for a resolver process, resolving in this backend")));
		else
			MxDnsProcessSubmit(pl->proc, first->jobs, first->njobs);
	}
}

/*
 * Fetches the batches after the current one (two with a resolver process,
 * one without) and hands them to the process.
 */
static void
FetchAhead(TagPipeline *pl)
{
	while (!pl->exhausted && pl->ahead < (pl->proc ? 2 : 1))
	{
		TagBatch   *b = &pl->ring[(pl->head + pl->ahead + 1) % TAG_RING];

		pl->batch_size = Min(pl->batch_size * 2, tag_batch_size);
		FetchDomainBatch(pl->portal, Min(pl->remaining, pl->batch_size), b);
		pl->remaining -= b->njobs;
		pl->progress.fetched += b->njobs;
		pl->ahead++;
		if (b->njobs == 0)
			pl->exhausted = true;
		else if (pl->proc != NULL)
			MxDnsProcessSubmit(pl->proc, b->jobs, b->njobs);
	}
}

/* Reports a written batch: its domains and the run's counts so far. */
static void
ReportBatchWritten(TagPipeline *pl, int njobs, const MxTagCounts *counts)
{
	pl->progress.tagged = counts->tagged;
	pl->progress.none = counts->none + counts->invalid;
	pl->progress.failed = counts->failed;
	pl->progress.carriers = counts->carriers;
	pl->progress.written += njobs;
	pl->progress.batches++;
	MxProgressReport(MX_PHASE_LOOKUP, &pl->progress);
}

/*
 * Resolves and writes batch after batch until the cursor is exhausted;
 * adds to the counts.
 */
static void
RunPipeline(TagPipeline *pl, MxTagCounts *counts)
{
	StartPipeline(pl);
	while (pl->ring[pl->head].njobs > 0)
	{
		TagBatch   *cur = &pl->ring[pl->head];
		TimestampTz t0;
		TimestampTz t1;

		CHECK_FOR_INTERRUPTS();
		t0 = GetCurrentTimestamp();
		FetchAhead(pl);
		MxProgressReport(MX_PHASE_LOOKUP, &pl->progress);
		if (pl->proc != NULL)
			MxDnsProcessCollect(pl->proc, cur->jobs, cur->njobs, cur->cxt);
		else
			MxLookupDomains(pl->res, cur->cxt, pl->rules, pl->nrules,
							cur->jobs, cur->njobs);
		t1 = GetCurrentTimestamp();
		pl->progress.looked_up += cur->njobs;
		MxProgressReport(MX_PHASE_WRITE, &pl->progress);
		PwLockCarriersWrites(pl->carriers);
		MxWriteBatch(pl->plans, cur->jobs, cur->njobs, counts);
		ReportBatchWritten(pl, cur->njobs, counts);
		elog(DEBUG1, "pw mx_tag: batch of %d domains: %s %.3f s, writes %.3f s",
			 cur->njobs, pl->proc ? "fetch and wait for DNS" : "fetch and DNS",
			 (t1 - t0) / 1e6, (GetCurrentTimestamp() - t1) / 1e6);
		cur->njobs = 0;
		pl->head = (pl->head + 1) % TAG_RING;
		pl->ahead--;
	}
}

/*
 * Resolves and writes up to max_domains new and due domains, in run
 * memory runcxt; their progress counts come back in *progress.
 */
static void
TagDueDomains(const PwCarriers *carriers, const MxSuffixRule *rules,
			  size_t nrules, int max_domains, MemoryContext runcxt,
			  MxTagCounts *counts, MxTagProgress *progress)
{
	TagPipeline pl;

	memset(&pl, 0, sizeof(pl));
	pl.rules = rules;
	pl.nrules = nrules;
	pl.remaining = max_domains;
	pl.carriers = carriers;
	pl.portal = OpenDueDomains(carriers, max_domains);
	/* also checks the resolver settings before any process starts */
	pl.res = MxResolverCreate(runcxt);
	pl.plans = MxWritePlansPrepare(carriers, recheck_after, retry_after);
	for (int i = 0; i < TAG_RING; i++)
	{
		pl.ring[i].cxt = AllocSetContextCreate(runcxt, "pw mx_tag batch",
											   ALLOCSET_DEFAULT_SIZES);
		pl.ring[i].njobs = 0;
	}

	RunPipeline(&pl, counts);
	*progress = pl.progress;

	if (pl.proc != NULL)
		MxDnsProcessStop(pl.proc);
	SPI_cursor_close(pl.portal);
	MxWritePlansFree(pl.plans);
	MxResolverDestroy(pl.res);
}

/*
 * The tagging run of MxTagRun(), reported in this backend's progress slot;
 * the counts of the domains' run come back in *progress.
 */
static void
RunTagging(int max_domains, MxTagCounts *counts, MxTagProgress *progress)
{
	PwCarriers	carriers;
	MemoryContext runcxt;
	MemoryContext oldcxt;
	MxSuffixRule *rules;
	size_t		nrules;
	int			save_nestlevel;

	save_nestlevel = SetRunSettings();
	runcxt = AllocSetContextCreate(CurrentMemoryContext, "pw mx_tag run",
								   ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(runcxt);

	LockTaggingRun();
	PwCarriersLoad(&carriers);
	MxSuffixRulesLoad(runcxt, &rules, &nrules);

	if (max_domains > 0)
		TagDueDomains(&carriers, rules, nrules, max_domains, runcxt, counts,
					  progress);
	/* also this run's carriers whose row changed since the discovery */
	MxProgressReport(MX_PHASE_CACHED_LABELS, progress);
	PwLockCarriersWrites(&carriers);
	counts->carriers += MxWriteCachedLabels(&carriers);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(runcxt);
	AtEOXact_GUC(true, save_nestlevel);
}

/* Records the tagging run in pw.runs with its counts. */
static void
RecordTaggingRun(int max_domains, const MxTagCounts *c)
{
	StringInfoData counts;

	PwRunCountsInit(&counts);
	PwRunCount(&counts, "max_domains", max_domains);
	PwRunCount(&counts, "looked_up", c->looked_up);
	PwRunCount(&counts, "tagged", c->tagged);
	PwRunCount(&counts, "none", c->none);
	PwRunCount(&counts, "invalid", c->invalid);
	PwRunCount(&counts, "failed", c->failed);
	PwRunCount(&counts, "carriers_updated", c->carriers);
	PwRunCountSeconds(&counts, "seconds", c->seconds);
	(void) PwRunRecord(PW_RUN_MX_TAG, NULL, &counts);
}

/*
 * Tags up to max_domains untagged or due domains: resolves new and due
 * domains in batches of tag_batch_size, writing each batch, then
 * propagates cached labels to the carriers still untagged.  With
 * dns_process on and more than one batch to do, a separate resolver process
 * looks up the next batch while this backend writes the current one.  The
 * run shows in pw.mx_tag_progress until it ends or fails, as the background
 * tagger's when background.  Must be called connected to SPI, inside a
 * transaction; the caller commits.
 */
void
MxTagRun(int max_domains, bool background, MxTagCounts *counts)
{
	TimestampTz start = GetCurrentTimestamp();
	MxTagProgress progress;
	long		secs;
	int			usecs;

	memset(counts, 0, sizeof(*counts));
	memset(&progress, 0, sizeof(progress));
	PwRunStart(PW_RUN_MX_TAG, NULL);
	MxProgressStart(max_domains, background);
	PG_TRY();
	{
		RunTagging(max_domains, counts, &progress);
	}
	PG_FINALLY();
	{
		MxProgressEnd();
	}
	PG_END_TRY();
	TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
	counts->seconds = secs + usecs / 1e6;
	if (counts->looked_up > 0 && counts->failed == counts->looked_up)
		ereport(WARNING,
				(errmsg("all %lld DNS lookups of this tagging run failed",
						(long long) counts->looked_up),
				 errdetail("No resolver answered: the failed domains are retried later, "
						   "their carriers stay untagged."),
				 errhint("Check pw_deliverability.dns_servers and that the server answers: "
						 "SELECT * FROM pw.resolve_mx('gmail.com');")));
	/* the background tagger's idle rounds are not runs */
	if (!background || counts->looked_up > 0 || counts->carriers > 0)
		RecordTaggingRun(max_domains, counts);
	else
		PwRunUnwatch();
}
