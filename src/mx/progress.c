/*-------------------------------------------------------------------------
 *
 * progress.c
 *	  The progress of running tagging runs, for pw.mx_tag_progress: the
 *	  tagging run's phases and counts in the backend's progress slot
 *	  (common/progress.c).  Without shared_preload_libraries runs report
 *	  nothing and the view is empty.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "common/progress.h"
#include "mx.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_mx_tag_progress_rows);

/* The phases' names, in MxTagPhase order */
static const char *const phase_names[] = {
	"waiting for the tagging lock",
	"looking up",
	"writing",
	"labelling carriers from the cache",
};

StaticAssertDecl(lengthof(phase_names) == MX_PHASE_CACHED_LABELS + 1,
				 "a name for each tagging phase");

/* The counters of a tagging run, in their slot order */
enum
{
	MX_COUNTER_FETCHED,
	MX_COUNTER_LOOKED_UP,
	MX_COUNTER_TAGGED,
	MX_COUNTER_NONE,
	MX_COUNTER_FAILED,
	MX_COUNTER_WRITTEN,
	MX_COUNTER_CARRIERS,
	MX_COUNTER_BATCHES,
	MX_NCOUNTERS
};

StaticAssertDecl(MX_NCOUNTERS <= PW_PROGRESS_NCOUNTERS, "the tagging counters fit a slot");

/* Starts reporting a tagging run of up to max_domains domains. */
void
MxProgressStart(int max_domains, bool background)
{
	PwProgressStart(PW_PROGRESS_MX_TAG, background, max_domains, NULL);
	MxProgressReport(MX_PHASE_LOCK, &(MxTagProgress) {0});
}

/* Reports the run's phase and counts so far. */
void
MxProgressReport(MxTagPhase phase, const MxTagProgress *counts)
{
	int64		c[MX_NCOUNTERS];

	c[MX_COUNTER_FETCHED] = counts->fetched;
	c[MX_COUNTER_LOOKED_UP] = counts->looked_up;
	c[MX_COUNTER_TAGGED] = counts->tagged;
	c[MX_COUNTER_NONE] = counts->none;
	c[MX_COUNTER_FAILED] = counts->failed;
	c[MX_COUNTER_WRITTEN] = counts->written;
	c[MX_COUNTER_CARRIERS] = counts->carriers;
	c[MX_COUNTER_BATCHES] = counts->batches;
	PwProgressReport(phase, c, MX_NCOUNTERS);
}

/* The tagging run is over (or failed). */
void
MxProgressEnd(void)
{
	PwProgressEnd();
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

/* Returns one row of a running tagging run. */
static void
PutProgressRow(ReturnSetInfo *rsinfo, const PwProgress *s)
{
	Datum		values[PROGRESS_NCOLS];
	bool		nulls[PROGRESS_NCOLS] = {0};

	values[PROGRESS_COL_PID] = Int32GetDatum(s->pid);
	values[PROGRESS_COL_DATID] = ObjectIdGetDatum(s->dbid);
	values[PROGRESS_COL_BACKGROUND] = BoolGetDatum(s->background);
	values[PROGRESS_COL_STARTED] = TimestampTzGetDatum(s->started);
	values[PROGRESS_COL_PHASE] = CStringGetTextDatum(phase_names[s->phase]);
	values[PROGRESS_COL_MAX_DOMAINS] = Int32GetDatum((int32) s->limit);
	values[PROGRESS_COL_FETCHED] = Int64GetDatum(s->counters[MX_COUNTER_FETCHED]);
	values[PROGRESS_COL_LOOKED_UP] = Int64GetDatum(s->counters[MX_COUNTER_LOOKED_UP]);
	values[PROGRESS_COL_TAGGED] = Int64GetDatum(s->counters[MX_COUNTER_TAGGED]);
	values[PROGRESS_COL_NONE] = Int64GetDatum(s->counters[MX_COUNTER_NONE]);
	values[PROGRESS_COL_FAILED] = Int64GetDatum(s->counters[MX_COUNTER_FAILED]);
	values[PROGRESS_COL_WRITTEN] = Int64GetDatum(s->counters[MX_COUNTER_WRITTEN]);
	values[PROGRESS_COL_CARRIERS] = Int64GetDatum(s->counters[MX_COUNTER_CARRIERS]);
	values[PROGRESS_COL_BATCHES] = Int64GetDatum(s->counters[MX_COUNTER_BATCHES]);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/* pw.mx_tag_progress_rows(): one row per tagging run under way in the cluster. */
Datum
pw_mx_tag_progress_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	PwProgress *runs;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	n = PwProgressRunning(PW_PROGRESS_MX_TAG, &runs);
	for (int i = 0; i < n; i++)
		PutProgressRow(rsinfo, &runs[i]);
	PG_RETURN_NULL();
}
