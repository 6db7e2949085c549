/*-------------------------------------------------------------------------
 *
 * lookup.c
 *	  Looking up a batch of domains: MX, then A and AAAA when there is no MX
 *	  (the implicit MX of RFC 5321), many queries in flight on one resolver,
 *	  and the outcome and label of each domain.  Used in the tagging backend
 *	  and in the separate resolver process (dns_process.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/nameser.h>
#include <netinet/in.h>

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "mx.h"

/* The state of one chunk's DNS work */
typedef struct ChunkState
{
	PwResolver *res;
	MemoryContext cxt;			/* the chunk's memory */
	const PwSuffixRule *rules;
	size_t		nrules;
	PwDomainJob **queue;			/* jobs waiting for their next query */
	int			qhead;
	int			qtail;
} ChunkState;

/* A job and the chunk it belongs to, as the callback argument */
typedef struct JobRef
{
	ChunkState *cs;
	PwDomainJob  *job;
} JobRef;

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
Finish(ChunkState *cs, PwDomainJob *job, const char *outcome, const char *label,
	   const char *error)
{
	job->step = PW_STEP_DONE;
	job->outcome = outcome;
	job->label = label ? MemoryContextStrdup(cs->cxt, label) : NULL;
	job->error = error;
}

/* Queues a job for its next query (A after MX, AAAA after A). */
static void
Advance(ChunkState *cs, PwDomainJob *job, PwJobStep next)
{
	job->step = next;
	cs->queue[cs->qtail++] = job;
}

/* The implicit-MX label of a domain: "mx:" + its registrable domain. */
static void
AddressLabel(PwDomainJob *job, char *out)
{
	const char *reg = PwRegistrableDomain(job->qname);

	snprintf(out, PW_NAME_BUF, "mx:%s", reg ? reg : job->qname);
}

/* qsort order of MX replies: preference, then host name. */
int
PwMxCmp(const void *a, const void *b)
{
	const struct ares_mx_reply *x = *(const struct ares_mx_reply *const *) a;
	const struct ares_mx_reply *y = *(const struct ares_mx_reply *const *) b;

	if (x->priority != y->priority)
		return x->priority < y->priority ? -1 : 1;
	return strcmp(x->host, y->host);
}

/* Handles an MX answer. */
static void
OnMx(ChunkState *cs, PwDomainJob *job, unsigned char *abuf, int alen)
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
		Advance(cs, job, PW_STEP_A);
		return;
	}
	if (rc != ARES_SUCCESS)
	{
		Finish(cs, job, PW_OUT_FAILED, NULL, PwDnsStatusText(rc));
		return;
	}
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next)
		n++;
	if (n == 0)
	{
		ares_free_data(mx);
		Advance(cs, job, PW_STEP_A);
		return;
	}
	sorted = MemoryContextAlloc(cs->cxt, sizeof(*sorted) * n);
	hosts = MemoryContextAlloc(cs->cxt, sizeof(*hosts) * n);
	lens = MemoryContextAlloc(cs->cxt, sizeof(*lens) * n);
	n = 0;
	for (struct ares_mx_reply *m = mx; m != NULL; m = m->next)
		sorted[n++] = m;
	qsort(sorted, n, sizeof(sorted[0]), PwMxCmp);
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

		Finish(cs, job, nullmx ? PW_OUT_NULL_MX : PW_OUT_NO_RECORDS, "none", NULL);
	}
	else
		Finish(cs, job, PW_OUT_MX, label, NULL);
	ares_free_data(mx);
}

/* Handles an A or AAAA answer. */
static void
OnAddress(ChunkState *cs, PwDomainJob *job, unsigned char *abuf, int alen)
{
	int			naddr = 8;
	int			rc;
	char		label[PW_NAME_BUF];

	if (job->step == PW_STEP_A)
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
		Finish(cs, job, PW_OUT_ADDRESS, label, NULL);
	}
	else if (rc == ARES_SUCCESS || rc == ARES_ENODATA)
	{
		if (job->step == PW_STEP_A)
			Advance(cs, job, PW_STEP_AAAA);
		else
			Finish(cs, job, PW_OUT_NO_RECORDS, "none", NULL);
	}
	else
		Finish(cs, job, PW_OUT_FAILED, NULL, PwDnsStatusText(rc));
}

/* Completion of one query of a job. */
static void
JobDone(void *arg, int status, unsigned char *abuf, int alen)
{
	JobRef	   *ref = (JobRef *) arg;
	ChunkState *cs = ref->cs;
	PwDomainJob  *job = ref->job;

	pfree(ref);
	if (status == ARES_SUCCESS)
	{
		if (job->step == PW_STEP_MX)
			OnMx(cs, job, abuf, alen);
		else
			OnAddress(cs, job, abuf, alen);
	}
	else if (status == ARES_ENODATA)
	{
		/* NOERROR without records of that type: try the next type */
		if (job->step == PW_STEP_MX)
			Advance(cs, job, PW_STEP_A);
		else if (job->step == PW_STEP_A)
			Advance(cs, job, PW_STEP_AAAA);
		else
			Finish(cs, job, PW_OUT_NO_RECORDS, "none", NULL);
	}
	else if (status == ARES_ENOTFOUND)
		Finish(cs, job, PW_OUT_NXDOMAIN, "none", NULL);
	else
		Finish(cs, job, PW_OUT_FAILED, NULL, PwDnsStatusText(status));
}

/* Sends the query of a job's current step. */
static void
Send(ChunkState *cs, PwDomainJob *job)
{
	JobRef	   *ref = MemoryContextAlloc(cs->cxt, sizeof(JobRef));
	int			type = job->step == PW_STEP_MX ? ns_t_mx :
		job->step == PW_STEP_A ? ns_t_a : ns_t_aaaa;

	ref->cs = cs;
	ref->job = job;
	PwResolverQuery(cs->res, job->qname, type, JobDone, ref);
}

/*
 * Looks up the jobs of a batch that are not done yet, in memory of cxt: up
 * to the concurrency limit in flight, follow-up queries (A, AAAA) before new
 * domains.  Each job ends with an outcome, a label (NULL when the lookup
 * failed), its exchanges and an error text.
 */
void
PwLookupDomains(PwResolver *res, MemoryContext cxt, const PwSuffixRule *rules,
				size_t nrules, PwDomainJob *jobs, int njobs)
{
	ChunkState	state;
	ChunkState *cs = &state;
	int			next = 0;

	cs->res = res;
	cs->cxt = cxt;
	cs->rules = rules;
	cs->nrules = nrules;

	cs->queue = MemoryContextAlloc(cs->cxt, sizeof(PwDomainJob *) * (2 * njobs + 1));
	cs->qhead = cs->qtail = 0;
	for (;;)
	{
		while (PwResolverCanSend(cs->res))
		{
			if (cs->qhead < cs->qtail)
				Send(cs, cs->queue[cs->qhead++]);
			else
			{
				while (next < njobs && jobs[next].step == PW_STEP_DONE)
					next++;
				if (next >= njobs)
					break;
				Send(cs, &jobs[next++]);
			}
		}
		while (next < njobs && jobs[next].step == PW_STEP_DONE)
			next++;
		if (cs->res->inflight == 0 && cs->qhead == cs->qtail && next >= njobs)
			break;
		PwResolverStep(cs->res, cs->qhead < cs->qtail || next < njobs);
	}
}
