/*-------------------------------------------------------------------------
 *
 * aggregate.c
 *	  The lines of a log being ingested, aggregated while they are read: one
 *	  entry per (normalised) address with its outcomes per day, the files
 *	  read, the interned operator names, the deferrals, deliveries and
 *	  expiries by queue id that pending.c applies, and the addresses sorted
 *	  for the writeback.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "common/progress.h"
#include "ingest_int.h"

/* The index of a source file in in->sources, added if new. */
int
MaillogSourceIndex(MaillogIngest *in, const char *path)
{
	for (int i = 0; i < in->nsources; i++)
		if (strcmp(in->sources[i], path) == 0)
			return i;
	in->sources = in->nsources == 0 ? palloc(sizeof(char *)) :
		repalloc(in->sources, (in->nsources + 1) * sizeof(char *));
	in->sources[in->nsources] = pstrdup(path);
	return in->nsources++;
}

/* Whether source i sorts after source j (as max() on text would). */
static bool
SourceAfter(MaillogIngest *in, int i, int j)
{
	return varstr_cmp(in->sources[i], strlen(in->sources[i]),
					  in->sources[j], strlen(in->sources[j]),
					  DEFAULT_COLLATION_OID) > 0;
}

/* The date of a time in the session time zone (as timestamptz::date). */
static DateADT
DayOf(MaillogIngest *in, TimestampTz when)
{
	if (!in->have_day || when < in->day_start || when >= in->day_end)
	{
		in->day = DatumGetDateADT(DirectFunctionCall1(timestamptz_date,
													  TimestampTzGetDatum(when)));
		in->day_start = DatumGetTimestampTz(DirectFunctionCall1(date_timestamptz,
																DateADTGetDatum(in->day)));
		in->day_end = DatumGetTimestampTz(DirectFunctionCall1(date_timestamptz,
															  DateADTGetDatum(in->day + 1)));
		in->have_day = true;
	}
	return in->day;
}

/*
 * The normalised recipient of a line, lower(btrim(orig_to, or to when
 * orig_to is absent or empty)), in in->scratch; NULL when there is none or
 * it is empty.  lower() is only called when it could change something.
 */
static const char *
NormAddress(MaillogIngest *in, const MaillogRecord *rec)
{
	const MaillogField *f = rec->orig_recipient.ptr != NULL && rec->orig_recipient.len > 0 ?
		&rec->orig_recipient : &rec->recipient;

	if (f->ptr == NULL ||
		!PwNormalizeEmailInto(&in->scratch, f->ptr, f->len, DEFAULT_COLLATION_OID))
		return NULL;
	return in->scratch.data;
}

/* The aggregate of an address, created if new. */
AddrAgg *
MaillogAddrFor(MaillogIngest *in, const char *addr)
{
	bool		found;
	StrEntry   *e = strtab_insert(in->addrs, addr, &found);

	if (!found)
	{
		AddrAgg    *a = palloc0(sizeof(AddrAgg));

		a->addr = pstrdup(addr);
		a->source = -1;
		a->last_category = -1;
		e->key = a->addr;
		e->agg = a;
		if (in->naddrs == in->maxaddrs)
		{
			in->maxaddrs *= 2;
			in->list = repalloc_huge(in->list, in->maxaddrs * sizeof(AddrAgg *));
		}
		in->list[in->naddrs++] = a;
	}
	return e->agg;
}

/* The category of a bounce or deferral (dsn and reason may be NULL). */
int
MaillogClassify(MaillogIngest *in, const char *dsn, const char *reason)
{
	return VerdictClassify(in->rules, dsn, dsn ? (int) strlen(dsn) : 0,
						   reason, reason ? (int) strlen(reason) : 0);
}

/* Counts a bounce or deferral of a day in its category. */
static void
CountCategory(DayCount *dc, EventKind kind, int category)
{
	CatCount   *cc;

	for (cc = dc->cats; cc != NULL && cc->category != category; cc = cc->next)
		;
	if (cc == NULL)
	{
		cc = palloc0(sizeof(CatCount));
		cc->category = category;
		cc->next = dc->cats;
		dc->cats = cc;
	}
	if (kind == KIND_BOUNCED)
		cc->bounced++;
	else
		cc->deferred++;
}

/* Adds a bounce of an address: a hard bounce only if the address's fault. */
static void
AddBounce(MaillogIngest *in, AddrAgg *a, DayCount *dc, TimestampTz when,
		  char *dsn, char *reason, int source, const VerdictCategory *cat,
		  int category)
{
	dc->bounced++;
	in->counts->bounced++;
	if (!cat->address_fault)
	{
		if (a->failed_count == 0 || when >= a->failed_at)
		{
			a->failed_at = when;
			a->failed_dsn = dsn;
			a->failed_reason = reason;
		}
		a->failed_count++;
		if (cat->block || cat->throttle)
		{
			a->blocked_count++;
			in->counts->blocked++;
		}
		if (cat->block)
			dc->blocked++;
		else if (cat->throttle)
			dc->throttled++;
		return;
	}
	if (a->bounce_count == 0 || when >= a->bounced_at)
	{
		a->bounced_at = when;
		a->bounce_dsn = dsn;
		a->bounce_reason = reason;
		a->bounce_category = category;
	}
	if (a->bounce_count == 0 || when < a->first_bounced_at)
	{
		a->first_bounced_at = when;
		a->first_dsn = dsn;
		a->first_reason = reason;
		a->first_source = source;
		a->first_category = category;
	}
	a->bounce_count++;
	dc->hard_bounced++;
	in->counts->hard_bounced++;
}

/*
 * Adds one sent, deferred or bounced line of an address; dsn and reason
 * (of a bounce) are kept as given.  category is that of a bounce or
 * deferral (-1 for a delivery).
 */
void
MaillogAddOutcome(MaillogIngest *in, AddrAgg *a, EventKind kind, TimestampTz when,
				  char *dsn, char *reason, int source, int category)
{
	DateADT		day = DayOf(in, when);
	DayCount   *dc;
	const VerdictCategory *cat = category >= 0 ? &in->rules->cats[category] : NULL;

	for (dc = a->days; dc != NULL && dc->day != day; dc = dc->next)
		;
	if (dc == NULL)
	{
		dc = palloc0(sizeof(DayCount));
		dc->day = day;
		dc->next = a->days;
		a->days = dc;
	}
	if (kind != KIND_SENT)
	{
		if (cat == NULL)
			elog(ERROR, "pw.ingest_maillog: a bounce or deferral without a category");
		CountCategory(dc, kind, category);
		if (a->last_category_at == 0 || a->last_category < 0 || when >= a->last_category_at)
		{
			a->last_category = category;
			a->last_category_at = when;
		}
	}
	switch (kind)
	{
		case KIND_SENT:
			if (a->sent_count == 0 || when < a->first_sent_at)
				a->first_sent_at = when;
			if (a->sent_count == 0 || when > a->last_sent_at)
				a->last_sent_at = when;
			a->sent_count++;
			dc->sent++;
			in->counts->sent++;
			break;
		case KIND_DEFERRED:
			if (a->deferred_count == 0 || when > a->last_deferred_at)
				a->last_deferred_at = when;
			a->deferred_count++;
			dc->deferred++;
			if (cat->block || cat->throttle)
				dc->throttled++;
			in->counts->deferred++;
			break;
		case KIND_BOUNCED:
			AddBounce(in, a, dc, when, dsn, reason, source, cat, category);
			break;
		default:
			elog(ERROR, "pw.ingest_maillog: unexpected outcome %d", (int) kind);
	}
	if (a->source < 0 || (source != a->source && SourceAfter(in, source, a->source)))
		a->source = source;
}

/* What a status means here. */
static EventKind
KindOf(const MaillogField *status)
{
	if (status->ptr == NULL)
		return KIND_OTHER;
	if (status->len == 4 && memcmp(status->ptr, "sent", 4) == 0)
		return KIND_SENT;
	if (status->len == 8 && memcmp(status->ptr, "deferred", 8) == 0)
		return KIND_DEFERRED;
	if (status->len == 7 && memcmp(status->ptr, "bounced", 7) == 0)
		return KIND_BOUNCED;
	if (status->len == 7 && memcmp(status->ptr, "expired", 7) == 0)
		return KIND_EXPIRED;
	return KIND_OTHER;
}

/* Keeps a recipient's deferral (the latest one) as possibly pending. */
static void
NoteDeferral(MaillogIngest *in, PairKey key, const MaillogRecord *rec,
			 TimestampTz when)
{
	bool		found;
	PairEntry  *e = pairtab_insert(in->pairs, key, &found);

	if (!found)
	{
		e->deferred = false;
		e->stored = false;
		e->done = false;
		e->expired = false;
	}
	else
		pfree((char *) key.qid);
	/* the latest deferral (the last line of the latest time) */
	if (!e->deferred || when >= e->deferred_at)
	{
		e->deferred = true;
		e->deferred_at = when;
		e->dsn = rec->dsn.ptr ? pnstrdup(rec->dsn.ptr, rec->dsn.len) : NULL;
		e->reason = rec->reason.ptr ? pnstrdup(rec->reason.ptr, rec->reason.len) : NULL;
		e->source = in->source;
	}
}

/* Keeps a recipient's delivery or bounce: it is no longer pending. */
static void
NoteDone(MaillogIngest *in, PairKey key, TimestampTz when)
{
	if (in->ndone == in->maxdone)
	{
		in->maxdone *= 2;
		in->done = repalloc_huge(in->done, in->maxdone * sizeof(DoneEvent));
	}
	in->done[in->ndone].key = key;
	in->done[in->ndone].hash = MaillogPairHash(key);
	in->done[in->ndone].at = when;
	in->ndone++;
}

/* Keeps a message's expiry (a qmgr line without a recipient). */
static void
NoteExpiry(MaillogIngest *in, const MaillogRecord *rec, TimestampTz when)
{
	in->counts->expired++;
	if (rec->queue_id.ptr == NULL)
		return;
	if (in->nexps == in->maxexps)
	{
		in->maxexps *= 2;
		in->exps = repalloc_huge(in->exps, in->maxexps * sizeof(ExpiryEvent));
	}
	in->exps[in->nexps].qid = pnstrdup(rec->queue_id.ptr, rec->queue_id.len);
	in->exps[in->nexps].at = when;
	in->exps[in->nexps].source = in->source;
	in->nexps++;
}

/*
 * Takes one event line of a log being ingested (a MaillogEventSink): counts
 * it into its address's aggregate and keeps what the pending deferrals
 * need.
 */
static void
IngestEvent(void *arg, const MaillogRecord *rec, TimestampTz when, int64 line_offset)
{
	MaillogIngest *in = (MaillogIngest *) arg;
	EventKind	kind = KindOf(&rec->status);
	MemoryContext old = MemoryContextSwitchTo(in->cxt);
	const char *addr;
	AddrAgg    *a;
	bool		expiry;

	if (++in->progress_events % MAILLOG_PROGRESS_EVERY == 0)
	{
		in->progress_offset = line_offset;
		MaillogProgress(in, MAILLOG_PHASE_READING);
	}

	addr = NormAddress(in, rec);
	if (addr != NULL && in->scratch.len > PW_EMAIL_MAX_LEN)
	{
		/* an address beyond RFC 5321's limits is a bad line: skipped, counted */
		in->counts->events--;
		in->counts->unparsed++;
		MemoryContextSwitchTo(old);
		return;
	}
	if (!in->have_events || when > in->max_logged_at)
		in->max_logged_at = when;
	in->have_events = true;
	/* an expiry with a recipient is that recipient's bounce */
	expiry = kind == KIND_EXPIRED;
	if (kind == KIND_EXPIRED && addr != NULL)
		kind = KIND_BOUNCED;
	if (kind == KIND_EXPIRED)
		NoteExpiry(in, rec, when);
	else if (kind != KIND_OTHER && addr != NULL)
	{
		char	   *dsn = NULL;
		char	   *reason = NULL;
		int			category = -1;

		a = MaillogAddrFor(in, addr);
		if (kind != KIND_SENT)
		{
			dsn = rec->dsn.ptr ? pnstrdup(rec->dsn.ptr, rec->dsn.len) : NULL;
			reason = rec->reason.ptr ? pnstrdup(rec->reason.ptr, rec->reason.len) : NULL;
			category = MaillogClassify(in, dsn, reason);
			/* an expiry of this recipient: judged by why it was deferred */
			if (expiry)
				category = VerdictExpiryCategory(in->rules, category);
		}
		if (kind == KIND_BOUNCED)
			MaillogAddOutcome(in, a, kind, when, dsn, reason, in->source, category);
		else
			MaillogAddOutcome(in, a, kind, when, NULL, NULL, in->source, category);
		if (rec->queue_id.ptr != NULL)
		{
			PairKey		key;

			key.qid = pnstrdup(rec->queue_id.ptr, rec->queue_id.len);
			key.addr = a->addr;
			if (kind == KIND_DEFERRED)
				NoteDeferral(in, key, rec, when);
			else
				NoteDone(in, key, when);
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * The one copy of a string (of len bytes) kept in in->strings: equal
 * operator names are then the same pointer.
 */
const char *
MaillogIntern(MaillogIngest *in, const char *str, size_t len)
{
	bool		found;
	StrEntry   *e;
	MemoryContext old = MemoryContextSwitchTo(in->cxt);

	resetStringInfo(&in->strbuf);
	appendBinaryStringInfo(&in->strbuf, str, (int) len);
	e = strtab_insert(in->strings, in->strbuf.data, &found);
	if (!found)
	{
		e->key = pstrdup(in->strbuf.data);
		e->agg = NULL;
	}
	MemoryContextSwitchTo(old);
	return e->key;
}

/* Logs (DEBUG1) how long the phase that just ended took. */
void
MaillogPhaseDone(MaillogIngest *in, const char *name)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, in->phase_start);
	ereport(DEBUG1,
			(errmsg_internal("ingest_maillog: %s in %.0f ms", name,
							 INSTR_TIME_GET_MILLISEC(now))));
	INSTR_TIME_SET_CURRENT(in->phase_start);
	/* a step of the apply phase done: pw.ingest_progress counts them */
	in->progress_steps++;
	MaillogProgress(in, MAILLOG_PHASE_APPLYING);
}

/* Reports the ingest's phase and counts in its progress slot. */
void
MaillogProgress(MaillogIngest *in, MaillogPhase phase)
{
	int64		c[MAILLOG_NCOUNTERS];

	c[MAILLOG_COUNTER_EVENTS] = in->progress_events;
	c[MAILLOG_COUNTER_ADDRESSES] = in->naddrs;
	c[MAILLOG_COUNTER_OFFSET] = in->progress_offset;
	c[MAILLOG_COUNTER_STEPS] = phase == MAILLOG_PHASE_APPLYING ? in->progress_steps : 0;
	PwProgressReport(phase, c, MAILLOG_NCOUNTERS);
}

/* Sets up an empty MaillogIngest in its own memory context. */
void
MaillogIngestInit(MaillogIngest *in, MaillogIngestCounts *counts)
{
	MemoryContext old;

	memset(in, 0, sizeof(*in));
	in->cxt = AllocSetContextCreate(CurrentMemoryContext, "pw.ingest_maillog",
									ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(in->cxt);
	in->counts = counts;
	in->rules = VerdictRules();
	INSTR_TIME_SET_CURRENT(in->phase_start);
	in->addrs = strtab_create(in->cxt, 1024, NULL);
	in->maxaddrs = 1024;
	in->list = palloc(in->maxaddrs * sizeof(AddrAgg *));
	initStringInfo(&in->scratch);
	in->strings = strtab_create(in->cxt, 256, NULL);
	initStringInfo(&in->strbuf);
	in->pairs = pairtab_create(in->cxt, 1024, NULL);
	in->maxdone = 1024;
	in->done = palloc(in->maxdone * sizeof(DoneEvent));
	in->maxexps = 64;
	in->exps = palloc(in->maxexps * sizeof(ExpiryEvent));
	MemoryContextSwitchTo(old);
}

/* Reads one segment of a log into the aggregates. */
void
MaillogReadSegment(MaillogIngest *in, const MaillogSegment *seg, MaillogIngestCounts *counts)
{
	MaillogReadStats st;
	MemoryContext old = MemoryContextSwitchTo(in->cxt);

	in->source = MaillogSourceIndex(in, seg->path);
	MemoryContextSwitchTo(old);
	PwProgressSetLabel(seg->path);
	in->progress_offset = seg->start;
	MaillogProgress(in, MAILLOG_PHASE_READING);
	MaillogReadEvents(seg->path, seg->start, IngestEvent, in, &st);
	if (st.dev != seg->dev || st.inode != seg->inode)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mail log \"%s\" was replaced while it was being ingested", seg->path),
				 errhint("Call pw.ingest_maillog() again.")));
	counts->files++;
	counts->lines += st.lines;
	counts->events += st.events;
	counts->unparsed += st.unparsed;
	counts->overlong += st.overlong;
	counts->end_offset = st.end_offset;
}

/* An address with its first bytes as a number, for sorting */
typedef struct SortAddr
{
	uint64		prefix;			/* the first 8 bytes, big-endian, zero-padded */
	AddrAgg    *agg;
} SortAddr;

/* Sort order of addresses: byte order (the index order of C.UTF-8). */
static inline int
SortAddrCmp(const SortAddr *x, const SortAddr *y)
{
	if (x->prefix != y->prefix)
		return x->prefix < y->prefix ? -1 : 1;
	return strcmp(x->agg->addr, y->agg->addr);
}

/* sort_addrs(): a sort of SortAddrs with the comparison inlined */
#define ST_SORT sort_addrs
#define ST_ELEMENT_TYPE SortAddr
#define ST_COMPARE(a, b) SortAddrCmp(a, b)
#define ST_SCOPE static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

/* The addresses sorted in byte order, into a new array. */
AddrAgg **
MaillogSortAddresses(MaillogIngest *in)
{
	SortAddr   *keys = palloc(in->naddrs * sizeof(SortAddr));
	AddrAgg   **sorted = palloc(in->naddrs * sizeof(AddrAgg *));

	for (int i = 0; i < in->naddrs; i++)
	{
		const unsigned char *p = (const unsigned char *) in->list[i]->addr;
		uint64		prefix = 0;
		int			k;

		for (k = 0; k < 8 && p[k] != '\0'; k++)
			prefix = (prefix << 8) | p[k];
		prefix <<= 8 * (8 - k);
		keys[i].prefix = prefix;
		keys[i].agg = in->list[i];
	}
	sort_addrs(keys, in->naddrs);
	for (int i = 0; i < in->naddrs; i++)
		sorted[i] = keys[i].agg;
	pfree(keys);
	return sorted;
}
