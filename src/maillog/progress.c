/*-------------------------------------------------------------------------
 *
 * progress.c
 *	  pw.ingest_progress: the ingests under way in the cluster, from their
 *	  backends' progress slots (common/progress.c): the file being read,
 *	  the phase, events and addresses so far, the apply phase's steps.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "common/progress.h"
#include "ingest_int.h"

PG_FUNCTION_INFO_V1(pw_ingest_progress_rows);

/* The phases' names, in MaillogPhase order */
static const char *const phase_names[] = {
	"reading",
	"applying",
};

StaticAssertDecl(lengthof(phase_names) == MAILLOG_PHASE_APPLYING + 1,
				 "a name for each ingest phase");
StaticAssertDecl(MAILLOG_NCOUNTERS <= PW_PROGRESS_NCOUNTERS, "the ingest counters fit a slot");

/* Columns of pw.ingest_progress_rows() */
enum
{
	INGEST_PROGRESS_COL_PID,
	INGEST_PROGRESS_COL_DATID,
	INGEST_PROGRESS_COL_STARTED,
	INGEST_PROGRESS_COL_FILE,
	INGEST_PROGRESS_COL_PHASE,
	INGEST_PROGRESS_COL_OFFSET,
	INGEST_PROGRESS_COL_EVENTS,
	INGEST_PROGRESS_COL_ADDRESSES,
	INGEST_PROGRESS_COL_STEPS,
	INGEST_PROGRESS_NCOLS
};

/* pw.ingest_progress_rows(): one row per ingest under way in the cluster. */
Datum
pw_ingest_progress_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PwProgress *runs;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	n = PwProgressRunning(PW_PROGRESS_INGEST, &runs);
	for (int i = 0; i < n; i++)
	{
		const PwProgress *s = &runs[i];
		Datum		values[INGEST_PROGRESS_NCOLS];
		bool		nulls[INGEST_PROGRESS_NCOLS] = {0};

		values[INGEST_PROGRESS_COL_PID] = Int32GetDatum(s->pid);
		values[INGEST_PROGRESS_COL_DATID] = ObjectIdGetDatum(s->dbid);
		values[INGEST_PROGRESS_COL_STARTED] = TimestampTzGetDatum(s->started);
		values[INGEST_PROGRESS_COL_FILE] = CStringGetTextDatum(s->label);
		values[INGEST_PROGRESS_COL_PHASE] = CStringGetTextDatum(phase_names[s->phase]);
		values[INGEST_PROGRESS_COL_OFFSET] = Int64GetDatum(s->counters[MAILLOG_COUNTER_OFFSET]);
		values[INGEST_PROGRESS_COL_EVENTS] = Int64GetDatum(s->counters[MAILLOG_COUNTER_EVENTS]);
		values[INGEST_PROGRESS_COL_ADDRESSES] = Int64GetDatum(s->counters[MAILLOG_COUNTER_ADDRESSES]);
		values[INGEST_PROGRESS_COL_STEPS] = Int64GetDatum(s->counters[MAILLOG_COUNTER_STEPS]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}
