/*-------------------------------------------------------------------------
 *
 * pending.c
 *	  pw.maillog_pending: recipients deferred are remembered per queue id
 *	  until sent or bounced; a message's expiry line bounces those still
 *	  pending; deferrals too old for an expiry line to come are forgotten.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "common/spi.h"
#include "ingest_int.h"

/* Result columns of the stored pending recipients */
#define STORED_QUEUE_ID 1
#define STORED_EMAIL 2

/* Result columns of the stored recipients bounced by an expiry */
#define EXPIRED_QUEUE_ID 1
#define EXPIRED_EMAIL 2
#define EXPIRED_LOGGED_AT 3
#define EXPIRED_DSN 4
#define EXPIRED_REASON 5
#define EXPIRED_SOURCE 6

/* A recipient bounced by its message's expiry */
typedef struct ExpiryBounce
{
	const char *qid;
	const char *addr;
	TimestampTz at;
	char	   *dsn;			/* of the deferral */
	char	   *reason;
	int			source;			/* of the expiry line */
} ExpiryBounce;

/* The expiry bounces found so far */
typedef struct ExpiryBounces
{
	ExpiryBounce *items;
	int64		n;
	int64		max;
} ExpiryBounces;

/* qsort order of ExpiryEvents: by queue id, then time. */
static int
ExpiryEventCmp(const void *a, const void *b)
{
	const ExpiryEvent *x = a;
	const ExpiryEvent *y = b;
	int			c = strcmp(x->qid, y->qid);

	if (c != 0)
		return c;
	return x->at < y->at ? -1 : x->at > y->at ? 1 : 0;
}

/* qsort order of ExpiryBounces: by queue id, address, then time. */
static int
ExpiryBounceCmp(const void *a, const void *b)
{
	const ExpiryBounce *x = a;
	const ExpiryBounce *y = b;
	int			c = strcmp(x->qid, y->qid);

	if (c != 0)
		return c;
	c = strcmp(x->addr, y->addr);
	if (c != 0)
		return c;
	return x->at < y->at ? -1 : x->at > y->at ? 1 : 0;
}

/*
 * The earliest expiry of these lines (in->exps, sorted) that bounces a
 * recipient of queue id qid deferred at deferred_at: at or after the
 * deferral, within MAILLOG_PENDING_WINDOW of it.  NULL if none.
 */
static ExpiryEvent *
ExpiryFor(MaillogIngest *in, const char *qid, TimestampTz deferred_at)
{
	int64		lo = 0,
				hi = in->nexps;

	/* the first expiry of the queue id */
	while (lo < hi)
	{
		int64		mid = lo + (hi - lo) / 2;

		if (strcmp(in->exps[mid].qid, qid) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < in->nexps && strcmp(in->exps[lo].qid, qid) == 0; lo++)
		if (deferred_at <= in->exps[lo].at && deferred_at > in->exps[lo].since)
			return &in->exps[lo];
	return NULL;
}

/* A new, empty slot at the end of the expiry bounces. */
static ExpiryBounce *
ExpiryBounceAppend(ExpiryBounces *bounces)
{
	if (bounces->n == bounces->max)
	{
		bounces->max = Max(64, bounces->max * 2);
		bounces->items = bounces->items == NULL ?
			palloc(bounces->max * sizeof(ExpiryBounce)) :
			repalloc_huge(bounces->items, bounces->max * sizeof(ExpiryBounce));
	}
	return &bounces->items[bounces->n++];
}

/*
 * Adds the recipients already in pw.maillog_pending to in->pairs (marked
 * stored); returns how many there are.
 */
static uint64
LoadStoredPending(MaillogIngest *in)
{
	uint64		nstored = PwSpiRun("SELECT queue_id, email FROM pw.maillog_pending",
								   SPI_OK_SELECT);

	for (uint64 i = 0; i < nstored; i++)
	{
		PairKey		key;
		bool		found;
		PairEntry  *e;

		key.qid = PwSpiGetTextNotNull(i, STORED_QUEUE_ID);
		key.addr = PwSpiGetTextNotNull(i, STORED_EMAIL);
		e = pairtab_insert(in->pairs, key, &found);
		if (!found)
		{
			e->deferred = false;
			e->done = false;
			e->expired = false;
		}
		e->stored = true;
	}
	SPI_freetuptable(SPI_tuptable);
	return nstored;
}

/* Marks the latest delivery or bounce of each recipient that may be pending. */
static void
MarkLatestDone(MaillogIngest *in)
{
	for (int64 i = 0; i < in->ndone; i++)
	{
		PairEntry  *e = pairtab_lookup_hash(in->pairs, in->done[i].key, in->done[i].hash);

		if (e != NULL && (!e->done || in->done[i].at > e->done_at))
		{
			e->done = true;
			e->done_at = in->done[i].at;
		}
	}
}

/*
 * Bounces the recipients deferred in these lines whose message expired in
 * these lines (marked expired, added to bounces); sorts in->exps.
 */
static void
BounceExpiredHere(MaillogIngest *in, ExpiryBounces *bounces)
{
	Interval   *window = DatumGetIntervalP(DirectFunctionCall3(interval_in,
															   CStringGetDatum(MAILLOG_PENDING_WINDOW),
															   ObjectIdGetDatum(InvalidOid),
															   Int32GetDatum(-1)));
	pairtab_iterator it;
	PairEntry  *e;

	for (int64 i = 0; i < in->nexps; i++)
		in->exps[i].since =
			DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
													TimestampTzGetDatum(in->exps[i].at),
													IntervalPGetDatum(window)));
	qsort(in->exps, in->nexps, sizeof(ExpiryEvent), ExpiryEventCmp);
	pairtab_start_iterate(in->pairs, &it);
	while ((e = pairtab_iterate(in->pairs, &it)) != NULL)
	{
		ExpiryEvent *x;
		ExpiryBounce *b;

		if (!e->deferred || e->stored || (e->done && e->done_at >= e->deferred_at))
			continue;
		x = ExpiryFor(in, e->key.qid, e->deferred_at);
		if (x == NULL)
			continue;
		e->expired = true;
		b = ExpiryBounceAppend(bounces);
		b->qid = e->key.qid;
		b->addr = e->key.addr;
		b->at = x->at;
		b->dsn = e->dsn;
		b->reason = e->reason;
		b->source = x->source;
	}
}

/* Stores the deferrals still open at the end of these lines. */
static void
StoreOpenDeferrals(MaillogIngest *in)
{
	PwColumn	c[6];
	PwColumn   *cols[6];
	Oid			types[6] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID};
	pairtab_iterator it;
	PairEntry  *e;

	for (int k = 0; k < 6; k++)
	{
		PwColumnInit(&c[k], types[k]);
		cols[k] = &c[k];
	}
	pairtab_start_iterate(in->pairs, &it);
	while ((e = pairtab_iterate(in->pairs, &it)) != NULL)
	{
		if (!e->deferred || e->expired || (e->done && e->done_at >= e->deferred_at))
			continue;
		PwColumnAddCString(&c[0], e->key.qid);
		PwColumnAddCString(&c[1], e->key.addr);
		PwColumnAdd(&c[2], TimestampTzGetDatum(e->deferred_at), false);
		PwColumnAddCString(&c[3], e->dsn);
		PwColumnAddCString(&c[4], e->reason);
		PwColumnAddCString(&c[5], in->sources[e->source]);
	}
	if (c[0].n > 0)
		PwSpiExecuteColumns("INSERT INTO pw.maillog_pending AS p (queue_id, email, deferred_at, dsn, reason, source)"
							" SELECT * FROM unnest($1, $2, $3, $4, $5, $6)"
							" ON CONFLICT (queue_id, email) DO UPDATE SET"
							"  deferred_at = EXCLUDED.deferred_at, dsn = EXCLUDED.dsn,"
							"  reason = EXCLUDED.reason, source = EXCLUDED.source"
							"  WHERE EXCLUDED.deferred_at >= p.deferred_at",
							cols, 6, SPI_OK_INSERT, 0);
}

/* Deletes the stored recipients sent or bounced since their deferral. */
static void
DeleteSettledPending(MaillogIngest *in)
{
	PwColumn	c[3];
	PwColumn   *cols[3] = {&c[0], &c[1], &c[2]};
	pairtab_iterator it;
	PairEntry  *e;

	PwColumnInit(&c[0], TEXTOID);
	PwColumnInit(&c[1], TEXTOID);
	PwColumnInit(&c[2], TIMESTAMPTZOID);
	pairtab_start_iterate(in->pairs, &it);
	while ((e = pairtab_iterate(in->pairs, &it)) != NULL)
	{
		if (!e->stored || !e->done)
			continue;
		PwColumnAddCString(&c[0], e->key.qid);
		PwColumnAddCString(&c[1], e->key.addr);
		PwColumnAdd(&c[2], TimestampTzGetDatum(e->done_at), false);
	}
	if (c[0].n > 0)
		PwSpiExecuteColumns("DELETE FROM pw.maillog_pending p"
							" USING unnest($1, $2, $3) AS b(queue_id, addr, logged_at)"
							" WHERE b.queue_id = p.queue_id AND b.addr = p.email"
							"   AND b.logged_at >= p.deferred_at",
							cols, 3, SPI_OK_DELETE, 0);
}

/*
 * A message expired: every stored recipient still pending bounces (deleted
 * from the table, added to bounces).
 */
static void
BounceStoredExpired(MaillogIngest *in, ExpiryBounces *bounces)
{
	PwColumn	c[3];
	PwColumn   *cols[3] = {&c[0], &c[1], &c[2]};
	uint64		n;

	PwColumnInit(&c[0], TEXTOID);
	PwColumnInit(&c[1], TIMESTAMPTZOID);
	PwColumnInit(&c[2], TEXTOID);
	for (int64 i = 0; i < in->nexps; i++)
	{
		PwColumnAddCString(&c[0], in->exps[i].qid);
		PwColumnAdd(&c[1], TimestampTzGetDatum(in->exps[i].at), false);
		PwColumnAddCString(&c[2], in->sources[in->exps[i].source]);
	}
	n = PwSpiExecuteColumns("WITH x AS (SELECT * FROM unnest($1, $2, $3) AS x(queue_id, logged_at, source)),"
							" gone AS (DELETE FROM pw.maillog_pending p USING x"
							"           WHERE p.queue_id = x.queue_id AND p.deferred_at <= x.logged_at"
							"             AND p.deferred_at > x.logged_at - interval '" MAILLOG_PENDING_WINDOW "'"
							"          RETURNING p.queue_id, p.email, p.dsn, p.reason, x.logged_at, x.source)"
							" SELECT DISTINCT ON (queue_id, email) queue_id, email, logged_at, dsn, reason, source"
							"   FROM gone ORDER BY queue_id, email, logged_at",
							cols, 3, SPI_OK_SELECT, 0);
	for (uint64 i = 0; i < n; i++)
	{
		ExpiryBounce *b = ExpiryBounceAppend(bounces);
		char	   *source = PwSpiGetText(i, EXPIRED_SOURCE);

		b->qid = PwSpiGetTextNotNull(i, EXPIRED_QUEUE_ID);
		b->addr = PwSpiGetTextNotNull(i, EXPIRED_EMAIL);
		b->at = PwSpiGetTimestampTz(i, EXPIRED_LOGGED_AT);
		b->dsn = PwSpiGetText(i, EXPIRED_DSN);
		b->reason = PwSpiGetText(i, EXPIRED_REASON);
		b->source = MaillogSourceIndex(in, source == NULL ? "" : source);
	}
	SPI_freetuptable(SPI_tuptable);
}

/* Adds the expiry bounces to the aggregates, in one order whichever way they were found. */
static void
AddExpiryBounces(MaillogIngest *in, ExpiryBounces *bounces)
{
	if (bounces->n > 0)
		qsort(bounces->items, bounces->n, sizeof(ExpiryBounce), ExpiryBounceCmp);
	for (int64 i = 0; i < bounces->n; i++)
	{
		ExpiryBounce *b = &bounces->items[i];
		char	   *reason = b->reason == NULL ? pstrdup(VERDICT_EXPIRY_REASON) :
			psprintf(VERDICT_EXPIRY_REASON VERDICT_EXPIRY_AFTER "%s", b->reason);

		/* judged by the recipient's last deferral */
		int			category = VerdictExpiryCategory(in->rules,
													 b->dsn == NULL && b->reason == NULL ? -1 :
													 MaillogClassify(in, b->dsn, b->reason));

		MaillogAddOutcome(in, MaillogAddrFor(in, b->addr), KIND_BOUNCED, b->at,
						  b->dsn == NULL ? NULL : pstrdup(b->dsn), reason, b->source,
						  category);
	}
}

/* Forgets the deferrals too old for any expiry line to come. */
static void
ForgetOldDeferrals(MaillogIngest *in)
{
	Oid			types[1] = {TIMESTAMPTZOID};
	Datum		values[1] = {TimestampTzGetDatum(in->max_logged_at)};

	PwSpiExecute("DELETE FROM pw.maillog_pending"
				 " WHERE deferred_at < $1 - interval '" MAILLOG_PENDING_WINDOW "'",
				 1, types, values, NULL, false, SPI_OK_DELETE);
}

/*
 * Maintains pw.maillog_pending: recipients deferred are remembered per
 * queue id until sent or bounced; a message's expiry bounces those still
 * pending (added to the aggregates); deferrals too old for an expiry line
 * to come are forgotten.
 *
 * What the lines settle among themselves stays out of the table: a
 * recipient deferred and then (at that time or later) sent or bounced in
 * these lines is not stored, nor one whose message expired in these lines;
 * only the recipients stored before are looked for with the deliveries,
 * bounces and expiries.  The outcome is that of storing every latest
 * deferral, then deleting each stored recipient sent or bounced at or after
 * its deferral, then bouncing and deleting the recipients of each expired
 * message deferred at most MAILLOG_PENDING_WINDOW before the expiry (the earliest
 * such expiry is the bounce's).
 */
void
MaillogApplyPending(MaillogIngest *in)
{
	ExpiryBounces bounces = {NULL, 0, 0};
	uint64		nstored = 0;
	MemoryContext old = MemoryContextSwitchTo(in->cxt);

	if (in->ndone > 0 || in->nexps > 0)
		nstored = LoadStoredPending(in);
	MarkLatestDone(in);
	if (in->nexps > 0)
		BounceExpiredHere(in, &bounces);
	StoreOpenDeferrals(in);
	DeleteSettledPending(in);
	if (in->nexps > 0 && nstored > 0)
		BounceStoredExpired(in, &bounces);
	AddExpiryBounces(in, &bounces);
	if (in->have_events)
		ForgetOldDeferrals(in);
	MemoryContextSwitchTo(old);
}
