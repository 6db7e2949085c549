/*-------------------------------------------------------------------------
 *
 * progress.c
 *	  The progress of running tagging runs, for pw.mx_tag_progress: one
 *	  shared-memory slot per backend (a pw.mx_tag() caller or the background
 *	  tagger), written under the slot's spinlock at each step of the run and
 *	  cleared when the run ends, fails or its process exits.  PostgreSQL 15
 *	  has no progress command type for an extension, hence the slots of our
 *	  own.  Without shared_preload_libraries there are no slots: runs report
 *	  nothing and the view is empty.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "mx.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_mx_tag_progress_rows);

/* One backend's running tagging run; pid 0 when it runs none */
typedef struct ProgressSlot
{
	slock_t		mutex;
	pid_t		pid;
	Oid			dbid;
	bool		background;		/* the background tagger */
	TimestampTz started;
	int			max_domains;
	MxTagPhase	phase;
	MxTagProgress counts;
} ProgressSlot;

static ProgressSlot *progress_slots = NULL;
static int	progress_nslots = 0;
static ProgressSlot *my_slot = NULL;	/* this backend's, while it runs */
static bool exit_callback_set = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* The phases' names, in MxTagPhase order */
static const char *const phase_names[] = {
	"waiting for the tagging lock",
	"looking up",
	"writing",
	"labelling carriers from the cache",
};

StaticAssertDecl(lengthof(phase_names) == MX_PHASE_CACHED_LABELS + 1,
				 "a name for each tagging phase");

/* Reserves the slots: one per backend that can run a tagging run. */
static void
ProgressShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(mul_size(MaxBackends, sizeof(ProgressSlot)));
}

/* Attaches to (and after a crash restart, re-initialises) the slots. */
static void
ProgressShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	progress_slots = ShmemInitStruct("pw_deliverability tagging progress",
									 mul_size(MaxBackends, sizeof(ProgressSlot)),
									 &found);
	progress_nslots = MaxBackends;
	if (!found)
	{
		for (int i = 0; i < progress_nslots; i++)
		{
			SpinLockInit(&progress_slots[i].mutex);
			progress_slots[i].pid = 0;
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Installs the shared-memory hooks of the slots (when preloaded). */
void
MxProgressInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = ProgressShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = ProgressShmemStartup;
}

/* Clears this backend's slot at process exit (a FATAL mid-run). */
static void
ProgressAtExit(int code, Datum arg)
{
	MxProgressEnd();
}

/*
 * Starts reporting a run of up to max_domains domains in this backend's
 * slot (nothing without slots).
 */
void
MxProgressStart(int max_domains, bool background)
{
	ProgressSlot *slot;

	if (progress_slots == NULL || MyBackendId < 1 || MyBackendId > progress_nslots)
		return;
	if (!exit_callback_set)
	{
		before_shmem_exit(ProgressAtExit, (Datum) 0);
		exit_callback_set = true;
	}
	slot = &progress_slots[MyBackendId - 1];
	SpinLockAcquire(&slot->mutex);
	slot->pid = MyProcPid;
	slot->dbid = MyDatabaseId;
	slot->background = background;
	slot->started = GetCurrentTimestamp();
	slot->max_domains = max_domains;
	slot->phase = MX_PHASE_LOCK;
	memset(&slot->counts, 0, sizeof(slot->counts));
	SpinLockRelease(&slot->mutex);
	my_slot = slot;
}

/* Reports the run's phase and counts so far. */
void
MxProgressReport(MxTagPhase phase, const MxTagProgress *counts)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&my_slot->mutex);
	my_slot->phase = phase;
	my_slot->counts = *counts;
	SpinLockRelease(&my_slot->mutex);
}

/* Clears this backend's slot: the run is over (or failed). */
void
MxProgressEnd(void)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&my_slot->mutex);
	my_slot->pid = 0;
	SpinLockRelease(&my_slot->mutex);
	my_slot = NULL;
}

/* Columns of pw.mx_tag_progress_rows() */
enum
{
	PROGRESS_COL_PID,
	PROGRESS_COL_DATID,
	PROGRESS_COL_BACKGROUND,
	PROGRESS_COL_STARTED,
	PROGRESS_COL_PHASE,
	PROGRESS_COL_MAX_DOMAINS,
	PROGRESS_COL_FETCHED,
	PROGRESS_COL_LOOKED_UP,
	PROGRESS_COL_TAGGED,
	PROGRESS_COL_NONE,
	PROGRESS_COL_FAILED,
	PROGRESS_COL_WRITTEN,
	PROGRESS_COL_CARRIERS,
	PROGRESS_COL_BATCHES,
	PROGRESS_NCOLS
};

/* Returns one row of a slot copied out of shared memory. */
static void
PutProgressRow(ReturnSetInfo *rsinfo, const ProgressSlot *s)
{
	Datum		values[PROGRESS_NCOLS];
	bool		nulls[PROGRESS_NCOLS] = {0};

	values[PROGRESS_COL_PID] = Int32GetDatum(s->pid);
	values[PROGRESS_COL_DATID] = ObjectIdGetDatum(s->dbid);
	values[PROGRESS_COL_BACKGROUND] = BoolGetDatum(s->background);
	values[PROGRESS_COL_STARTED] = TimestampTzGetDatum(s->started);
	values[PROGRESS_COL_PHASE] = CStringGetTextDatum(phase_names[s->phase]);
	values[PROGRESS_COL_MAX_DOMAINS] = Int32GetDatum(s->max_domains);
	values[PROGRESS_COL_FETCHED] = Int64GetDatum(s->counts.fetched);
	values[PROGRESS_COL_LOOKED_UP] = Int64GetDatum(s->counts.looked_up);
	values[PROGRESS_COL_TAGGED] = Int64GetDatum(s->counts.tagged);
	values[PROGRESS_COL_NONE] = Int64GetDatum(s->counts.none);
	values[PROGRESS_COL_FAILED] = Int64GetDatum(s->counts.failed);
	values[PROGRESS_COL_WRITTEN] = Int64GetDatum(s->counts.written);
	values[PROGRESS_COL_CARRIERS] = Int64GetDatum(s->counts.carriers);
	values[PROGRESS_COL_BATCHES] = Int64GetDatum(s->counts.batches);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * pw.mx_tag_progress_rows(): one row per tagging run under way in the
 * cluster, each slot copied under its spinlock.
 */
Datum
pw_mx_tag_progress_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; progress_slots != NULL && i < progress_nslots; i++)
	{
		ProgressSlot copy;

		SpinLockAcquire(&progress_slots[i].mutex);
		copy = progress_slots[i];
		SpinLockRelease(&progress_slots[i].mutex);
		if (copy.pid != 0)
			PutProgressRow(rsinfo, &copy);
	}
	PG_RETURN_NULL();
}
