/*-------------------------------------------------------------------------
 *
 * select.h
 *	  Selection: whom a run of a send profile may mail (subsystem header).
 *
 *	  select.c    SQL entry points: pw.select_sendable_carriers(),
 *	              pw.selection_composition()
 *	  run.c       the run loop: batches of candidates in ascending id
 *	  claim.c     claiming: the claim lock, row locks, marking rows sent
 *	  loaders.c   the profile, caps, classes, brake, blocked domains,
 *	              suppressions, today's sends, available candidates
 *	  buckets.c   buckets by label and the in-memory lookups
 *	  allowance.c the allowance policy (PostgreSQL-free, unit-tested)
 *
 *	  SPI goes through common/spi.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef SEL_SELECT_H
#define SEL_SELECT_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/hsearch.h"

#include "common/pw_common.h"
#include "select/allowance.h"

/* Bucket name of untagged carriers */
#define SEL_NULL_BUCKET "__null__"

/* pw.maillog_daily's operator name of the untagged carriers' outcomes */
#define SEL_UNTAGGED_OPERATOR "(untagged)"

/* Rows fetched by the first batch at least, and by any batch at most */
#define SEL_MIN_BATCH 256
#define SEL_MAX_BATCH 65536

/* Suppression lists up to this size are checked in memory, larger in SQL */
#define SEL_SUPPRESSIONS_IN_MEMORY 5000

/* One bucket: an operator label, or the untagged carriers. */
typedef struct SelBucket
{
	char	   *label;			/* hash key; NULL for the untagged bucket */
	SelBucketFacts facts;		/* what the allowance policy looks at */
	bool		resolved;		/* allowance computed */
	int64		allowance;		/* what this run may take */
	int64		taken;			/* taken in this run */
	int64		available;		/* composition: unsent candidates */
	int64		seen;			/* rows of it the batch queries returned */
	char	   *brake_reason;	/* why the brake is on it, or NULL */
} SelBucket;

/* A taken candidate. */
typedef struct SelRow
{
	int64		id;
	char	   *email;
	SelBucket  *bucket;
	bool		dropped;		/* claim: could not be locked */
} SelRow;

/* Everything one call works with, in its own memory context. */
typedef struct SelState
{
	MemoryContext cxt;
	bool		read_only;		/* SPI read-only (no claim) */
	PwCarriers	carriers;
	char	   *profile;
	char	   *purpose;
	char	   *sent_col;		/* quoted */
	char	   *sent_col_raw;
	int32		day;
	bool		brake_enabled;
	SelAllowanceRules rules;	/* the profile's caps on the warmup day */
	char	   *pool_sql;		/* quoted literals: 'a', 'b' */
	HTAB	   *buckets;		/* char * label -> SelBucket */
	HTAB	   *blocked;		/* char * domain -> itself */
	HTAB	   *suppressed;		/* char * email -> itself, if in memory */
	SelBucket	null_bucket;
	SelRow	   *rows;
	int64		nrows;			/* rows taken (dropped ones included) */
	int64		rows_alloc;
	int64		ntaken;			/* rows taken and not dropped */
	int64		run_id;			/* the claim's row of pw.runs, or 0 */
} SelState;

/* buckets.c */
extern HTAB *SelCreateStringHash(SelState *st, const char *name, Size entrysize);
extern SelBucket *SelGetBucket(SelState *st, const char *label);
extern void SelResolve(SelState *st, SelBucket *b);
extern bool SelBlocked(SelState *st, const char *email);
extern bool SelSuppressed(SelState *st, const char *email);

/* loaders.c */
extern void SelLoadProfile(SelState *st, const char *profile, bool day_given,
						   int32 day);
extern void SelLoadCaps(SelState *st);
extern void SelLoadSentToday(SelState *st);
extern void SelAppendCandidateWhere(SelState *st, StringInfo sql, bool in_memory);
extern void SelLoadAvailable(SelState *st);

/* claim.c */
extern void SelClaimLock(SelState *st);
extern void SelLockPending(SelState *st, int64 from);
extern void SelMarkSent(SelState *st);

/* run.c */
extern void SelRun(SelState *st, int64 quota, bool claim);

#endif							/* SEL_SELECT_H */
