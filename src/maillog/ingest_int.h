/*-------------------------------------------------------------------------
 *
 * ingest_int.h
 *	  Internal declarations of pw.ingest_maillog(), shared by its parts:
 *	  file_state.c (where to read), aggregate.c (the lines, per address),
 *	  pending.c (deferrals and expiries), carriers_match.c (which addresses
 *	  are carriers), apply.c (the writeback) and ingest.c (the function).
 *
 * The hash tables are defined here with static inline functions so that
 * the loops over lines and over carriers keep them inlined.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_MAILLOG_INGEST_INT_H
#define PW_MAILLOG_INGEST_INT_H

#include "postgres.h"

#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "portability/instr_time.h"
#include "storage/itemptr.h"
#include "utils/date.h"

#include "maillog.h"
#include "common/pw_common.h"
#include "verdict/verdict.h"

/* How long a deferred recipient waits for its queue id's expiry line */
#define MAILLOG_PENDING_WINDOW "30 days"

/* One stretch of a file to read. */
typedef struct MaillogSegment
{
	char	   *path;			/* canonical */
	int64		start;
	uint64		dev;
	uint64		inode;
} MaillogSegment;

/* Counts returned by pw.ingest_maillog() */
typedef struct MaillogIngestCounts
{
	int32		files;
	int64		lines;
	int64		events;
	int64		unparsed;
	int64		overlong;
	int64		sent;
	int64		deferred;
	int64		bounced;
	int64		expired;
	int64		carriers_bounced;
	int64		hard_bounced;	/* bounces that were the address's fault */
	int64		blocked;		/* bounces of a block or throttle category */
	int64		unknown;
	int64		suppressed;
	int64		end_offset;
} MaillogIngestCounts;

/* What a delivery-status line means for the writeback. */
typedef enum EventKind
{
	KIND_OTHER,
	KIND_SENT,
	KIND_DEFERRED,
	KIND_BOUNCED,
	KIND_EXPIRED				/* a message expired (qmgr line, no recipient) */
} EventKind;

/* One day's bounces and deferrals of an address in one category. */
typedef struct CatCount
{
	int			category;		/* index into the ruleset's categories */
	int64		bounced;
	int64		deferred;
	struct CatCount *next;
} CatCount;

/* One day's outcomes of an address. */
typedef struct DayCount
{
	DateADT		day;
	int64		sent;
	int64		deferred;
	int64		bounced;		/* every bounce */
	int64		hard_bounced;	/* of an address-fault category */
	int64		blocked;		/* of a block category */
	int64		throttled;		/* deferrals of a block or throttle category, bounces of a throttle one */
	CatCount   *cats;
	struct DayCount *next;
} DayCount;

/* What the lines of one call said about one (normalised) address. */
typedef struct AddrAgg
{
	char	   *addr;
	TimestampTz first_sent_at;
	TimestampTz last_sent_at;
	TimestampTz last_deferred_at;
	TimestampTz bounced_at;		/* of the latest hard bounce */
	TimestampTz first_bounced_at;
	int64		sent_count;
	int64		deferred_count;
	int64		bounce_count;	/* hard bounces: the address's fault */
	char	   *bounce_dsn;		/* of the latest hard bounce */
	char	   *bounce_reason;
	int			bounce_category;
	char	   *first_dsn;		/* of the first hard bounce: the suppression's */
	char	   *first_reason;
	int			first_category;
	/* bounces that were not the address's fault */
	TimestampTz failed_at;		/* of the latest */
	int64		failed_count;
	int64		blocked_count;	/* of a block or throttle category */
	char	   *failed_dsn;		/* of the latest */
	char	   *failed_reason;
	/* the category of the latest bounce or deferral */
	int			last_category;
	TimestampTz last_category_at;
	int			first_source;
	int			source;			/* the greatest source of its lines */
	DayCount   *days;
	bool		in_carriers;
	bool		to_bounce;		/* a carrier with it is not hard_bounced yet */
	const char *mx;				/* greatest mx of its carriers (interned) */
} AddrAgg;

/*
 * Hash table entry: a string, one copy of it.  Serves the addresses (with
 * what was said about each) and the operator names (see Intern(); agg NULL).
 */
typedef struct StrEntry
{
	const char *key;
	uint32		hash;
	char		status;
	AddrAgg    *agg;
} StrEntry;

#define SH_PREFIX strtab
#define SH_ELEMENT_TYPE StrEntry
#define SH_KEY_TYPE const char *
#define SH_KEY key
#define SH_HASH_KEY(tb, k) hash_bytes((const unsigned char *) (k), strlen(k))
#define SH_EQUAL(tb, a, b) (strcmp(a, b) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* A recipient of a message: queue id and normalised address */
typedef struct PairKey
{
	const char *qid;
	const char *addr;
} PairKey;

/*
 * Hash table entry: what this call knows about a (queue id, address) that
 * may be pending, deferred here or already in pw.maillog_pending.
 */
typedef struct PairEntry
{
	PairKey		key;
	uint32		hash;
	char		status;
	bool		deferred;		/* deferred in these lines: the latest */
	TimestampTz deferred_at;
	char	   *dsn;
	char	   *reason;
	int			source;
	bool		stored;			/* in pw.maillog_pending before this call */
	bool		done;			/* sent or bounced in these lines: the latest */
	TimestampTz done_at;
	bool		expired;		/* bounced by an expiry in these lines */
} PairEntry;

/* The hash of a recipient of a message. */
static inline uint32
MaillogPairHash(PairKey key)
{
	return hash_combine(hash_bytes((const unsigned char *) key.qid, strlen(key.qid)),
						hash_bytes((const unsigned char *) key.addr, strlen(key.addr)));
}

#define SH_PREFIX pairtab
#define SH_ELEMENT_TYPE PairEntry
#define SH_KEY_TYPE PairKey
#define SH_KEY key
#define SH_HASH_KEY(tb, k) MaillogPairHash(k)
#define SH_EQUAL(tb, a, b) (strcmp((a).qid, (b).qid) == 0 && strcmp((a).addr, (b).addr) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* A delivery or bounce of a recipient of a message, kept until applied */
typedef struct DoneEvent
{
	PairKey		key;
	uint32		hash;			/* MaillogPairHash(key), taken while the line is hot */
	TimestampTz at;
} DoneEvent;

/* A message expired (a qmgr line): the recipients it still had bounce */
typedef struct ExpiryEvent
{
	char	   *qid;
	TimestampTz at;
	TimestampTz since;			/* at - MAILLOG_PENDING_WINDOW: older deferrals are forgotten */
	int			source;
} ExpiryEvent;

/* What one call has read so far, in its own memory context. */
typedef struct MaillogIngest
{
	MemoryContext cxt;
	MaillogIngestCounts *counts;
	const VerdictRuleset *rules;	/* the bounce rules, held for the call */
	strtab_hash *addrs;
	AddrAgg   **list;			/* the addresses, in order of appearance */
	int			naddrs;
	int			maxaddrs;
	char	  **sources;		/* the files read */
	int			nsources;
	int			source;			/* the one being read */
	bool		have_events;
	TimestampTz max_logged_at;
	bool		have_day;		/* the day of the last line, cached */
	DateADT		day;
	TimestampTz day_start;
	TimestampTz day_end;
	StringInfoData scratch;		/* the address being normalised */
	strtab_hash *strings;		/* operator names, one copy of each */
	StringInfoData strbuf;
	instr_time	phase_start;	/* for the DEBUG1 timings */
	/* deferrals with a queue id: remembered as pending */
	pairtab_hash *pairs;
	/* deliveries and bounces with a queue id: no longer pending */
	DoneEvent  *done;
	int64		ndone;
	int64		maxdone;
	/* messages expired */
	ExpiryEvent *exps;
	int64		nexps;
	int64		maxexps;
	/* row versions of carriers to mark hard_bounced, found by ScanCarriers() */
	ItemPointerData *btids;
	int64		nbtids;
	int64		maxbtids;
	/* what pw.ingest_progress shows */
	int64		progress_events;	/* events read */
	int64		progress_offset;	/* where the file being read is */
	int64		progress_steps;		/* steps of the apply phase done */
} MaillogIngest;

/* The phases of an ingest, as pw.ingest_progress names them */
typedef enum MaillogPhase
{
	MAILLOG_PHASE_READING,
	MAILLOG_PHASE_APPLYING
} MaillogPhase;

/* The counters of an ingest's progress slot */
enum
{
	MAILLOG_COUNTER_EVENTS,
	MAILLOG_COUNTER_ADDRESSES,
	MAILLOG_COUNTER_OFFSET,
	MAILLOG_COUNTER_STEPS,
	MAILLOG_NCOUNTERS
};

/* Events read between two reports of the reading phase */
#define MAILLOG_PROGRESS_EVERY 65536

/* aggregate.c */
extern void MaillogIngestInit(MaillogIngest *in, MaillogIngestCounts *counts);
extern void MaillogReadSegment(MaillogIngest *in, const MaillogSegment *seg,
							   MaillogIngestCounts *counts);
extern int	MaillogSourceIndex(MaillogIngest *in, const char *path);
extern AddrAgg *MaillogAddrFor(MaillogIngest *in, const char *addr);
extern void MaillogAddOutcome(MaillogIngest *in, AddrAgg *a, EventKind kind,
							  TimestampTz when, char *dsn, char *reason,
							  int source, int category);
extern int	MaillogClassify(MaillogIngest *in, const char *dsn, const char *reason);
extern const char *MaillogIntern(MaillogIngest *in, const char *str, size_t len);
extern void MaillogPhaseDone(MaillogIngest *in, const char *name);
extern void MaillogProgress(MaillogIngest *in, MaillogPhase phase);
extern AddrAgg **MaillogSortAddresses(MaillogIngest *in);

/* pending.c */
extern void MaillogApplyPending(MaillogIngest *in);

/* carriers_match.c */
extern bool MaillogMatchCarriers(MaillogIngest *in, AddrAgg **sorted,
								 PwCarriers *carriers, bool *have_index);

/* ingest.c */
extern Oid	MaillogExtensionFunction(const char *signature);

/* apply.c */
extern void MaillogApply(MaillogIngest *in, PwCarriers *carriers,
						 MaillogIngestCounts *counts, const char *given,
						 const char *canon);

/* file_state.c */
extern int	MaillogFileStatePlan(const char *canon, MaillogSegment *segs,
								 struct stat *sb);
extern void MaillogFileStateSave(const char *canon, const struct stat *sb,
								 const MaillogIngestCounts *counts);

#endif							/* PW_MAILLOG_INGEST_INT_H */
