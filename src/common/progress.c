/*-------------------------------------------------------------------------
 *
 * progress.c
 *	  Shared-memory progress slots, one per backend, for the long runs of
 *	  every subsystem (pw.mx_tag_progress, pw.ingest_progress): written
 *	  under the slot's spinlock at each step of a run and cleared when the
 *	  run ends, fails or its process exits.  Without shared_preload_libraries
 *	  there are no slots: runs report nothing and the views are empty.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/backendid.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#include "common/progress.h"

/* One backend's slot: kind PW_PROGRESS_NONE when it runs nothing */
typedef struct ProgressSlot
{
	slock_t		mutex;
	PwProgress	run;
} ProgressSlot;

static ProgressSlot *progress_slots = NULL;
static int	progress_nslots = 0;
static ProgressSlot *my_slot = NULL;	/* this backend's, while it runs */
static bool exit_callback_set = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Reserves the slots: one per backend. */
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
	progress_slots = ShmemInitStruct("pw_deliverability progress",
									 mul_size(MaxBackends, sizeof(ProgressSlot)),
									 &found);
	progress_nslots = MaxBackends;
	if (!found)
	{
		for (int i = 0; i < progress_nslots; i++)
		{
			SpinLockInit(&progress_slots[i].mutex);
			progress_slots[i].run.kind = PW_PROGRESS_NONE;
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Installs the shared-memory hooks of the slots (when preloaded). */
void
PwProgressInit(void)
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
	PwProgressEnd();
}

/*
 * Starts reporting a run of "kind" in this backend's slot (nothing without
 * slots); label may be NULL.
 */
void
PwProgressStart(PwProgressKind kind, bool background, int64 limit, const char *label)
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
	memset(&slot->run, 0, sizeof(slot->run));
	slot->run.pid = MyProcPid;
	slot->run.dbid = MyDatabaseId;
	slot->run.kind = kind;
	slot->run.background = background;
	slot->run.started = GetCurrentTimestamp();
	slot->run.limit = limit;
	if (label)
		strlcpy(slot->run.label, label, sizeof(slot->run.label));
	SpinLockRelease(&slot->mutex);
	my_slot = slot;
}

/* Reports the run's phase and its first ncounters counters. */
void
PwProgressReport(int phase, const int64 *counters, int ncounters)
{
	if (my_slot == NULL)
		return;
	Assert(ncounters <= PW_PROGRESS_NCOUNTERS);
	SpinLockAcquire(&my_slot->mutex);
	my_slot->run.phase = phase;
	memcpy(my_slot->run.counters, counters, sizeof(int64) * ncounters);
	SpinLockRelease(&my_slot->mutex);
}

/* Replaces the run's label (the file being read, ...). */
void
PwProgressSetLabel(const char *label)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&my_slot->mutex);
	strlcpy(my_slot->run.label, label, sizeof(my_slot->run.label));
	SpinLockRelease(&my_slot->mutex);
}

/* Clears this backend's slot: the run is over (or failed). */
void
PwProgressEnd(void)
{
	if (my_slot == NULL)
		return;
	SpinLockAcquire(&my_slot->mutex);
	my_slot->run.kind = PW_PROGRESS_NONE;
	SpinLockRelease(&my_slot->mutex);
	my_slot = NULL;
}

/*
 * Copies the runs of "kind" under way in the cluster, each slot under its
 * spinlock, into a palloc'd array; returns how many.
 */
int
PwProgressRunning(PwProgressKind kind, PwProgress **runs)
{
	int			n = 0;

	*runs = palloc(sizeof(PwProgress) * Max(progress_nslots, 1));
	for (int i = 0; progress_slots != NULL && i < progress_nslots; i++)
	{
		SpinLockAcquire(&progress_slots[i].mutex);
		if (progress_slots[i].run.kind == kind)
			(*runs)[n++] = progress_slots[i].run;
		SpinLockRelease(&progress_slots[i].mutex);
	}
	return n;
}
