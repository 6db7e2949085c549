/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  The extension's life in a database: whether the library was preloaded
 *	  (what pw.health() and CREATE EXTENSION report), and DROP EXTENSION
 *	  removing the indexes and statistics the extension created on the
 *	  carriers table first (an index on pw.email_domain() depends on the
 *	  extension's function and would make the drop fail; the partial
 *	  selection indexes would stay behind a DROP ... CASCADE).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/acl.h"

#include "common/spi.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_library_preloaded);

/* the extension's name in pg_extension */
#define PW_EXTENSION_NAME "pw_deliverability"

/* whether _PG_init() ran from shared_preload_libraries */
static bool pw_preloaded = false;

static ProcessUtility_hook_type prev_process_utility = NULL;

/* Whether a DROP statement drops this database's pw_deliverability. */
static bool
DropsThisExtension(Node *parsetree)
{
	DropStmt   *stmt;
	ListCell   *lc;
	Oid			ext;

	if (!IsA(parsetree, DropStmt))
		return false;
	stmt = (DropStmt *) parsetree;
	if (stmt->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, stmt->objects)
	{
		if (strcmp(strVal(lfirst(lc)), PW_EXTENSION_NAME) != 0)
			continue;
		ext = get_extension_oid(PW_EXTENSION_NAME, true);
		/* not the owner: the drop itself says so */
		return OidIsValid(ext) && pg_extension_ownercheck(ext, GetUserId());
	}
	return false;
}

/*
 * Drops the extension's indexes and statistics on the carriers table, after
 * locking the extension as DROP EXTENSION does: the lock order of the jobs
 * (the extension before the carriers, docs/internals.md) holds.
 */
static void
DropCarrierObjects(void)
{
	Oid			ext = get_extension_oid(PW_EXTENSION_NAME, false);

	LockDatabaseObject(ExtensionRelationId, ext, 0, AccessExclusiveLock);
	/* dropped meanwhile by another session: the drop itself says so */
	if (get_extension_oid(PW_EXTENSION_NAME, true) != ext)
		return;
	SPI_connect();
	(void) PwSpiRun("SELECT pw.drop_carrier_objects()", SPI_OK_SELECT);
	SPI_finish();
}

/* ProcessUtility hook: a DROP EXTENSION pw_deliverability cleans up first. */
static void
PwProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				 ProcessUtilityContext context, ParamListInfo params,
				 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	if (DropsThisExtension(pstmt->utilityStmt))
		DropCarrierObjects();
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
							 queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/* Remembers whether the library is being preloaded; installs the hook. */
void
PwLifecycleInit(void)
{
	pw_preloaded = process_shared_preload_libraries_in_progress;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = PwProcessUtility;
}

/* pw.library_preloaded(): whether shared_preload_libraries loaded the library. */
Datum
pw_library_preloaded(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pw_preloaded);
}
