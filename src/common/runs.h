/*-------------------------------------------------------------------------
 *
 * runs.h
 *	  The run history (pw.runs): a run recorded at its start and end, with
 *	  its counts as a JSON object, in the run's own transaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_RUNS_H
#define PW_RUNS_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"

/* the kinds of pw.runs (its CHECK constraint lists the same) */
#define PW_RUN_CLAIM		"claim"
#define PW_RUN_MX_TAG		"mx_tag"
#define PW_RUN_INGEST		"ingest"
#define PW_RUN_CONFIRM		"confirm"

extern void PwRunStart(const char *kind, const char *profile);
extern int64 PwRunBegin(const char *kind, const char *profile);
extern void PwRunEnd(int64 run_id, StringInfo counts);
extern int64 PwRunRecord(const char *kind, const char *profile, StringInfo counts);
extern void PwRunAddCarriers(int64 run_id, Datum ids);

extern void PwRunCountsInit(StringInfo counts);
extern void PwRunCount(StringInfo counts, const char *name, int64 value);
extern void PwRunCountSeconds(StringInfo counts, const char *name, double seconds);
extern void PwRunCountText(StringInfo counts, const char *name, const char *value);
extern void PwRunCountsFromRow(StringInfo counts, TupleDesc tupdesc, Datum row);

extern uint64 PwRunsExecute(const char *sql, int nargs, const Oid *types,
							const Datum *values, const char *nulls, int expected);

/* run_failures.c */
extern void PwRunFailuresInit(void);
extern void PwRunWatch(const char *kind, const char *profile, TimestampTz started,
					   const char *caller, int64 run_id);
extern void PwRunWatchId(int64 run_id);
extern bool PwRunWatched(TimestampTz *started, const char **caller);
extern void PwRunUnwatch(void);
extern void PwRunFailuresFlush(void);

#endif							/* PW_RUNS_H */
