/*-------------------------------------------------------------------------
 *
 * dns_process.c
 *	  A separate resolver process for a tagging run, so that the DNS of one
 *	  batch overlaps the database writes of the previous one.
 *
 *	  The tagging backend starts a dynamic background worker (connected to
 *	  the same database as the same user, so that it shows in
 *	  pg_stat_activity; it runs no queries) and talks to it through two shared-memory queues in a DSM
 *	  segment: batches of names go one way, outcomes come back the other.
 *	  The worker runs the same lookup code (lookup.c) with the backend's
 *	  resolver settings and suffix rules.  It exits when the backend detaches
 *	  (end of the run, error, cancel) and on SIGTERM; the backend raises an
 *	  error if the worker goes away in the middle of a run, so nothing of a
 *	  batch is written without its lookups.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "mx.h"
#include "pw_deliverability.h"

PGDLLEXPORT void MxDnsProcessMain(Datum arg);

#define PW_DNS_MAGIC		0x70776473
#define KEY_SETTINGS		1
#define KEY_RULES			2
#define KEY_TO_WORKER		3
#define KEY_FROM_WORKER		4

/* Queue sizes: a batch of typical names fits, bounded either way */
#define QUEUE_MIN			(256 * 1024)
#define QUEUE_MAX			(64 * 1024 * 1024)

/* The resolver settings handed to the worker, as GUC name/value pairs */
static const char *const dns_settings[] = {
	PW_GUC_PREFIX ".dns_servers",
	PW_GUC_PREFIX ".dns_concurrency",
	PW_GUC_PREFIX ".dns_timeout_ms",
	PW_GUC_PREFIX ".dns_tries",
	PW_GUC_PREFIX ".dns_max_qps",
	PW_GUC_PREFIX ".dns_timeout_retries",
};

/* The backend's side of a resolver process */
struct MxDnsProcess
{
	dsm_segment *seg;
	BackgroundWorkerHandle *handle;
	shm_mq_handle *to_worker;
	shm_mq_handle *from_worker;
	List	   *pending;		/* batch messages (StringInfo) not yet fully
								 * in the queue, oldest first */
	int			outstanding;	/* batches submitted, not collected */
};

/* Appends a NUL-terminated string (NULL as an empty string with a flag). */
static void
PutString(StringInfo buf, const char *s)
{
	appendStringInfoChar(buf, s != NULL ? 1 : 0);
	appendBinaryStringInfo(buf, s != NULL ? s : "", strlen(s != NULL ? s : "") + 1);
}

/* Reads a string written by PutString; advances *p, checks against end. */
static char *
GetString(char **p, const char *end)
{
	bool		present;
	char	   *s;
	size_t		len;

	if (*p >= end)
		elog(ERROR, "truncated message from the resolver process");
	present = **p != 0;
	(*p)++;
	len = strnlen(*p, end - *p);
	if (*p + len >= end)
		elog(ERROR, "truncated message from the resolver process");
	s = *p;
	*p += len + 1;
	return present ? s : NULL;
}

/* Appends a 32-bit integer. */
static void
PutUint32(StringInfo buf, uint32 v)
{
	appendBinaryStringInfo(buf, (char *) &v, sizeof(v));
}

/* Reads a 32-bit integer written by PutUint32. */
static uint32
GetUint32(char **p, const char *end)
{
	uint32		v;

	if (*p + sizeof(v) > end)
		elog(ERROR, "truncated message to or from the resolver process");
	memcpy(&v, *p, sizeof(v));
	*p += sizeof(v);
	return v;
}

/* Copies a message into the segment under key, preceded by its length. */
static void
StoreBlob(shm_toc *toc, uint64 key, StringInfo buf)
{
	char	   *space = shm_toc_allocate(toc, sizeof(uint32) + buf->len);
	uint32		len = buf->len;

	memcpy(space, &len, sizeof(len));
	memcpy(space + sizeof(len), buf->data, buf->len);
	shm_toc_insert(toc, key, space);
}

/* Finds a message stored by StoreBlob: sets *p and *end around it. */
static void
LoadBlob(shm_toc *toc, uint64 key, char **p, char **end)
{
	char	   *space = shm_toc_lookup(toc, key, false);
	uint32		len;

	memcpy(&len, space, sizeof(len));
	*p = space + sizeof(len);
	*end = *p + len;
}

/*
 * Starts a resolver process for batches of up to batch_size domains,
 * classifying with the given rules.  NULL when no background worker slot is
 * free (the caller then resolves in its own process).
 */
MxDnsProcess *
MxDnsProcessStart(const MxSuffixRule *rules, size_t nrules, int batch_size)
{
	MxDnsProcess *proc = palloc0(sizeof(MxDnsProcess));
	StringInfoData settings;
	StringInfoData rulebuf;
	shm_toc_estimator e;
	shm_toc    *toc;
	Size		qsize;
	Size		segsize;
	shm_mq	   *mq_to;
	shm_mq	   *mq_from;
	BackgroundWorker bgw;
	Oid			user = GetAuthenticatedUserId();

	initStringInfo(&settings);
	PutUint32(&settings, lengthof(dns_settings));
	for (size_t i = 0; i < lengthof(dns_settings); i++)
	{
		PutString(&settings, dns_settings[i]);
		PutString(&settings, GetConfigOption(dns_settings[i], false, false));
	}
	initStringInfo(&rulebuf);
	PutUint32(&rulebuf, (uint32) nrules);
	for (size_t i = 0; i < nrules; i++)
	{
		PutString(&rulebuf, rules[i].suffix);
		PutString(&rulebuf, rules[i].label);
	}
	qsize = Min(Max((Size) batch_size * 128, QUEUE_MIN), QUEUE_MAX);

	shm_toc_initialize_estimator(&e);
	shm_toc_estimate_chunk(&e, sizeof(uint32) + settings.len);
	shm_toc_estimate_chunk(&e, sizeof(uint32) + rulebuf.len);
	shm_toc_estimate_chunk(&e, qsize);
	shm_toc_estimate_chunk(&e, qsize);
	shm_toc_estimate_keys(&e, 4);
	segsize = shm_toc_estimate(&e);

	proc->seg = dsm_create(segsize, DSM_CREATE_NULL_IF_MAXSEGMENTS);
	if (proc->seg == NULL)
		return NULL;
	toc = shm_toc_create(PW_DNS_MAGIC, dsm_segment_address(proc->seg), segsize);
	StoreBlob(toc, KEY_SETTINGS, &settings);
	StoreBlob(toc, KEY_RULES, &rulebuf);
	mq_to = shm_mq_create(shm_toc_allocate(toc, qsize), qsize);
	shm_toc_insert(toc, KEY_TO_WORKER, mq_to);
	shm_mq_set_sender(mq_to, MyProc);
	mq_from = shm_mq_create(shm_toc_allocate(toc, qsize), qsize);
	shm_toc_insert(toc, KEY_FROM_WORKER, mq_from);
	shm_mq_set_receiver(mq_from, MyProc);

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_ConsistentState;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "pw_deliverability");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "MxDnsProcessMain");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "pw_deliverability resolver for PID %d", MyProcPid);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "pw_deliverability resolver");
	bgw.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(proc->seg));
	bgw.bgw_notify_pid = MyProcPid;
	/* connected (to this database, as this user) to show in pg_stat_activity */
	memcpy(bgw.bgw_extra, &MyDatabaseId, sizeof(Oid));
	memcpy(bgw.bgw_extra + sizeof(Oid), &user, sizeof(Oid));
	if (!RegisterDynamicBackgroundWorker(&bgw, &proc->handle))
	{
		dsm_detach(proc->seg);
		return NULL;
	}
	proc->to_worker = shm_mq_attach(mq_to, proc->seg, proc->handle);
	proc->from_worker = shm_mq_attach(mq_from, proc->seg, proc->handle);
	proc->pending = NIL;
	return proc;
}

/* Raises the error of a resolver process gone in the middle of a run. */
static void
ReportProcessGone(void)
{
	/*
	 * A shutdown or a termination of this backend that took the process down
	 * too is reported as such: its signal may arrive just after the process
	 * is seen gone, so give it a moment.
	 */
	CHECK_FOR_INTERRUPTS();
	ResetLatch(MyLatch);
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 200,
					 PG_WAIT_EXTENSION);
	CHECK_FOR_INTERRUPTS();
	ereport(ERROR,
			(errcode(ERRCODE_SYSTEM_ERROR),
			 errmsg("the pw_deliverability resolver process exited during a tagging run"),
			 errhint("See the server log; set " PW_GUC_PREFIX ".dns_process = off to resolve in the backend.")));
}

/* Pushes the pending batch messages, in order, as far as the queue takes them now. */
static void
PushPendingBatches(MxDnsProcess *proc)
{
	while (proc->pending != NIL)
	{
		StringInfo	msg = (StringInfo) linitial(proc->pending);
		shm_mq_result rc;

		rc = shm_mq_send(proc->to_worker, msg->len, msg->data, true, true);
		if (rc == SHM_MQ_DETACHED)
			ReportProcessGone();
		if (rc != SHM_MQ_SUCCESS)
			return;
		proc->pending = list_delete_first(proc->pending);
		pfree(msg->data);
		pfree(msg);
	}
}

/* Waits for the latch (set by the queues and the worker's exit). */
static void
WaitForWorker(void)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1,
					 PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Hands the jobs of a batch that are not done to the resolver process;
 * returns at once (what the queue does not take now is pushed while the
 * caller collects).
 */
void
MxDnsProcessSubmit(MxDnsProcess *proc, MxDomainJob *jobs, int njobs)
{
	StringInfo	msg = makeStringInfo();
	uint32		n = 0;

	PutUint32(msg, 0);
	for (int i = 0; i < njobs; i++)
	{
		if (jobs[i].step == MX_STEP_DONE)
			continue;
		PutUint32(msg, (uint32) i);
		PutString(msg, jobs[i].qname);
		n++;
	}
	memcpy(msg->data, &n, sizeof(n));
	proc->pending = lappend(proc->pending, msg);
	proc->outstanding++;
	PushPendingBatches(proc);
}

/*
 * Waits for the outcomes of the oldest submitted batch and stores them in
 * its jobs (strings in cxt).  Keeps pushing the next batch meanwhile, and
 * returns only when the process has all of it, so that it resolves while
 * the caller writes.
 */
void
MxDnsProcessCollect(MxDnsProcess *proc, MxDomainJob *jobs, int njobs,
					MemoryContext cxt)
{
	Size		len = 0;
	void	   *data = NULL;
	char	   *p;
	char	   *end;
	uint32		n;

	Assert(proc->outstanding > 0);
	for (;;)
	{
		shm_mq_result rc;

		PushPendingBatches(proc);
		rc = shm_mq_receive(proc->from_worker, &len, &data, true);
		if (rc == SHM_MQ_SUCCESS)
			break;
		if (rc == SHM_MQ_DETACHED)
			ReportProcessGone();
		WaitForWorker();
	}
	proc->outstanding--;

	p = data;
	end = p + len;
	n = GetUint32(&p, end);
	for (uint32 k = 0; k < n; k++)
	{
		uint32		i = GetUint32(&p, end);
		char	   *outcome = GetString(&p, end);
		char	   *label = GetString(&p, end);
		char	   *hosts = GetString(&p, end);
		char	   *error = GetString(&p, end);

		if (i >= (uint32) njobs || outcome == NULL)
			elog(ERROR, "malformed message from the resolver process");
		jobs[i].step = MX_STEP_DONE;
		jobs[i].outcome = MemoryContextStrdup(cxt, outcome);
		jobs[i].label = label ? MemoryContextStrdup(cxt, label) : NULL;
		jobs[i].hosts = hosts ? MemoryContextStrdup(cxt, hosts) : NULL;
		jobs[i].error = error ? MemoryContextStrdup(cxt, error) : NULL;
	}
	for (int i = 0; i < njobs; i++)
		if (jobs[i].step != MX_STEP_DONE)
			elog(ERROR, "the resolver process left a domain without an outcome");

	/*
	 * The process has the next batch before the caller starts writing; later
	 * ones may still wait for room in the queue.
	 */
	while (list_length(proc->pending) > Max(proc->outstanding - 1, 0))
	{
		PushPendingBatches(proc);
		if (list_length(proc->pending) > Max(proc->outstanding - 1, 0))
			WaitForWorker();
	}
}

/* Ends the resolver process (it exits when its queues are detached). */
void
MxDnsProcessStop(MxDnsProcess *proc)
{
	shm_mq_detach(proc->to_worker);
	shm_mq_detach(proc->from_worker);
	dsm_detach(proc->seg);
	list_free_deep(proc->pending);
	pfree(proc);
}

/* In the resolver process: the backend's resolver settings, as if SET. */
static void
ApplyBackendSettings(shm_toc *toc)
{
	char	   *p;
	char	   *end;
	uint32		n;

	LoadBlob(toc, KEY_SETTINGS, &p, &end);
	n = GetUint32(&p, end);
	for (uint32 i = 0; i < n; i++)
	{
		char	   *name = GetString(&p, end);
		char	   *value = GetString(&p, end);

		(void) set_config_option(name, value ? value : "", PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_SET, true, 0, false);
	}
}

/* In the resolver process: the backend's suffix rules (in the segment). */
static MxSuffixRule *
ReadSuffixRules(shm_toc *toc, size_t *nrules)
{
	char	   *p;
	char	   *end;
	MxSuffixRule *rules;

	LoadBlob(toc, KEY_RULES, &p, &end);
	*nrules = GetUint32(&p, end);
	rules = palloc0(sizeof(MxSuffixRule) * (*nrules + 1));
	for (size_t i = 0; i < *nrules; i++)
	{
		rules[i].suffix = GetString(&p, end);
		rules[i].label = GetString(&p, end);
	}
	return rules;
}

/*
 * In the resolver process: looks up the names of one batch message (in
 * the current memory context, cxt) and builds the message of outcomes in
 * *reply; returns the number of domains.
 */
static uint32
ResolveBatchMessage(MxResolver *res, MemoryContext cxt,
					const MxSuffixRule *rules, size_t nrules,
					char *p, char *end, StringInfo reply)
{
	uint32		njobs = GetUint32(&p, end);
	MxDomainJob *jobs = palloc0(sizeof(MxDomainJob) * Max(njobs, 1));
	uint32	   *index = palloc(sizeof(uint32) * Max(njobs, 1));

	initStringInfo(reply);
	PutUint32(reply, njobs);
	for (uint32 i = 0; i < njobs; i++)
	{
		uint32		idx = GetUint32(&p, end);
		char	   *qname = GetString(&p, end);

		if (qname == NULL || strlen(qname) >= MX_NAME_BUF)
			elog(ERROR, "malformed batch for the resolver process");
		strlcpy(jobs[i].qname, qname, MX_NAME_BUF);
		jobs[i].step = MX_STEP_MX;
		index[i] = idx;
	}

	MxLookupDomains(res, cxt, rules, nrules, jobs, (int) njobs);

	for (uint32 i = 0; i < njobs; i++)
	{
		PutUint32(reply, index[i]);
		PutString(reply, jobs[i].outcome);
		PutString(reply, jobs[i].label);
		PutString(reply, jobs[i].hosts);
		PutString(reply, jobs[i].error);
	}
	return njobs;
}

/*
 * The resolver process: applies the backend's settings, then resolves
 * batch after batch until the backend detaches.
 */
void
MxDnsProcessMain(Datum arg)
{
	dsm_segment *seg;
	shm_toc    *toc;
	shm_mq	   *mq;
	shm_mq_handle *in;
	shm_mq_handle *out;
	MxSuffixRule *rules;
	size_t		nrules;
	MxResolver *res;
	MemoryContext batchcxt;
	Oid			dboid;
	Oid			user;
	int64		ndomains = 0;
	int64		nbatches = 0;
	struct rusage ru;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	memcpy(&user, MyBgworkerEntry->bgw_extra + sizeof(Oid), sizeof(Oid));
	BackgroundWorkerInitializeConnectionByOid(dboid, user, 0);
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "pw_deliverability resolver");

	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		proc_exit(0);			/* the backend is gone already */
	toc = shm_toc_attach(PW_DNS_MAGIC, dsm_segment_address(seg));
	if (toc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bad magic number in the resolver's shared memory segment")));

	ApplyBackendSettings(toc);
	rules = ReadSuffixRules(toc, &nrules);

	mq = shm_toc_lookup(toc, KEY_TO_WORKER, false);
	shm_mq_set_receiver(mq, MyProc);
	in = shm_mq_attach(mq, seg, NULL);
	mq = shm_toc_lookup(toc, KEY_FROM_WORKER, false);
	shm_mq_set_sender(mq, MyProc);
	out = shm_mq_attach(mq, seg, NULL);

	res = MxResolverCreate(TopMemoryContext);
	batchcxt = AllocSetContextCreate(TopMemoryContext, "pw resolver batch",
									 ALLOCSET_DEFAULT_SIZES);
	pgstat_report_activity(STATE_IDLE, NULL);
	for (;;)
	{
		Size		len;
		void	   *data;
		StringInfoData reply;
		MemoryContext old;

		if (shm_mq_receive(in, &len, &data, false) != SHM_MQ_SUCCESS)
			break;				/* the backend detached: the run is over */
		pgstat_report_activity(STATE_RUNNING, "resolving a batch");
		old = MemoryContextSwitchTo(batchcxt);
		ndomains += ResolveBatchMessage(res, batchcxt, rules, nrules,
										data, (char *) data + len, &reply);
		nbatches++;
		if (shm_mq_send(out, reply.len, reply.data, false, true) != SHM_MQ_SUCCESS)
			break;
		MemoryContextSwitchTo(old);
		MemoryContextReset(batchcxt);
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	MxResolverDestroy(res);
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		ereport(DEBUG1,
				(errmsg("pw_deliverability resolver: %ld domains in %ld batches, %.2f s user, %.2f s system CPU",
						(long) ndomains, (long) nbatches,
						ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
						ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6)));
	proc_exit(0);
}
