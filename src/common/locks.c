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
 *	  that one of them at a time holds carrier row locks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"

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
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}
