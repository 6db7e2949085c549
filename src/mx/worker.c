/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background MX tagger: one worker serving pw_deliverability.database
 *	  that drains the tagging backlog batch by batch (one transaction each),
 *	  sleeps when idle, reloads on SIGHUP, exits on SIGTERM without
 *	  committing half a batch, and can be woken from SQL through its latch
 *	  (pw.wake_tagger()).  When its database does not exist (dropped), it
 *	  says so once and waits for it, connected to no database.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "mx.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_wake_tagger);
PG_FUNCTION_INFO_V1(pw_tagger_pid);

PGDLLEXPORT void MxTaggerMain(Datum arg);

/* Where SQL finds the running tagger */
typedef struct PwTaggerShared
{
	slock_t		mutex;
	pid_t		pid;
	Latch	   *latch;
	bool		connecting;		/* a start is connecting, or died doing so */
} PwTaggerShared;

static PwTaggerShared *tagger_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static char *pw_database = NULL;
static bool pw_worker_enabled = true;
static int	pw_worker_naptime = 60;
static int	pw_worker_batch = 5000;

/* Reserves the tagger's shared state. */
static void
TaggerShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PwTaggerShared)));
}

/* Attaches to (and after a crash restart, re-initialises) the shared state. */
static void
TaggerShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	tagger_shared = ShmemInitStruct("pw_deliverability tagger",
									sizeof(PwTaggerShared), &found);
	if (!found)
	{
		SpinLockInit(&tagger_shared->mutex);
		tagger_shared->pid = 0;
		tagger_shared->latch = NULL;
		tagger_shared->connecting = false;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Defines the worker GUCs and, when preloaded, registers the worker. */
void
MxWorkerInit(void)
{
	BackgroundWorker worker;

	DefineCustomStringVariable(PW_GUC_PREFIX ".database",
							   "Names the database the background MX tagger serves; empty means no tagger.",
							   NULL, &pw_database, "",
							   process_shared_preload_libraries_in_progress ?
							   PGC_POSTMASTER : PGC_INTERNAL,
							   0, NULL, NULL, NULL);
	DefineCustomBoolVariable(PW_GUC_PREFIX ".worker_enabled",
							 "Lets the background MX tagger tag; off makes it idle.",
							 NULL, &pw_worker_enabled, true,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".worker_naptime",
							"Sets how long the background MX tagger sleeps when there is nothing to tag.",
							NULL, &pw_worker_naptime, 60, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".worker_batch",
							"Sets how many domains the background MX tagger tags per transaction.",
							NULL, &pw_worker_batch, 5000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	/* the shared state exists anyway, so pw.wake_tagger() can say "none" */

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = TaggerShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = TaggerShmemStartup;

	/*
	 * No database, no tagger: it would otherwise start resolving through the
	 * system's resolver in any cluster that merely preloads the library.
	 */
	if (pw_database == NULL || pw_database[0] == '\0')
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pw_deliverability");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "MxTaggerMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pw_deliverability mx tagger");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pw_deliverability mx tagger");
	RegisterBackgroundWorker(&worker);
}

/* Forgets the tagger's latch when it exits. */
static void
TaggerDetach(int code, Datum arg)
{
	if (tagger_shared == NULL)
		return;
	SpinLockAcquire(&tagger_shared->mutex);
	if (tagger_shared->pid == MyProcPid)
	{
		tagger_shared->pid = 0;
		tagger_shared->latch = NULL;
	}
	SpinLockRelease(&tagger_shared->mutex);
}

/*
 * Tags up to worker_batch domains in a transaction of its own.  Returns
 * whether it found work (so the caller goes on at once) or not (so it
 * sleeps).
 */
static bool
TagInOneTransaction(void)
{
	MxTagCounts c = {0};
	bool		installed;
	char		activity[200];

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	/* first the extension: a DROP EXTENSION under way is waited for */
	installed = PwLockExtension(true) && MxTagInstalled();
	if (installed)
	{
		snprintf(activity, sizeof(activity),
				 "pw mx tagger: tagging up to %d domains", pw_worker_batch);
		pgstat_report_activity(STATE_RUNNING, activity);
		MxTagRun(pw_worker_batch, true, &c);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	if (!installed)
		snprintf(activity, sizeof(activity),
				 "pw mx tagger: extension not installed in this database, idle");
	else
		snprintf(activity, sizeof(activity),
				 "pw mx tagger: last batch looked up " INT64_FORMAT ", tagged " INT64_FORMAT
				 ", none " INT64_FORMAT ", failed " INT64_FORMAT ", carriers " INT64_FORMAT,
				 c.looked_up, c.tagged, c.none, c.failed, c.carriers);
	pgstat_report_activity(STATE_IDLE, activity);
	return installed && (c.looked_up > 0 || c.invalid > 0 || c.carriers > 0);
}

/* Sets the shared "connecting" flag; returns its previous value. */
static bool
TaggerSetConnecting(bool connecting)
{
	bool		was;

	if (tagger_shared == NULL)
		return false;
	SpinLockAcquire(&tagger_shared->mutex);
	was = tagger_shared->connecting;
	tagger_shared->connecting = connecting;
	SpinLockRelease(&tagger_shared->mutex);
	return was;
}

/* Whether pg_database has a database of that name (read in a transaction). */
static bool
TaggerDatabaseExists(const char *name)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!found && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		found = strcmp(NameStr(((Form_pg_database) GETSTRUCT(tup))->datname), name) == 0;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * The last start died connecting (the database was dropped, or never
 * existed): instead of failing every bgw_restart_time, wait connected to no
 * database, saying so once, until pw_deliverability.database exists; then
 * exit to be restarted into it.  Never returns.
 */
static void
TaggerAwaitDatabase(void)
{
	bool		said = false;

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("pw_deliverability mx tagger");
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (TaggerDatabaseExists(pw_database))
		{
			elog(LOG, "pw_deliverability mx tagger: database \"%s\" exists, restarting into it",
				 pw_database);
			TaggerSetConnecting(false);
			proc_exit(1);
		}
		if (!said)
		{
			ereport(LOG,
					(errmsg("pw_deliverability mx tagger: database \"%s\" does not exist, waiting for it",
							pw_database),
					 errhint("Create the database, or set %s.database to another one and restart the server.",
							 PW_GUC_PREFIX)));
			pgstat_report_activity(STATE_IDLE, "pw mx tagger: database does not exist, waiting");
			said = true;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 pw_worker_naptime * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* Entry point of the background MX tagger. */
void
MxTaggerMain(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* the flag stays set if connecting fails (FATAL: the database is gone) */
	if (TaggerSetConnecting(true))
		TaggerAwaitDatabase();
	BackgroundWorkerInitializeConnection(pw_database, NULL, 0);
	TaggerSetConnecting(false);
	pgstat_report_appname("pw_deliverability mx tagger");

	if (tagger_shared != NULL)
	{
		SpinLockAcquire(&tagger_shared->mutex);
		tagger_shared->pid = MyProcPid;
		tagger_shared->latch = MyLatch;
		SpinLockRelease(&tagger_shared->mutex);
		before_shmem_exit(TaggerDetach, (Datum) 0);
	}
	elog(LOG, "pw_deliverability mx tagger started on database \"%s\"", pw_database);

	for (;;)
	{
		bool		worked = false;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (pw_worker_enabled)
		{
			MemoryContext cxt = CurrentMemoryContext;

			PG_TRY();
			{
				worked = TagInOneTransaction();
			}
			PG_CATCH();
			{
				/* report, roll the batch back and sleep before retrying */
				MemoryContextSwitchTo(cxt);
				EmitErrorReport();
				FlushErrorState();
				AbortCurrentTransaction();
				pgstat_report_activity(STATE_IDLE, "pw mx tagger: last batch failed, see the log");
				worked = false;
			}
			PG_END_TRY();
		}
		if (!worked)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 pw_worker_naptime * 1000L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
}

/* pw.wake_tagger(): sets the tagger's latch; false when no tagger runs. */
Datum
pw_wake_tagger(PG_FUNCTION_ARGS)
{
	Latch	   *latch = NULL;

	if (tagger_shared != NULL)
	{
		SpinLockAcquire(&tagger_shared->mutex);
		latch = tagger_shared->latch;
		if (latch != NULL)
			SetLatch(latch);
		SpinLockRelease(&tagger_shared->mutex);
	}
	PG_RETURN_BOOL(latch != NULL);
}

/* pw.tagger_pid(): the tagger's process id, or NULL. */
Datum
pw_tagger_pid(PG_FUNCTION_ARGS)
{
	pid_t		pid = 0;

	if (tagger_shared != NULL)
	{
		SpinLockAcquire(&tagger_shared->mutex);
		pid = tagger_shared->pid;
		SpinLockRelease(&tagger_shared->mutex);
	}
	if (pid == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32((int32) pid);
}
