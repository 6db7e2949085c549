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
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "mx.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_mx_tag);
PG_FUNCTION_INFO_V1(pw_resolve_mx);

int			pw_recheck_after = 30 * 86400;
int			pw_retry_after = 300;
int			pw_tag_batch_size = 10000;

/* Where a domain's lookup stands */
typedef enum JobStep
{
	STEP_MX,
	STEP_A,
	STEP_AAAA,
	STEP_DONE
} JobStep;

/* Outcomes, as stored in pw.mx_domains.outcome */
#define OUT_MX			"mx"
#define OUT_ADDRESS		"address"
#define OUT_NULL_MX		"null_mx"
#define OUT_NXDOMAIN	"nxdomain"
#define OUT_NO_RECORDS	"no_records"
#define OUT_INVALID		"invalid"
#define OUT_FAILED		"failed"

/* One domain of a chunk */
typedef struct DomainJob
{
	char	   *domain;			/* the cache key: pw.email_domain() form */
	char	   *old_label;		/* its label before this lookup, or NULL */
	char		qname[PW_NAME_BUF]; /* normalised name sent to DNS */
	JobStep		step;
	const char *outcome;
	char	   *label;
	char	   *hosts;			/* exchanges in preference order, ' '-joined */
	const char *error;
} DomainJob;

/* The state of one chunk's DNS work */
typedef struct ChunkState
{
	PwResolver *res;
	MemoryContext cxt;			/* the chunk's memory */
	const PwSuffixRule *rules;
	size_t		nrules;
	DomainJob **queue;			/* jobs waiting for their next query */
	int			qhead;
	int			qtail;
} ChunkState;

/* A job and the chunk it belongs to, as the callback argument */
typedef struct JobRef
{
	ChunkState *cs;
	DomainJob  *job;
} JobRef;

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
}

/* Whether the extension is installed in the current database (needs a transaction). */
bool
PwMxTagInstalled(void)
{
	Oid			nsp = get_namespace_oid("pw", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("mx_domains", nsp));
}

/* Copies a string into the chunk, replacing bytes that are not printable ASCII. */
static char *
CleanHost(MemoryContext cxt, const char *s)
{
	char	   *out = MemoryContextStrdup(cxt, s);

	for (char *p = out; *p; p++)
		if ((unsigned char) *p <= ' ' || (unsigned char) *p > '~')
			*p = '?';
		else if (*p >= 'A' && *p <= 'Z')
			*p = *p - 'A' + 'a';
	return out;
}

/* Finishes a job with an outcome (label NULL for failures). */
static void
Finish(ChunkState *cs, DomainJob *job, const char *outcome, const char *label,
	   const char *error)
{
	job->step = STEP_DONE;
	job->outcome = outcome;
	job->label = label ? MemoryContextStrdup(cs->cxt, label) : NULL;
	job->error = error;
}

/* Queues a job for its next query (A after MX, AAAA after A). */
static void
Advance(ChunkState *cs, DomainJob *job, JobStep next)
{
	job->step = next;
	cs->queue[cs->qtail++] = job;
}

/* The implicit-MX label of a domain: "mx:" + its registrable domain. */
static void
AddressLabel(DomainJob *job, char *out)
{
	const char *reg = PwRegistrableDomain(job->qname);

	snprintf(out, PW_NAME_BUF, "mx:%s", reg ? reg : job->qname);
}

/* qsort order of MX replies: preference, then host name. */
static int
MxCmp(const void *a, const void *b)
{
	const struct ares_mx_reply *x = *(const struct ares_mx_reply *const *) a;
	const struct ares_mx_reply *y = *(const struct ares_mx_reply *const *) b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	return strcmp(x->host, y->host);
}

/* Handles an MX answer. */
static void
OnMx(ChunkState *cs, DomainJob *job, unsigned char *abuf, int alen)
{
	struct ares_mx_reply *mx = NULL;
	struct ares_mx_reply **sorted;
	const char **hosts;
	size_t	   *lens;
	int			n = 0;
	int			rc = ares_parse_mx_reply(abuf, alen, &mx);
	char		label[PW_NAME_BUF];
	StringInfoData buf;

	if (rc == ARES_ENODATA)
	{
		Advance(cs, job, STEP_A);
		return;
	}
	if (rc != ARES_SUCCESS)
	{
		Finish(cs, job, OUT_FAILED, NULL, PwDnsStatusText(rc));
		return;
	}
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next)
		n++;
	if (n == 0)
	{
		ares_free_data(mx);
		Advance(cs, job, STEP_A);
		return;
	}
	sorted = MemoryContextAlloc(cs->cxt, sizeof(*sorted) * n);
	hosts = MemoryContextAlloc(cs->cxt, sizeof(*hosts) * n);
	lens = MemoryContextAlloc(cs->cxt, sizeof(*lens) * n);
	n = 0;
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next)
		sorted[n++] = m;
	qsort(sorted, n, sizeof(sorted[0]), MxCmp);
	{
		MemoryContext old = MemoryContextSwitchTo(cs->cxt);

		initStringInfo(&buf);
		for (int i = 0; i < n; i++)
		{
			const char *h = sorted[i]->host[0] ? sorted[i]->host : ".";

			hosts[i] = h;
			lens[i] = strlen(h);
			if (i > 0)
				appendStringInfoChar(&buf, ' ');
			appendStringInfoString(&buf, CleanHost(cs->cxt, h));
		}
		MemoryContextSwitchTo(old);
	}
	job->hosts = buf.data;
	if (!PwClassifyExchanges(cs->rules, cs->nrules, hosts, lens, n, label))
	{
		bool		nullmx = lens[0] == 1 && hosts[0][0] == '.';

		Finish(cs, job, nullmx ? OUT_NULL_MX : OUT_NO_RECORDS, "none", NULL);
	}
	else
		Finish(cs, job, OUT_MX, label, NULL);
	ares_free_data(mx);
}

/* Handles an A or AAAA answer. */
static void
OnAddress(ChunkState *cs, DomainJob *job, unsigned char *abuf, int alen)
{
	int			naddr = 8;
	int			rc;
	char		label[PW_NAME_BUF];

	if (job->step == STEP_A)
	{
		struct ares_addrttl addrs[8];

		rc = ares_parse_a_reply(abuf, alen, NULL, addrs, &naddr);
	}
	else
	{
		struct ares_addr6ttl addrs[8];

		rc = ares_parse_aaaa_reply(abuf, alen, NULL, addrs, &naddr);
	}
	if (rc == ARES_SUCCESS && naddr > 0)
	{
		AddressLabel(job, label);
		Finish(cs, job, OUT_ADDRESS, label, NULL);
	}
	else if (rc == ARES_SUCCESS || rc == ARES_ENODATA)
	{
		if (job->step == STEP_A)
			Advance(cs, job, STEP_AAAA);
		else
			Finish(cs, job, OUT_NO_RECORDS, "none", NULL);
	}
	else
		Finish(cs, job, OUT_FAILED, NULL, PwDnsStatusText(rc));
}

/* Completion of one query of a job. */
static void
JobDone(void *arg, int status, unsigned char *abuf, int alen)
{
	JobRef	   *ref = (JobRef *) arg;
	ChunkState *cs = ref->cs;
	DomainJob  *job = ref->job;

	pfree(ref);
	if (status == ARES_SUCCESS)
	{
		if (job->step == STEP_MX)
			OnMx(cs, job, abuf, alen);
		else
			OnAddress(cs, job, abuf, alen);
	}
	else if (status == ARES_ENODATA)
	{
		/* NOERROR without records of that type: try the next type */
		if (job->step == STEP_MX)
			Advance(cs, job, STEP_A);
		else if (job->step == STEP_A)
			Advance(cs, job, STEP_AAAA);
		else
			Finish(cs, job, OUT_NO_RECORDS, "none", NULL);
	}
	else if (status == ARES_ENOTFOUND)
		Finish(cs, job, OUT_NXDOMAIN, "none", NULL);
	else
		Finish(cs, job, OUT_FAILED, NULL, PwDnsStatusText(status));
}

/* Sends the query of a job's current step. */
static void
Send(ChunkState *cs, DomainJob *job)
{
	JobRef	   *ref = MemoryContextAlloc(cs->cxt, sizeof(JobRef));
	int			type = job->step == STEP_MX ? ns_t_mx :
		job->step == STEP_A ? ns_t_a : ns_t_aaaa;

	ref->cs = cs;
	ref->job = job;
	PwResolverQuery(cs->res, job->qname, type, JobDone, ref);
}

/*
 * Resolves the valid jobs of a chunk: up to the concurrency limit in flight,
 * follow-up queries (A, AAAA) before new domains.
 */
static void
ResolveChunk(ChunkState *cs, DomainJob *jobs, int njobs)
{
	int			next = 0;

	cs->queue = MemoryContextAlloc(cs->cxt, sizeof(DomainJob *) * (2 * njobs + 1));
	cs->qhead = cs->qtail = 0;
	for (;;)
	{
		while (PwResolverCanSend(cs->res))
		{
			if (cs->qhead < cs->qtail)
				Send(cs, cs->queue[cs->qhead++]);
			else
			{
				while (next < njobs && jobs[next].step == STEP_DONE)
					next++;
				if (next >= njobs)
					break;
				Send(cs, &jobs[next++]);
			}
		}
		while (next < njobs && jobs[next].step == STEP_DONE)
			next++;
		if (cs->res->inflight == 0 && cs->qhead == cs->qtail && next >= njobs)
			break;
		PwResolverStep(cs->res, cs->qhead < cs->qtail || next < njobs);
	}
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
	SPIPlanPtr	insert;			/* outcomes into pw.mx_domains */
	SPIPlanPtr	update;			/* labels to untagged carriers */
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

	/*
	 * A success replaces everything; a failure keeps the last good answer,
	 * counts the attempt and backs off exponentially (capped at
	 * recheck_after); an invalid name is never checked again.
	 */
	plans->insert = PrepareGeneric(
								   "INSERT INTO pw.mx_domains AS m (domain, label, mx_hosts, outcome, resolved_at,"
								   " checked_at, next_check_at, attempts, last_error)"
								   " SELECT d.domain, d.label, string_to_array(d.hosts, ' '), d.outcome,"
								   "  CASE WHEN d.outcome <> 'failed' THEN now() END, now(),"
								   "  CASE WHEN d.outcome = 'invalid' THEN NULL"
								   "       WHEN d.outcome = 'failed' THEN now() + make_interval(secs => least($7, $6))"
								   "       ELSE now() + make_interval(secs => $6) END,"
								   "  CASE WHEN d.outcome = 'failed' THEN 1 ELSE 0 END, d.err"
								   " FROM unnest($1, $2, $3, $4, $5) AS d(domain, label, hosts, outcome, err)"
								   " ON CONFLICT (domain) DO UPDATE SET"
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
								   7, types);
	plans->update = PrepareGeneric(psprintf("UPDATE %s c SET %s = d.label"
											" FROM unnest($1, $2) AS d(domain, label)"
											" WHERE c.%s IS NULL AND d.label IS NOT NULL"
											" AND pw.email_domain(c.%s) = d.domain",
											carriers->relation, carriers->mx_col,
											carriers->mx_col, carriers->email_col),
								   2, types);
	plans->relabel = PrepareGeneric(psprintf("UPDATE %s c SET %s = d.label"
											 " FROM unnest($1, $2, $3) AS d(domain, label, old)"
											 " WHERE d.old IS NOT NULL AND c.%s = d.old"
											 " AND pw.email_domain(c.%s) = d.domain",
											 carriers->relation, carriers->mx_col,
											 carriers->mx_col, carriers->email_col),
									3, t3);
}

/*
 * Writes a chunk's outcomes to pw.mx_domains and its labels to the
 * carriers; adds to the counts.
 */
static void
WriteChunk(WritePlans *plans, DomainJob *jobs, int njobs, PwMxTagCounts *counts)
{
	char	  **domains = palloc(sizeof(char *) * njobs);
	char	  **labels = palloc(sizeof(char *) * njobs);
	char	  **hosts = palloc(sizeof(char *) * njobs);
	char	  **outcomes = palloc(sizeof(char *) * njobs);
	char	  **errors = palloc(sizeof(char *) * njobs);
	char	  **olds = palloc(sizeof(char *) * njobs);
	int			nchanged = 0;
	Datum		values[8];

	for (int i = 0; i < njobs; i++)
	{
		DomainJob  *j = &jobs[i];

		domains[i] = j->domain;
		labels[i] = j->label;
		hosts[i] = j->hosts;
		outcomes[i] = (char *) j->outcome;
		errors[i] = (char *) j->error;
		olds[i] = NULL;
		if (j->label != NULL && j->old_label != NULL && strcmp(j->label, j->old_label) != 0)
		{
			olds[i] = j->old_label;
			nchanged++;
		}
		if (strcmp(j->outcome, OUT_INVALID) != 0)
			counts->looked_up++;
		if (strcmp(j->outcome, OUT_FAILED) == 0)
			counts->failed++;
		else if (strcmp(j->outcome, OUT_INVALID) == 0)
			counts->invalid++;
		else if (strcmp(j->label, "none") == 0)
			counts->none++;
		else
			counts->tagged++;
	}
	values[0] = TextArray(domains, njobs);
	values[1] = TextArray(labels, njobs);
	values[2] = TextArray(hosts, njobs);
	values[3] = TextArray(outcomes, njobs);
	values[4] = TextArray(errors, njobs);
	values[5] = Int32GetDatum(pw_recheck_after);
	values[6] = Int32GetDatum(pw_retry_after);
	values[7] = TextArray(olds, njobs);

	if (SPI_execute_plan(plans->insert, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write pw.mx_domains");

	/* labels reach untagged carriers of these domains */
	if (SPI_execute_plan(plans->update, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update carriers");
	counts->carriers += SPI_processed;

	/* a relabelled domain moves its carriers from the old label */
	if (nchanged > 0)
	{
		Datum		v2[3] = {values[0], values[1], values[7]};

		if (SPI_execute_plan(plans->relabel, v2, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update carriers");
		counts->carriers += SPI_processed;
	}
}

/*
 * Tags up to max_domains untagged or due domains: propagates cached labels
 * to untagged carriers, then resolves new and due domains in batches of
 * tag_batch_size, writing each batch.  Must be called connected to SPI,
 * inside a transaction; the caller commits.
 */
void
PwMxTagRun(int max_domains, PwMxTagCounts *counts)
{
	PwCarriers	carriers;
	MemoryContext runcxt;
	MemoryContext chunkcxt;
	MemoryContext oldcxt;
	PwSuffixRule *rules;
	size_t		nrules;
	PwResolver *res = NULL;
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
	chunkcxt = AllocSetContextCreate(runcxt, "pw mx_tag batch",
									 ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(runcxt);

	/* one tagging run at a time (pw.mx_tag() callers and the worker) */
	if (SPI_execute("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pw_deliverability.mx_tag'))",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not take the tagging lock");
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
		/* new domains of untagged carriers, then cached domains that are due */
		sql = psprintf("SELECT n.domain, NULL::text FROM ("
					   "  SELECT DISTINCT pw.email_domain(c.%s) AS domain FROM %s c"
					   "  WHERE c.%s IS NULL) n"
					   " WHERE n.domain IS NOT NULL"
					   " AND NOT EXISTS (SELECT 1 FROM pw.mx_domains m WHERE m.domain = n.domain)"
					   " UNION ALL"
					   " (SELECT m.domain, m.label FROM pw.mx_domains m"
					   "  WHERE m.next_check_at <= now() ORDER BY m.next_check_at LIMIT $1)"
					   " LIMIT $1",
					   carriers.email_col, carriers.relation, carriers.mx_col);
		args[0] = Int32GetDatum(max_domains);
		portal = SPI_cursor_open_with_args(NULL, sql, 1, argtypes, args, NULL,
										   false, 0);
		res = PwResolverCreate(runcxt);
		PrepareWritePlans(&carriers, &plans);

		while (remaining > 0)
		{
			int			want = Min(remaining, pw_tag_batch_size);
			int			njobs;
			DomainJob  *jobs;
			ChunkState	cs;
			TimestampTz t0;
			TimestampTz t1;

			CHECK_FOR_INTERRUPTS();
			SPI_cursor_fetch(portal, true, want);
			njobs = (int) SPI_processed;
			if (njobs == 0)
				break;
			remaining -= njobs;

			MemoryContextSwitchTo(chunkcxt);
			jobs = palloc0(sizeof(DomainJob) * njobs);
			for (int i = 0; i < njobs; i++)
			{
				HeapTuple	tup = SPI_tuptable->vals[i];
				char	   *dom = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
				PwDomainStatus st;

				jobs[i].domain = dom;
				jobs[i].old_label = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
				jobs[i].step = STEP_MX;
				st = PwDomainNormalize(dom, strlen(dom), jobs[i].qname);
				if (st != PW_DOMAIN_OK)
				{
					jobs[i].step = STEP_DONE;
					jobs[i].outcome = OUT_INVALID;
					jobs[i].label = "none";
					jobs[i].error = PwDomainStatusText(st);
				}
			}
			SPI_freetuptable(SPI_tuptable);

			cs.res = res;
			cs.cxt = chunkcxt;
			cs.rules = rules;
			cs.nrules = nrules;
			t0 = GetCurrentTimestamp();
			ResolveChunk(&cs, jobs, njobs);
			t1 = GetCurrentTimestamp();
			WriteChunk(&plans, jobs, njobs, counts);
			elog(DEBUG1, "pw mx_tag: batch of %d domains: DNS %.3f s, writes %.3f s",
				 njobs, (t1 - t0) / 1e6, (GetCurrentTimestamp() - t1) / 1e6);

			MemoryContextSwitchTo(runcxt);
			MemoryContextReset(chunkcxt);
		}
		SPI_cursor_close(portal);
		SPI_freeplan(plans.insert);
		SPI_freeplan(plans.update);
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

	st = PwDomainNormalize(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), qname);
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
	qsort(sorted, n, sizeof(sorted[0]), MxCmp);
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
