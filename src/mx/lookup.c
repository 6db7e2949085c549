/*-------------------------------------------------------------------------
 *
 * lookup.c
 *	  Looking up a batch of domains: MX, then A and AAAA when there is no MX
 *	  (the implicit MX of RFC 5321), many queries in flight on one resolver,
 *	  and the outcome and label of each domain.  Used in the tagging backend
 *	  and in the separate resolver process (dns_process.c); and one domain's
 *	  MX records for pw.resolve_mx().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/nameser.h>
#include <netinet/in.h>

#include <ares.h>

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "mx.h"
#include "pw_deliverability.h"

/* The state of one batch's DNS work */
typedef struct LookupState
{
	MxResolver *res;
	MemoryContext cxt;			/* the batch's memory */
	const MxSuffixRule *rules;
	size_t		nrules;
	MxDomainJob **queue;		/* jobs waiting for their next query */
	int			qhead;
	int			qtail;
	MxDomainJob **retry;		/* a ring of the jobs whose query timed out,
								 * sent again after the batch's new domains */
	int			rhead;
	int			nretry;
	int			ringsize;
	int			max_retries;	/* dns_timeout_retries */
} LookupState;

/* A job and the lookup it belongs to, as the callback argument */
typedef struct JobRef
{
	LookupState *cs;
	MxDomainJob *job;
} JobRef;

/*
 * Copies a host name into cxt, lower-cased, replacing bytes that are not
 * printable ASCII.
 */
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
FinishJob(LookupState *cs, MxDomainJob *job, const char *outcome,
		  const char *label, const char *error)
{
	job->step = MX_STEP_DONE;
	job->outcome = outcome;
	job->label = label ? MemoryContextStrdup(cs->cxt, label) : NULL;
	job->error = error;
}

/* Queues a job for its next query (A after MX, AAAA after A). */
static void
QueueNextStep(LookupState *cs, MxDomainJob *job, MxJobStep next)
{
	job->step = next;
	cs->queue[cs->qtail++] = job;
}

/*
 * Queues a job whose query timed out to be sent again, unless it has had
 * its dns_timeout_retries; returns false then.  A job is in the ring at
 * most once (it is not in flight while there), so njobs slots suffice.
 */
static bool
QueueRetry(LookupState *cs, MxDomainJob *job)
{
	if (job->timeouts >= cs->max_retries)
		return false;
	job->timeouts++;
	Assert(cs->nretry < cs->ringsize);
	cs->retry[(cs->rhead + cs->nretry) % cs->ringsize] = job;
	cs->nretry++;
	return true;
}

/* The implicit-MX label of a domain: "mx:" + its registrable domain. */
static void
ImplicitMxLabel(MxDomainJob *job, char *out)
{
	const char *reg = MxRegistrableDomain(job->qname);

	snprintf(out, MX_NAME_BUF, "mx:%s", reg ? reg : job->qname);
}

/* qsort order of MX replies: preference, then host name. */
static int
ExchangeOrder(const void *a, const void *b)
{
	const struct ares_mx_reply *x = *(const struct ares_mx_reply *const *) a;
	const struct ares_mx_reply *y = *(const struct ares_mx_reply *const *) b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	return strcmp(x->host, y->host);
}

/* Handles an MX answer. */
static void
HandleMxAnswer(LookupState *cs, MxDomainJob *job, unsigned char *abuf, int alen)
{
	struct ares_mx_reply *mx = NULL;
	struct ares_mx_reply **sorted;
	const char **hosts;
	size_t	   *lens;
	int			n = 0;
	int			rc = ares_parse_mx_reply(abuf, alen, &mx);
	char		label[MX_NAME_BUF];
	StringInfoData buf;

	if (rc == ARES_ENODATA)
	{
		QueueNextStep(cs, job, MX_STEP_A);
		return;
	}
	if (rc != ARES_SUCCESS)
	{
		FinishJob(cs, job, MX_OUTCOME_FAILED, NULL, MxDnsStatusText(rc));
		return;
	}
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next)
		n++;
	if (n == 0)
	{
		ares_free_data(mx);
		QueueNextStep(cs, job, MX_STEP_A);
		return;
	}
	sorted = MemoryContextAlloc(cs->cxt, sizeof(*sorted) * n);
	hosts = MemoryContextAlloc(cs->cxt, sizeof(*hosts) * n);
	lens = MemoryContextAlloc(cs->cxt, sizeof(*lens) * n);
	n = 0;
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next)
		sorted[n++] = m;
	qsort(sorted, n, sizeof(sorted[0]), ExchangeOrder);
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
	if (!MxClassifyExchanges(cs->rules, cs->nrules, hosts, lens, n, label))
	{
		bool		nullmx = lens[0] == 1 && hosts[0][0] == '.';

		FinishJob(cs, job, nullmx ? MX_OUTCOME_NULL_MX : MX_OUTCOME_NO_RECORDS,
				  MX_LABEL_NONE, NULL);
	}
	else
		FinishJob(cs, job, MX_OUTCOME_MX, label, NULL);
	ares_free_data(mx);
}

/* Handles an A or AAAA answer. */
static void
HandleAddressAnswer(LookupState *cs, MxDomainJob *job, unsigned char *abuf, int alen)
{
	int			naddr = 8;
	int			rc;
	char		label[MX_NAME_BUF];

	if (job->step == MX_STEP_A)
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
		ImplicitMxLabel(job, label);
		FinishJob(cs, job, MX_OUTCOME_ADDRESS, label, NULL);
	}
	else if (rc == ARES_SUCCESS || rc == ARES_ENODATA)
	{
		if (job->step == MX_STEP_A)
			QueueNextStep(cs, job, MX_STEP_AAAA);
		else
			FinishJob(cs, job, MX_OUTCOME_NO_RECORDS, MX_LABEL_NONE, NULL);
	}
	else
		FinishJob(cs, job, MX_OUTCOME_FAILED, NULL, MxDnsStatusText(rc));
}

/* Completion of one query of a job. */
static void
HandleJobAnswer(void *arg, int status, unsigned char *abuf, int alen)
{
	JobRef	   *ref = (JobRef *) arg;
	LookupState *cs = ref->cs;
	MxDomainJob *job = ref->job;

	pfree(ref);
	if (status == ARES_SUCCESS)
	{
		if (job->step == MX_STEP_MX)
			HandleMxAnswer(cs, job, abuf, alen);
		else
			HandleAddressAnswer(cs, job, abuf, alen);
	}
	else if (status == ARES_ENODATA)
	{
		/* NOERROR without records of that type: try the next type */
		if (job->step == MX_STEP_MX)
			QueueNextStep(cs, job, MX_STEP_A);
		else if (job->step == MX_STEP_A)
			QueueNextStep(cs, job, MX_STEP_AAAA);
		else
			FinishJob(cs, job, MX_OUTCOME_NO_RECORDS, MX_LABEL_NONE, NULL);
	}
	else if (status == ARES_ENOTFOUND)
		FinishJob(cs, job, MX_OUTCOME_NXDOMAIN, MX_LABEL_NONE, NULL);
	else if (status == ARES_ETIMEOUT && QueueRetry(cs, job))
		return;
	else
		FinishJob(cs, job, MX_OUTCOME_FAILED, NULL, MxDnsStatusText(status));
}

/* Sends the query of a job's current step. */
static void
SendJobQuery(LookupState *cs, MxDomainJob *job)
{
	JobRef	   *ref = MemoryContextAlloc(cs->cxt, sizeof(JobRef));
	int			type = job->step == MX_STEP_MX ? ns_t_mx :
		job->step == MX_STEP_A ? ns_t_a : ns_t_aaaa;

	ref->cs = cs;
	ref->job = job;
	MxResolverQuery(cs->res, job->qname, type, HandleJobAnswer, ref);
}

/*
 * The next job to send a query for: follow-up queries (A, AAAA) first, then
 * new domains, then the queries that timed out (at the end of the batch, so
 * that a lost answer is asked for again after its server had time); NULL
 * when none waits.
 */
static MxDomainJob *
NextJobToSend(LookupState *cs, MxDomainJob *jobs, int njobs, int *next)
{
	MxDomainJob *job;

	if (cs->qhead < cs->qtail)
		return cs->queue[cs->qhead++];
	while (*next < njobs && jobs[*next].step == MX_STEP_DONE)
		(*next)++;
	if (*next < njobs)
		return &jobs[(*next)++];
	if (cs->nretry == 0)
		return NULL;
	job = cs->retry[cs->rhead];
	cs->rhead = (cs->rhead + 1) % cs->ringsize;
	cs->nretry--;
	return job;
}

/*
 * Looks up the jobs of a batch that are not done yet, in memory of cxt: up
 * to the concurrency limit in flight, follow-up queries (A, AAAA) before new
 * domains, and a query that timed out once more (dns_timeout_retries) after
 * them.  Each job ends with an outcome, a label (NULL when the lookup
 * failed), its exchanges and an error text.
 */
void
MxLookupDomains(MxResolver *res, MemoryContext cxt, const MxSuffixRule *rules,
				size_t nrules, MxDomainJob *jobs, int njobs)
{
	LookupState	state;
	LookupState *cs = &state;
	int			next = 0;

	cs->res = res;
	cs->cxt = cxt;
	cs->rules = rules;
	cs->nrules = nrules;

	cs->queue = MemoryContextAlloc(cs->cxt, sizeof(MxDomainJob *) * (2 * njobs + 1));
	cs->qhead = cs->qtail = 0;
	cs->ringsize = Max(njobs, 1);
	cs->retry = MemoryContextAlloc(cs->cxt, sizeof(MxDomainJob *) * cs->ringsize);
	cs->rhead = cs->nretry = 0;
	cs->max_retries = MxResolverTimeoutRetries();
	for (;;)
	{
		bool		waiting;

		while (MxResolverCanSend(cs->res))
		{
			MxDomainJob *job = NextJobToSend(cs, jobs, njobs, &next);

			if (job == NULL)
				break;
			SendJobQuery(cs, job);
		}
		while (next < njobs && jobs[next].step == MX_STEP_DONE)
			next++;
		waiting = cs->qhead < cs->qtail || next < njobs || cs->nretry > 0;
		if (MxResolverIdle(cs->res) && !waiting)
			break;
		MxResolverStep(cs->res, waiting);
	}
}

/* State of a one-domain MX lookup */
typedef struct ExchangeLookup
{
	bool		done;
	int			status;
	struct ares_mx_reply *mx;
} ExchangeLookup;

/* Completion of a one-domain MX lookup: parses the answer. */
static void
RecordExchanges(void *arg, int status, unsigned char *abuf, int alen)
{
	ExchangeLookup *r = (ExchangeLookup *) arg;

	r->done = true;
	r->status = status;
	if (status == ARES_SUCCESS)
		r->status = ares_parse_mx_reply(abuf, alen, &r->mx);
}

/*
 * Looks up the MX records of a normalised name on a resolver of its own:
 * sets *exchanges (palloc'd, lowest preference first) and returns their
 * number, 0 for NXDOMAIN or no MX; an error when DNS fails.
 */
int
MxLookupExchanges(const char *qname, MxExchange **exchanges)
{
	MxResolver *res;
	ExchangeLookup r = {0};
	struct ares_mx_reply **sorted;
	int			n = 0;

	*exchanges = NULL;
	res = MxResolverCreate(CurrentMemoryContext);
	MxResolverQuery(res, qname, ns_t_mx, RecordExchanges, &r);
	while (!r.done)
		MxResolverStep(res, false);
	MxResolverDestroy(res);

	if (r.status == ARES_ENOTFOUND || r.status == ARES_ENODATA)
		return 0;
	if (r.status != ARES_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("MX lookup of \"%s\" failed: %s", qname, MxDnsStatusText(r.status)),
				 errhint("Check " PW_GUC_PREFIX ".dns_servers and the servers' health.")));
	for (struct ares_mx_reply *m = r.mx; m != NULL; m = m->next)
		n++;
	sorted = palloc(sizeof(*sorted) * Max(n, 1));
	n = 0;
	for (struct ares_mx_reply *m = r.mx; m != NULL; m = m->next)
		sorted[n++] = m;
	qsort(sorted, n, sizeof(sorted[0]), ExchangeOrder);
	*exchanges = palloc(sizeof(MxExchange) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		(*exchanges)[i].preference = sorted[i]->priority;
		(*exchanges)[i].host = pstrdup(sorted[i]->host[0] ? sorted[i]->host : ".");
	}
	pfree(sorted);
	ares_free_data(r.mx);
	return n;
}
