/*-------------------------------------------------------------------------
 *
 * run_failures.c
 *	  Failed runs in the run history.  A run that fails rolls back with its
 *	  row of pw.runs; so while a run is under way its kind, profile, start
 *	  and caller are watched, and an ERROR or FATAL reported to the client
 *	  or log during it (a failure, a cancel, a terminated backend) is copied
 *	  into a small shared-memory queue.  The next run of the same database
 *	  that writes the history inserts the queued failures with their error,
 *	  in its own transaction (put back in the queue if that one aborts).
 *	  Needs shared_preload_libraries (the queue); without it failed runs
 *	  are only in the server log.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common/runs.h"
#include "common/spi.h"

/* failures queued at most; the oldest one goes when it is full */
#define PW_FAILED_RUNS_MAX 64

/* One failed run, as it will be inserted */
typedef struct PwFailedRun
{
	Oid			dbid;
	int64		run_id;			/* 0 if its row was never inserted */
	char		kind[16];
	char		profile[NAMEDATALEN];
	bool		has_profile;
	TimestampTz started;
	TimestampTz failed;
	int			pid;
	char		caller[128];
	char		error[512];
} PwFailedRun;

typedef struct PwFailedRuns
{
	slock_t		mutex;
	int			n;
	PwFailedRun runs[PW_FAILED_RUNS_MAX];
} PwFailedRuns;

static PwFailedRuns *failed_runs = NULL;

/* the run this backend is running, if any */
static PwFailedRun watched;
static bool watching = false;

/* failures this transaction took from the queue, put back if it aborts */
static PwFailedRun *taken = NULL;
static int	ntaken = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;

/* Reserves the queue. */
static void
FailedRunsShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(sizeof(PwFailedRuns));
}

/* Attaches to (and after a crash restart, re-initialises) the queue. */
static void
FailedRunsShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	failed_runs = ShmemInitStruct("pw_deliverability failed runs", sizeof(PwFailedRuns), &found);
	if (!found)
	{
		SpinLockInit(&failed_runs->mutex);
		failed_runs->n = 0;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Appends a failed run to the queue, dropping the oldest when it is full. */
static void
QueuePush(const PwFailedRun *run)
{
	SpinLockAcquire(&failed_runs->mutex);
	if (failed_runs->n == PW_FAILED_RUNS_MAX)
	{
		memmove(&failed_runs->runs[0], &failed_runs->runs[1],
				sizeof(PwFailedRun) * (PW_FAILED_RUNS_MAX - 1));
		failed_runs->n--;
	}
	failed_runs->runs[failed_runs->n++] = *run;
	SpinLockRelease(&failed_runs->mutex);
}

/* emit_log_hook: an ERROR or FATAL during a watched run queues it as failed. */
static void
FailedRunsEmitLog(ErrorData *edata)
{
	if (watching && failed_runs != NULL && edata->elevel >= ERROR)
	{
		watched.failed = GetCurrentTimestamp();
		snprintf(watched.error, sizeof(watched.error), "%s: %s",
				 unpack_sql_state(edata->sqlerrcode),
				 edata->message ? edata->message : "(no message)");
		QueuePush(&watched);
		watching = false;
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* At the end of a transaction: no run is watched; failures taken by an
 * aborted one go back to the queue. */
static void
FailedRunsXactCallback(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT)
		return;
	watching = false;
	if (event == XACT_EVENT_ABORT && failed_runs != NULL)
		for (int i = 0; i < ntaken; i++)
			QueuePush(&taken[i]);
	if (taken)
		pfree(taken);
	taken = NULL;
	ntaken = 0;
}

/* A subtransaction that aborts (an error a caller caught) ends its run. */
static void
FailedRunsSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		watching = false;
}

/* Installs the queue (when preloaded), the log hook and the callbacks. */
void
PwRunFailuresInit(void)
{
	RegisterXactCallback(FailedRunsXactCallback, NULL);
	RegisterSubXactCallback(FailedRunsSubXactCallback, NULL);
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = FailedRunsShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = FailedRunsShmemStartup;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = FailedRunsEmitLog;
}

/*
 * Watches the run under way in this backend (run_id 0 until its row is
 * inserted): an error before PwRunUnwatch() queues it as failed.
 */
void
PwRunWatch(const char *kind, const char *profile, TimestampTz started,
		   const char *caller, int64 run_id)
{
	memset(&watched, 0, sizeof(watched));
	watched.dbid = MyDatabaseId;
	watched.run_id = run_id;
	strlcpy(watched.kind, kind, sizeof(watched.kind));
	if (profile)
	{
		strlcpy(watched.profile, profile, sizeof(watched.profile));
		watched.has_profile = true;
	}
	watched.started = started;
	watched.pid = MyProcPid;
	strlcpy(watched.caller, caller, sizeof(watched.caller));
	watching = true;
}

/* The watched run got its row: a failure now keeps its run_id. */
void
PwRunWatchId(int64 run_id)
{
	if (watching)
		watched.run_id = run_id;
}

/* Whether a run is watched in this backend; if so, its start and caller. */
bool
PwRunWatched(TimestampTz *started, const char **caller)
{
	if (!watching)
		return false;
	*started = watched.started;
	*caller = watched.caller;
	return true;
}

/* The watched run ended without an error. */
void
PwRunUnwatch(void)
{
	watching = false;
}

/* Inserts one taken failure into pw.runs (as the extension's owner). */
static void
InsertFailedRun(const PwFailedRun *f)
{
	Oid			types[8] = {INT8OID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	TEXTOID, INT4OID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = Int64GetDatum(f->run_id);
	nulls[0] = f->run_id == 0 ? 'n' : ' ';
	values[1] = CStringGetTextDatum(f->kind);
	values[2] = CStringGetTextDatum(f->profile);
	nulls[2] = f->has_profile ? ' ' : 'n';
	values[3] = TimestampTzGetDatum(f->started);
	values[4] = TimestampTzGetDatum(f->failed);
	values[5] = CStringGetTextDatum(f->caller);
	values[6] = Int32GetDatum(f->pid);
	values[7] = CStringGetTextDatum(f->error);
	(void) PwRunsExecute("INSERT INTO pw.runs (run_id, kind, profile, started, finished, caller, pid, error)"
						 " VALUES (coalesce($1, pg_catalog.nextval('pw.runs_run_id_seq')),"
						 "         $2, $3, $4, $5, $6, $7, $8)"
						 " ON CONFLICT (run_id) DO NOTHING",
						 8, types, values, nulls, SPI_OK_INSERT);
}

/*
 * Writes the failed runs queued for this database into pw.runs.  Connected
 * to SPI, inside the transaction of a run that writes the history.
 */
void
PwRunFailuresFlush(void)
{
	PwFailedRun mine[PW_FAILED_RUNS_MAX];
	int			n = 0;
	int			kept = 0;
	MemoryContext old;

	if (failed_runs == NULL)
		return;
	SpinLockAcquire(&failed_runs->mutex);
	for (int i = 0; i < failed_runs->n; i++)
	{
		if (failed_runs->runs[i].dbid == MyDatabaseId)
			mine[n++] = failed_runs->runs[i];
		else
			failed_runs->runs[kept++] = failed_runs->runs[i];
	}
	failed_runs->n = kept;
	SpinLockRelease(&failed_runs->mutex);
	if (n == 0)
		return;
	/* put back if this transaction aborts */
	old = MemoryContextSwitchTo(TopTransactionContext);
	taken = taken ? repalloc(taken, sizeof(PwFailedRun) * (ntaken + n))
		: palloc(sizeof(PwFailedRun) * n);
	MemoryContextSwitchTo(old);
	memcpy(&taken[ntaken], mine, sizeof(PwFailedRun) * n);
	ntaken += n;
	for (int i = 0; i < n; i++)
		InsertFailedRun(&mine[i]);
}
