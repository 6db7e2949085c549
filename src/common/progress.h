/*-------------------------------------------------------------------------
 *
 * progress.h
 *	  Progress of long runs (tagging, ingest) in shared-memory slots of the
 *	  extension's own, one per backend: PostgreSQL 15 has no progress
 *	  command type for an extension.  Each subsystem names its phases and
 *	  counters and has the view that reads its kind.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_PROGRESS_H
#define PW_PROGRESS_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* What a slot reports */
typedef enum PwProgressKind
{
	PW_PROGRESS_NONE = 0,
	PW_PROGRESS_MX_TAG,
	PW_PROGRESS_INGEST
} PwProgressKind;

#define PW_PROGRESS_NCOUNTERS 8
#define PW_PROGRESS_LABEL_LEN 256

/* One running run, as a view reads it */
typedef struct PwProgress
{
	int			pid;
	Oid			dbid;
	PwProgressKind kind;
	bool		background;
	TimestampTz started;
	int			phase;			/* the subsystem's phase number */
	int64		limit;			/* the run's limit (max_domains, ...) */
	int64		counters[PW_PROGRESS_NCOUNTERS];
	char		label[PW_PROGRESS_LABEL_LEN];	/* a path, ... */
} PwProgress;

extern void PwProgressInit(void);
extern void PwProgressStart(PwProgressKind kind, bool background, int64 limit,
							const char *label);
extern void PwProgressReport(int phase, const int64 *counters, int ncounters);
extern void PwProgressSetLabel(const char *label);
extern void PwProgressEnd(void);
extern int	PwProgressRunning(PwProgressKind kind, PwProgress **runs);

#endif							/* PW_PROGRESS_H */
