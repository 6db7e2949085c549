/*-------------------------------------------------------------------------
 *
 * ingest.c
 *	  pw.ingest_maillog(): apply a Postfix log to the carriers exactly once
 *	  (deliveries recorded, hard bounces written back and suppressed).
 *
 * The file position (device, inode, offset) lives in pw.maillog_files and
 * advances in the same transaction as the writeback, so an error or a crash
 * never skips or repeats a line.  The lines are aggregated in C while they
 * are read (one entry per address, with its outcomes per day), then applied
 * with set-based statements over arrays and ephemeral named relations, built
 * on the configured carriers contract (PwCarriersLoad).
 *
 * This file holds the SQL function and the order of its steps; the steps
 * are file_state.c, aggregate.c, pending.c, carriers_match.c and apply.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "common/progress.h"
#include "common/runs.h"
#include "common/spi.h"
#include "ingest_int.h"

PG_FUNCTION_INFO_V1(pw_ingest_maillog);

/* Result column of the lookup of a function by its signature */
#define FUNCTION_OID 1

/* The columns returned by pw.ingest_maillog() */
#define INGEST_RESULT_COLS 15

/* The oid of one of the extension's functions, by its signature. */
Oid
MaillogExtensionFunction(const char *signature)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1];

	args[0] = CStringGetTextDatum(signature);
	PwSpiExecute("SELECT pg_catalog.to_regprocedure($1)::oid", 1, types, args, NULL,
				 false, SPI_OK_SELECT);
	if (PwSpiIsNull(0, FUNCTION_OID))
		elog(ERROR, "pw.ingest_maillog: function %s is missing", signature);
	return PwSpiGetOid(0, FUNCTION_OID);
}

/*
 * The ingest reads the log as pw.read_maillog() does: refuse a role that may
 * not execute that function.
 */
static void
CheckReadPrivilege(void)
{
	Oid			fn = MaillogExtensionFunction("pw.read_maillog(text, bigint)");

	if (pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, "read_maillog");
}

/* Reads the planned segments of a log into a new MaillogIngest and applies them. */
static void
ReadAndApply(PwCarriers *carriers, MaillogIngestCounts *counts,
			 const MaillogSegment *segs, int nsegs, const char *given,
			 const char *canon, instr_time *t_read)
{
	MaillogIngest in;

	MaillogIngestInit(&in, counts);
	for (int i = 0; i < nsegs; i++)
		MaillogReadSegment(&in, &segs[i], counts);
	INSTR_TIME_SET_CURRENT(*t_read);
	MaillogApply(&in, carriers, counts, given, canon);
	MemoryContextDelete(in.cxt);
}

/* The row pw.ingest_maillog() returns. */
static Datum
IngestResult(TupleDesc tupdesc, const MaillogIngestCounts *counts)
{
	Datum		values[INGEST_RESULT_COLS];
	bool		nulls[INGEST_RESULT_COLS] = {0};

	values[0] = Int32GetDatum(counts->files);
	values[1] = Int64GetDatum(counts->lines);
	values[2] = Int64GetDatum(counts->events);
	values[3] = Int64GetDatum(counts->unparsed);
	values[4] = Int64GetDatum(counts->overlong);
	values[5] = Int64GetDatum(counts->sent);
	values[6] = Int64GetDatum(counts->deferred);
	values[7] = Int64GetDatum(counts->bounced);
	values[8] = Int64GetDatum(counts->expired);
	values[9] = Int64GetDatum(counts->carriers_bounced);
	values[10] = Int64GetDatum(counts->unknown);
	values[11] = Int64GetDatum(counts->suppressed);
	values[12] = Int64GetDatum(counts->end_offset);
	values[13] = Int64GetDatum(counts->hard_bounced);
	values[14] = Int64GetDatum(counts->blocked);
	return HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls));
}

/* Records the ingest in pw.runs: the path and the counts it returns. */
static void
RecordIngestRun(TupleDesc tupdesc, Datum result, const char *path)
{
	StringInfoData counts;

	PwRunCountsInit(&counts);
	PwRunCountText(&counts, "path", path);
	PwRunCountsFromRow(&counts, tupdesc, result);
	(void) PwRunRecord(PW_RUN_INGEST, NULL, &counts);
}

/*
 * pw.ingest_maillog(path text): reads a log from where the last call on it
 * stopped, finishing the rotated file (path.1) first when the file was
 * rotated, applies what it read and advances the stored offset.
 */
Datum
pw_ingest_maillog(PG_FUNCTION_ARGS)
{
	char	   *given = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *canon = MaillogResolvePath(given);
	PwCarriers	carriers;
	MaillogIngestCounts counts;
	TupleDesc	tupdesc;
	struct stat sb;
	MaillogSegment segs[2];
	int			nsegs;
	MemoryContext callerctx = CurrentMemoryContext;
	int			nestlevel;
	Datum		result;
	instr_time	t_start,
				t_read,
				t_end;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	memset(&counts, 0, sizeof(counts));
	INSTR_TIME_SET_CURRENT(t_start);

	PwRunStart(PW_RUN_INGEST, NULL);
	SPI_connect();
	nestlevel = PwSafeSearchPath();
	/* first the extension: a DROP EXTENSION under way is waited for */
	(void) PwLockExtension(false);
	CheckReadPrivilege();
	PwCarriersLoad(&carriers);
	nsegs = MaillogFileStatePlan(canon, segs, &sb);
	PwProgressStart(PW_PROGRESS_INGEST, false, 0, canon);
	PG_TRY();
	{
		ReadAndApply(&carriers, &counts, segs, nsegs, given, canon, &t_read);
	}
	PG_FINALLY();
	{
		PwProgressEnd();
	}
	PG_END_TRY();
	MaillogFileStateSave(canon, &sb, &counts);
	MemoryContextSwitchTo(callerctx);
	result = IngestResult(tupdesc, &counts);
	RecordIngestRun(tupdesc, result, given);
	PwScopeEnd(nestlevel);
	SPI_finish();

	INSTR_TIME_SET_CURRENT(t_end);
	INSTR_TIME_SUBTRACT(t_end, t_read);
	INSTR_TIME_SUBTRACT(t_read, t_start);
	ereport(DEBUG1,
			(errmsg_internal("ingest_maillog %s: " INT64_FORMAT " lines, " INT64_FORMAT
							 " events, read in %.0f ms, applied in %.0f ms",
							 canon, counts.lines, counts.events,
							 INSTR_TIME_GET_MILLISEC(t_read), INSTR_TIME_GET_MILLISEC(t_end))));
	MemoryContextSwitchTo(callerctx);
	PG_RETURN_DATUM(result);
}
