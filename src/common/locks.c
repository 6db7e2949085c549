/*-------------------------------------------------------------------------
 *
 * locks.c
 *	  The two locks of the daily loop's lock order ("Lock order" in
 *	  docs/internals.md): the extension itself in ACCESS SHARE mode, which
 *	  every job takes first, so that DROP EXTENSION (which locks the
 *	  extension before any of its members) waits for a running job instead
 *	  of taking half of its tables first; and the carriers write lock, which
 *	  the jobs that update carrier rows and may wait for them (tagging,
 *	  ingest, confirmation) take right before their first carrier row, so
 *	  that one of them at a time holds carrier row locks.  A job that has
 *	  to wait for a lock another backend holds says for whom first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "common/hashfn.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/sinvaladt.h"
#include "utils/backend_status.h"
#include "utils/timestamp.h"

#include "common/pw_common.h"

/* the extension's name in pg_extension */
#define PW_EXTENSION_NAME "pw_deliverability"

/* locktag_field4 of the carriers write lock (the claim lock uses 0x7077) */
#define PW_CARRIERS_WRITE_LOCK_SPACE 0x7078

/*
 * Locks the installed extension in ACCESS SHARE mode until the end of the
 * transaction.  Returns false if it is not installed (also when it was
 * dropped while this waited); with missing_ok false that is an error.
 */
bool
PwLockExtension(bool missing_ok)
{
	for (;;)
	{
		Oid			ext = get_extension_oid(PW_EXTENSION_NAME, true);

		if (!OidIsValid(ext))
			break;
		LockDatabaseObject(ExtensionRelationId, ext, 0, AccessShareLock);
		/* the lock processed invalidations: a drop that committed shows */
		if (get_extension_oid(PW_EXTENSION_NAME, true) == ext)
			return true;
		UnlockDatabaseObject(ExtensionRelationId, ext, 0, AccessShareLock);
	}
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is not installed in this database", PW_EXTENSION_NAME),
				 errhint("It was dropped while this call waited for it.")));
	return false;
}

/*
 * Takes the carriers write lock (until the end of the transaction): the
 * jobs that update carrier rows and may wait for a row another one holds
 * take it before their first carrier row, so they never wait for each
 * other's rows in a cycle.  Claims skip locked rows and do not take it.
 */
void
PwLockCarriersWrites(const PwCarriers *carriers)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, carriers->relid, 0,
						 PW_CARRIERS_WRITE_LOCK_SPACE);
	PwLockAcquireSaying(&tag, ExclusiveLock, "the carriers write lock");
}

/* Says with a NOTICE which backends hold the lock this one waits for. */
static void
PwLockSayHolders(const LOCKTAG *tag, LOCKMODE mode, const char *what)
{
	VirtualTransactionId *holders = GetLockConflicts(tag, mode, NULL);
	StringInfoData who;
	int			nbackends = pgstat_fetch_stat_numbackends();

	initStringInfo(&who);
	for (; VirtualTransactionIdIsValid(*holders); holders++)
	{
		PGPROC	   *proc = BackendIdGetProc(holders->backendId);
		int			pid = proc ? proc->pid : 0;
		const char *app = "";
		const char *since = NULL;

		if (pid == 0)
			continue;
		for (int i = 1; i <= nbackends; i++)
		{
			LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);
			PgBackendStatus *be = local ? &local->backendStatus : NULL;

			if (be && be->st_procpid == pid)
			{
				app = be->st_appname ? be->st_appname : "";
				if (be->st_xact_start_timestamp != 0)
					since = timestamptz_to_str(be->st_xact_start_timestamp);
				break;
			}
		}
		appendStringInfo(&who, "%sPID %d%s%s%s%s%s", who.len > 0 ? ", " : "", pid,
						 app[0] ? " (" : "", app, app[0] ? ")" : "",
						 since ? ", in a transaction since " : "", since ? since : "");
	}
	ereport(NOTICE,
			(errmsg("waiting for %s, held by %s", what,
					who.len > 0 ? who.data : "another backend"),
			 errhint("pg_stat_activity shows what that backend runs; this call goes on once it ends.")));
}

/*
 * Acquires a lock until the end of the transaction; when another backend
 * holds it, first says who (what names the lock) and then waits.
 */
void
PwLockAcquireSaying(const struct LOCKTAG *tag, int mode, const char *what)
{
	if (LockAcquire(tag, mode, false, true) != LOCKACQUIRE_NOT_AVAIL)
		return;
	PwLockSayHolders(tag, mode, what);
	(void) LockAcquire(tag, mode, false, false);
}

/*
 * Takes the lock of pg_advisory_xact_lock(hashtext(name)) (so pg_locks and
 * SQL see it as that advisory lock), saying whom it waits for.
 */
void
PwLockNamedAdvisory(const char *name, const char *what)
{
	LOCKTAG		tag;
	int64		key = (int32) DatumGetUInt32(hash_any((const unsigned char *) name,
													  strlen(name)));

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key, 1);
	PwLockAcquireSaying(&tag, ExclusiveLock, what);
}
