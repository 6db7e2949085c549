/*-------------------------------------------------------------------------
 *
 * runs.c
 *	  The run history: every claim, tagging run, ingest and confirmation is
 *	  a row of pw.runs (kind, profile, caller, start, end, counts), written
 *	  in the run's own transaction, so a run
 *	  that commits is recorded with what it did and one that rolls back
 *	  leaves nothing half-recorded.  Rows are written as the extension's
 *	  owner: the roles that run jobs read the history but cannot forge it.
 *	  Rows older than pw_deliverability.run_retention are pruned as new
 *	  runs begin.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "common/runs.h"
#include "common/pw_common.h"
#include "common/spi.h"
#include "pw_deliverability.h"

/* pw_deliverability.run_retention: days of pw.runs kept */
static int	pw_run_retention_days = 90;

/* The single column of the owner query and of the run insert */
#define OWNER_COL_OID 1
#define RUN_COL_ID 1

/* Registers pw_deliverability.run_retention and the watch of failed runs. */
void
PwRunsInit(void)
{
	PwRunFailuresInit();
	DefineCustomIntVariable(PW_GUC_PREFIX ".run_retention",
							"Days of run history kept in pw.runs.",
							"Older runs (and the carriers of old claims) are deleted as new runs "
							"begin; 0 keeps them all.",
							&pw_run_retention_days, 90, 0, 36500,
							PGC_SUSET, 0, NULL, NULL, NULL);
}

/* Who is running this: pg_cron, a background worker, or a session's user. */
static char *
PwRunCaller(void)
{
	const char *user = GetUserNameFromId(GetSessionUserId(), true);
	const char *app = application_name ? application_name : "";

	if (MyBgworkerEntry != NULL)
	{
		if (strncmp(MyBgworkerEntry->bgw_type, "pg_cron", 7) == 0 ||
			strncmp(MyBgworkerEntry->bgw_name, "pg_cron", 7) == 0)
			return psprintf("pg_cron (%s)", user ? user : "?");
		return psprintf("worker: %s", MyBgworkerEntry->bgw_type);
	}
	if (strcmp(app, "pg_cron") == 0)
		return psprintf("pg_cron (%s)", user ? user : "?");
	if (app[0] != '\0')
		return psprintf("%s (%s)", user ? user : "?", app);
	return pstrdup(user ? user : "?");
}

/* The extension's owner, who writes pw.runs. */
static Oid
PwRunsOwner(void)
{
	(void) PwSpiExecute("SELECT extowner FROM pg_catalog.pg_extension"
						" WHERE extname = 'pw_deliverability'",
						0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"pw_deliverability\" is not installed in this database")));
	return PwSpiGetOid(0, OWNER_COL_OID);
}

/*
 * Runs a statement of the run history as the extension's owner, with the
 * safe search_path (the caller's user and path are back on return; an error
 * resets them with the transaction).
 */
uint64
PwRunsExecute(const char *sql, int nargs, const Oid *types, const Datum *values,
			  const char *nulls, int expected)
{
	Oid			save_user;
	int			save_sec;
	uint64		n;

	int			nestlevel = PwSafeSearchPath();

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(PwRunsOwner(), save_sec | SECURITY_LOCAL_USERID_CHANGE);
	n = PwSpiExecute(sql, nargs, types, values, nulls, false, expected);
	SetUserIdAndSecContext(save_user, save_sec);
	PwScopeEnd(nestlevel);
	return n;
}

/*
 * Inserts the row of a run of "kind" (profile may be NULL): with its start
 * and caller as PwRunStart() watched them (watched now if not yet), and
 * with counts (a finished run) or without (one under way).  Prunes runs
 * past the retention and writes the failed runs queued first.  Returns the
 * run_id.  Connected to SPI.
 */
static int64
PwRunInsert(const char *kind, const char *profile, StringInfo counts)
{
	Oid			types[5] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	TimestampTz started;
	const char *caller;
	int64		run_id;

	if (pw_run_retention_days > 0)
	{
		Oid			dtypes[1] = {INT4OID};
		Datum		dvalues[1] = {Int32GetDatum(pw_run_retention_days)};

		(void) PwRunsExecute("DELETE FROM pw.runs"
							 " WHERE started < pg_catalog.now() - pg_catalog.make_interval(days => $1)",
							 1, dtypes, dvalues, NULL, SPI_OK_DELETE);
	}
	PwRunFailuresFlush();
	if (!PwRunWatched(&started, &caller))
	{
		PwRunStart(kind, profile);
		(void) PwRunWatched(&started, &caller);
	}
	values[0] = CStringGetTextDatum(kind);
	if (profile)
		values[1] = CStringGetTextDatum(profile);
	else
		nulls[1] = 'n';
	values[2] = TimestampTzGetDatum(started);
	values[3] = CStringGetTextDatum(caller);
	if (counts)
	{
		appendStringInfoChar(counts, '}');
		values[4] = CStringGetTextDatum(counts->data);
	}
	else
		nulls[4] = 'n';
	(void) PwRunsExecute("INSERT INTO pw.runs (kind, profile, started, finished, caller, pid, counts)"
						 " VALUES ($1, $2, $3,"
						 "         CASE WHEN $5 IS NOT NULL THEN pg_catalog.clock_timestamp() END,"
						 "         $4, pg_catalog.pg_backend_pid(), coalesce($5::jsonb, '{}'))"
						 " RETURNING run_id",
						 5, types, values, nulls, SPI_OK_INSERT_RETURNING);
	run_id = PwSpiGetInt64(0, RUN_COL_ID);
	SPI_freetuptable(SPI_tuptable);
	return run_id;
}

/*
 * Records the start of a run of "kind" (profile may be NULL), to be ended
 * by PwRunEnd(), and returns its run_id.  Connected to SPI.
 */
int64
PwRunBegin(const char *kind, const char *profile)
{
	int64		run_id = PwRunInsert(kind, profile, NULL);

	PwRunWatchId(run_id);
	return run_id;
}

/*
 * Marks the start of a run of "kind" (profile may be NULL) in this backend:
 * its start and caller for the row PwRunBegin() or PwRunRecord() writes;
 * if it fails before it is recorded, it is recorded as failed
 * (run_failures.c).  No SPI needed.
 */
void
PwRunStart(const char *kind, const char *profile)
{
	PwRunWatch(kind, profile, GetCurrentTimestamp(), PwRunCaller(), 0);
}

/*
 * Records a whole run at its end, in one row: started when PwRunStart() was
 * called.  Returns its run_id.  Connected to SPI.
 */
int64
PwRunRecord(const char *kind, const char *profile, StringInfo counts)
{
	int64		run_id = PwRunInsert(kind, profile, counts);

	PwRunUnwatch();
	return run_id;
}

/* Starts the counts of a run: an empty JSON object to add to. */
void
PwRunCountsInit(StringInfo counts)
{
	initStringInfo(counts);
	appendStringInfoChar(counts, '{');
}

/* Adds "name": value to the counts. */
void
PwRunCount(StringInfo counts, const char *name, int64 value)
{
	appendStringInfo(counts, "%s\"%s\": " INT64_FORMAT,
					 counts->len > 1 ? ", " : "", name, value);
}

/* Adds "name": seconds (three decimals) to the counts. */
void
PwRunCountSeconds(StringInfo counts, const char *name, double seconds)
{
	appendStringInfo(counts, "%s\"%s\": %.3f",
					 counts->len > 1 ? ", " : "", name, seconds);
}

/* Adds "name": "text" (a JSON string) to the counts. */
void
PwRunCountText(StringInfo counts, const char *name, const char *value)
{
	appendStringInfo(counts, "%s\"%s\": ", counts->len > 1 ? ", " : "", name);
	escape_json(counts, value);
}

/* Adds every integer column of a row (a composite datum) to the counts. */
void
PwRunCountsFromRow(StringInfo counts, TupleDesc tupdesc, Datum row)
{
	HeapTupleHeader td = DatumGetHeapTupleHeader(row);
	HeapTupleData tuple;
	Datum	   *values = palloc(sizeof(Datum) * tupdesc->natts);
	bool	   *nulls = palloc(sizeof(bool) * tupdesc->natts);

	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = td;
	heap_deform_tuple(&tuple, tupdesc, values, nulls);
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (att->attisdropped || nulls[i])
			continue;
		if (att->atttypid == INT8OID)
			PwRunCount(counts, NameStr(att->attname), DatumGetInt64(values[i]));
		else if (att->atttypid == INT4OID)
			PwRunCount(counts, NameStr(att->attname), DatumGetInt32(values[i]));
	}
	pfree(values);
	pfree(nulls);
}

/* Records the end of run_id with its counts. */
void
PwRunEnd(int64 run_id, StringInfo counts)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];

	appendStringInfoChar(counts, '}');
	values[0] = Int64GetDatum(run_id);
	values[1] = CStringGetTextDatum(counts->data);
	(void) PwRunsExecute("UPDATE pw.runs SET finished = pg_catalog.clock_timestamp(),"
						 " counts = $2::jsonb WHERE run_id = $1",
						 2, types, values, NULL, SPI_OK_UPDATE);
	PwRunUnwatch();
}

/* Records the carriers a claim run marked (ids: an int8[] datum). */
void
PwRunAddCarriers(int64 run_id, Datum ids)
{
	Oid			types[2] = {INT8OID, INT8ARRAYOID};
	Datum		values[2] = {Int64GetDatum(run_id), ids};

	(void) PwRunsExecute("INSERT INTO pw.run_carriers (run_id, carrier_id)"
						 " SELECT $1, id FROM pg_catalog.unnest($2) AS id",
						 2, types, values, NULL, SPI_OK_INSERT);
}
