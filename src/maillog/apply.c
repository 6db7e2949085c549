/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  The writeback of an ingest: one pw.deliveries row per address (updated,
 *	  or inserted when new: ingests are serialized on pw.deliveries), the
 *	  outcomes per day and operator (pw.maillog_daily), hard bounces written
 *	  back to the carriers and added to pw.suppressions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "common/spi.h"
#include "ingest_int.h"
#include "pw_deliverability.h"

/* Result column of the update of pw.deliveries: the rows updated */
#define DELIVERIES_UPDATED 1

/* The columns of pw_ingest_addresses, the addresses handed to the statements */
enum AddressColumn
{
	ADDR_ADDR,
	ADDR_FIRST_SENT_AT,
	ADDR_LAST_SENT_AT,
	ADDR_SENT_COUNT,
	ADDR_LAST_DEFERRED_AT,
	ADDR_DEFERRED_COUNT,
	ADDR_BOUNCED_AT,
	ADDR_BOUNCE_COUNT,
	ADDR_BOUNCE_DSN,
	ADDR_BOUNCE_REASON,
	ADDR_SOURCE,
	ADDR_IN_CARRIERS,
	ADDR_MX,
	ADDR_BOUNCE_CATEGORY,
	ADDR_FAILED_AT,
	ADDR_FAILED_COUNT,
	ADDR_BLOCKED_COUNT,
	ADDR_FAILED_DSN,
	ADDR_FAILED_REASON,
	ADDR_LAST_CATEGORY,
	ADDR_LAST_CATEGORY_AT,
	ADDR_NCOLUMNS
};

/* A day and an (interned) operator of pw.maillog_daily */
typedef struct DailyKey
{
	DateADT		day;
	const char *op;
} DailyKey;

/* Hash table entry: the outcomes of one (day, operator) */
typedef struct DailyEntry
{
	DailyKey	key;
	uint32		hash;
	char		status;
	int64		sent;
	int64		deferred;
	int64		bounced;
	int64		hard_bounced;
	int64		blocked;
	int64		throttled;
	int64	   *cats;			/* bounced, deferred of each category; NULL if none */
} DailyEntry;

#define SH_PREFIX dailytab
#define SH_ELEMENT_TYPE DailyEntry
#define SH_KEY_TYPE DailyKey
#define SH_KEY key
#define SH_HASH_KEY(tb, k) \
	hash_combine(murmurhash32((uint32) (k).day), \
				 hash_bytes((const unsigned char *) &(k).op, sizeof((k).op)))
#define SH_EQUAL(tb, a, b) ((a).day == (b).day && (a).op == (b).op)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a) ((a)->hash)
#define SH_SCOPE static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* The addresses that bounced (sorted, as they were) */
typedef struct BouncedList
{
	AddrAgg   **items;
	int			n;
} BouncedList;

/* qsort order of row versions: physical. */
static int
TidCmp(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) a, (ItemPointer) b);
}

/*
 * The profile pw.maillogs maps the log to ("given" as passed, or its
 * canonical path), '' if none, looked up once by pw.maillog_profile().  That
 * function is security definer (a role granted ingestion needs no privilege
 * on pw.maillogs) and revoked from PUBLIC: it is called through fmgr, which
 * checks no EXECUTE privilege, so only the ingest (whose caller may read the
 * log) reaches it.
 */
static char *
LookUpProfile(const char *given, const char *canon)
{
	Oid			fn = MaillogExtensionFunction("pw.maillog_profile(text, text)");
	Datum		d;

	d = OidFunctionCall2Coll(fn, DEFAULT_COLLATION_OID, CStringGetTextDatum(given),
							 CStringGetTextDatum(canon));
	return TextDatumGetCString(d);
}

/*
 * Fills rows with what the log said about each address, carrier or not (no
 * palloc per address: the text values are built in buffers), and collects
 * the addresses that bounced.
 */
static void
BatchAddresses(MaillogIngest *in, AddrAgg **sorted, MaillogIngestCounts *counts,
			   PwEphemeralRel *rows, BouncedList *bounced)
{
	static const char *const names[ADDR_NCOLUMNS] = {"addr", "first_sent_at",
		"last_sent_at", "sent_count", "last_deferred_at", "deferred_count", "bounced_at",
		"bounce_count", "bounce_dsn", "bounce_reason", "source", "in_carriers", "mx",
		"bounce_category", "failed_at", "failed_count", "blocked_count", "failed_dsn",
	"failed_reason", "last_category", "last_category_at"};
	static const Oid types[ADDR_NCOLUMNS] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
		INT8OID, TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID, INT8OID, TEXTOID, TEXTOID,
		TEXTOID, BOOLOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, INT8OID, INT8OID, TEXTOID,
	TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[ADDR_NCOLUMNS];
	bool		nulls[ADDR_NCOLUMNS];
	StringInfoData buf[6];		/* the text values of a row */
	Datum	   *cats = palloc(in->rules->ncats * sizeof(Datum));
	Datum	   *sources = palloc(in->nsources * sizeof(Datum));

	PwEphemeralRelInit(rows, "pw_ingest_addresses", ADDR_NCOLUMNS, names, types);
	for (int k = 0; k < 6; k++)
		initStringInfo(&buf[k]);
	for (int k = 0; k < in->rules->ncats; k++)
		cats[k] = PointerGetDatum(cstring_to_text(in->rules->cats[k].name));
	for (int k = 0; k < in->nsources; k++)
		sources[k] = PointerGetDatum(cstring_to_text(in->sources[k]));
	bounced->items = palloc(in->naddrs * sizeof(AddrAgg *));
	bounced->n = 0;
	for (int i = 0; i < in->naddrs; i++)
	{
		AddrAgg    *a = sorted[i];

		/* the aggregates lie in the order of the log: fetch ahead */
		if (i + 8 < in->naddrs)
			PwPrefetch(sorted[i + 8]);
		if (i + 4 < in->naddrs)
			PwPrefetch(sorted[i + 4]->addr);
		if (a->bounce_count > 0)
			bounced->items[bounced->n++] = a;

		memset(nulls, 0, sizeof(nulls));
		values[ADDR_ADDR] = PwTextDatumInBuffer(&buf[0], a->addr);
		values[ADDR_FIRST_SENT_AT] = TimestampTzGetDatum(a->first_sent_at);
		nulls[ADDR_FIRST_SENT_AT] = a->sent_count == 0;
		values[ADDR_LAST_SENT_AT] = TimestampTzGetDatum(a->last_sent_at);
		nulls[ADDR_LAST_SENT_AT] = a->sent_count == 0;
		values[ADDR_SENT_COUNT] = Int64GetDatum(a->sent_count);
		values[ADDR_LAST_DEFERRED_AT] = TimestampTzGetDatum(a->last_deferred_at);
		nulls[ADDR_LAST_DEFERRED_AT] = a->deferred_count == 0;
		values[ADDR_DEFERRED_COUNT] = Int64GetDatum(a->deferred_count);
		values[ADDR_BOUNCED_AT] = TimestampTzGetDatum(a->bounced_at);
		nulls[ADDR_BOUNCED_AT] = a->bounce_count == 0;
		values[ADDR_BOUNCE_COUNT] = Int64GetDatum(a->bounce_count);
		nulls[ADDR_BOUNCE_DSN] = a->bounce_dsn == NULL;
		values[ADDR_BOUNCE_DSN] = nulls[ADDR_BOUNCE_DSN] ? (Datum) 0 :
			PwTextDatumInBuffer(&buf[1], a->bounce_dsn);
		nulls[ADDR_BOUNCE_REASON] = a->bounce_reason == NULL;
		values[ADDR_BOUNCE_REASON] = nulls[ADDR_BOUNCE_REASON] ? (Datum) 0 :
			PwTextDatumInBuffer(&buf[2], a->bounce_reason);
		values[ADDR_SOURCE] = sources[a->source];
		values[ADDR_IN_CARRIERS] = BoolGetDatum(a->in_carriers);
		nulls[ADDR_MX] = a->mx == NULL;
		values[ADDR_MX] = nulls[ADDR_MX] ? (Datum) 0 : PwTextDatumInBuffer(&buf[3], a->mx);
		nulls[ADDR_BOUNCE_CATEGORY] = a->bounce_count == 0;
		values[ADDR_BOUNCE_CATEGORY] = a->bounce_count == 0 ? (Datum) 0 : cats[a->bounce_category];
		nulls[ADDR_FAILED_AT] = a->failed_count == 0;
		values[ADDR_FAILED_AT] = TimestampTzGetDatum(a->failed_at);
		values[ADDR_FAILED_COUNT] = Int64GetDatum(a->failed_count);
		values[ADDR_BLOCKED_COUNT] = Int64GetDatum(a->blocked_count);
		nulls[ADDR_FAILED_DSN] = a->failed_dsn == NULL;
		values[ADDR_FAILED_DSN] = nulls[ADDR_FAILED_DSN] ? (Datum) 0 :
			PwTextDatumInBuffer(&buf[4], a->failed_dsn);
		nulls[ADDR_FAILED_REASON] = a->failed_reason == NULL;
		values[ADDR_FAILED_REASON] = nulls[ADDR_FAILED_REASON] ? (Datum) 0 :
			PwTextDatumInBuffer(&buf[5], a->failed_reason);
		nulls[ADDR_LAST_CATEGORY] = a->last_category < 0;
		values[ADDR_LAST_CATEGORY] = a->last_category < 0 ? (Datum) 0 : cats[a->last_category];
		nulls[ADDR_LAST_CATEGORY_AT] = a->last_category < 0;
		values[ADDR_LAST_CATEGORY_AT] = TimestampTzGetDatum(a->last_category_at);
		PwEphemeralRelAdd(rows, values, nulls);
		if (!a->in_carriers)
			counts->unknown++;
	}
}

/* Whether a profile (by name, '' for none) is a verification profile. */
static bool
IsVerificationProfile(const char *profile)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(profile)};

	return PwSpiExecute("SELECT 1 FROM pw.profiles WHERE name = $1 AND purpose = 'verification'",
						1, types, values, NULL, true, SPI_OK_SELECT) > 0;
}

/*
 * One pw.deliveries row per address: updated, or inserted when new; for a
 * log of a verification profile, the sends counted in pw.verify_attempts.
 * Collects the addresses that bounced into *bounced.
 */
static void
ApplyDeliveries(MaillogIngest *in, AddrAgg **sorted, MaillogIngestCounts *counts,
				BouncedList *bounced, const char *profile)
{
	bool		verification = IsVerificationProfile(profile);
	PwEphemeralRel rows;
	int64		updated;

	BatchAddresses(in, sorted, counts, &rows, bounced);
	PwEphemeralRelRegister(&rows);
	MaillogPhaseDone(in, "deliveries batched");
	PwSpiRun("WITH u AS ("
			 "   UPDATE pw.deliveries d SET"
			 "     first_sent_at = least(d.first_sent_at, s.first_sent_at),"
			 "     last_sent_at = greatest(d.last_sent_at, s.last_sent_at),"
			 "     sent_count = d.sent_count + s.sent_count,"
			 "     last_deferred_at = greatest(d.last_deferred_at, s.last_deferred_at),"
			 "     deferred_count = d.deferred_count + s.deferred_count,"
			 "     bounce_dsn = CASE WHEN s.bounced_at IS NOT NULL AND"
			 "       (d.bounced_at IS NULL OR s.bounced_at >= d.bounced_at)"
			 "       THEN s.bounce_dsn ELSE d.bounce_dsn END,"
			 "     bounce_reason = CASE WHEN s.bounced_at IS NOT NULL AND"
			 "       (d.bounced_at IS NULL OR s.bounced_at >= d.bounced_at)"
			 "       THEN s.bounce_reason ELSE d.bounce_reason END,"
			 "     bounced_at = greatest(d.bounced_at, s.bounced_at),"
			 "     bounce_count = d.bounce_count + s.bounce_count,"
			 "     bounce_category = CASE WHEN s.bounced_at IS NOT NULL AND"
			 "       (d.bounced_at IS NULL OR s.bounced_at >= d.bounced_at)"
			 "       THEN s.bounce_category ELSE d.bounce_category END,"
			 "     failed_dsn = CASE WHEN s.failed_at IS NOT NULL AND"
			 "       (d.failed_at IS NULL OR s.failed_at >= d.failed_at)"
			 "       THEN s.failed_dsn ELSE d.failed_dsn END,"
			 "     failed_reason = CASE WHEN s.failed_at IS NOT NULL AND"
			 "       (d.failed_at IS NULL OR s.failed_at >= d.failed_at)"
			 "       THEN s.failed_reason ELSE d.failed_reason END,"
			 "     failed_at = greatest(d.failed_at, s.failed_at),"
			 "     failed_count = d.failed_count + s.failed_count,"
			 "     blocked_count = d.blocked_count + s.blocked_count,"
			 "     last_category = CASE WHEN s.last_category IS NOT NULL AND (d.last_category IS NULL"
			 "       OR s.last_category_at >= greatest(d.last_deferred_at, d.bounced_at, d.failed_at))"
			 "       THEN s.last_category ELSE d.last_category END,"
			 "     source = s.source, in_carriers = s.in_carriers, mx_provider = s.mx"
			 "    FROM pw_ingest_addresses s WHERE d.email = s.addr"
			 "   RETURNING 1)"
			 " SELECT count(*) FROM u",
			 SPI_OK_SELECT);

	/*
	 * The new addresses: none when every one was updated, all of them when
	 * none was (the lock keeps other ingests out).
	 */
	updated = PwSpiGetInt64(0, DELIVERIES_UPDATED);
	if (updated < rows.n)
		PwSpiRun(psprintf("INSERT INTO pw.deliveries (email, first_sent_at, last_sent_at, sent_count,"
						  "   last_deferred_at, deferred_count, bounced_at, bounce_count, bounce_dsn,"
						  "   bounce_reason, source, in_carriers, mx_provider, bounce_category, failed_at,"
						  "   failed_count, blocked_count, failed_dsn, failed_reason, last_category)"
						  " SELECT s.addr, s.first_sent_at, s.last_sent_at, s.sent_count, s.last_deferred_at,"
						  "   s.deferred_count, s.bounced_at, s.bounce_count, s.bounce_dsn, s.bounce_reason,"
						  "   s.source, s.in_carriers, s.mx, s.bounce_category, s.failed_at, s.failed_count,"
						  "   s.blocked_count, s.failed_dsn, s.failed_reason, s.last_category"
						  "   FROM pw_ingest_addresses s%s",
						  updated == 0 ? "" :
						  " WHERE NOT EXISTS (SELECT 1 FROM pw.deliveries d WHERE d.email = s.addr)"),
				 SPI_OK_INSERT);
	if (verification)
		PwSpiExecute("INSERT INTO pw.verify_attempts AS v (profile, email, attempts, last_outcome,"
					 "                                   last_category, last_outcome_at)"
					 " SELECT $1, s.addr, s.sent_count + s.bounce_count + s.failed_count,"
					 "        o.outcome, CASE WHEN o.outcome <> 'delivered' THEN s.last_category END, o.at"
					 "   FROM pw_ingest_addresses s,"
					 "        LATERAL (SELECT x.outcome, x.at"
					 "                   FROM (VALUES (1, 'delivered', s.last_sent_at),"
					 "                                (0, 'hard_bounced', s.bounced_at),"
					 "                                (2, 'failed', s.failed_at)) AS x(o, outcome, at)"
					 "                  WHERE x.at IS NOT NULL ORDER BY x.at DESC, x.o LIMIT 1) o"
					 "  WHERE s.sent_count + s.bounce_count + s.failed_count > 0"
					 " ON CONFLICT (profile, email) DO UPDATE SET"
					 "   attempts = v.attempts + EXCLUDED.attempts,"
					 "   last_outcome = CASE WHEN EXCLUDED.last_outcome_at >= v.last_outcome_at"
					 "     THEN EXCLUDED.last_outcome ELSE v.last_outcome END,"
					 "   last_category = CASE WHEN EXCLUDED.last_outcome_at >= v.last_outcome_at"
					 "     THEN EXCLUDED.last_category ELSE v.last_category END,"
					 "   last_outcome_at = greatest(v.last_outcome_at, EXCLUDED.last_outcome_at)",
					 1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(profile)}, NULL,
					 false, SPI_OK_INSERT);
	PwEphemeralRelDrop(&rows);
	MaillogPhaseDone(in, "deliveries");
}

/* Adds the day's outcomes of an address to its (day, operator) entry. */
static void
AddToDaily(DailyEntry *e, const DayCount *dc, int ncats)
{
	e->sent += dc->sent;
	e->deferred += dc->deferred;
	e->bounced += dc->bounced;
	e->hard_bounced += dc->hard_bounced;
	e->blocked += dc->blocked;
	e->throttled += dc->throttled;
	for (CatCount *cc = dc->cats; cc != NULL; cc = cc->next)
	{
		if (e->cats == NULL)
			e->cats = palloc0(2 * ncats * sizeof(int64));
		e->cats[2 * cc->category] += cc->bounced;
		e->cats[2 * cc->category + 1] += cc->deferred;
	}
}

/* Writes the outcomes per day, operator and category to pw.maillog_categories. */
static void
ApplyDailyCategories(MaillogIngest *in, dailytab_hash *daily, const char *profile)
{
	dailytab_iterator it;
	DailyEntry *e;
	PwColumn	c[5];
	PwColumn   *cols[5];
	Oid			types[5] = {DATEOID, TEXTOID, TEXTOID, INT8OID, INT8OID};

	for (int k = 0; k < 5; k++)
	{
		PwColumnInit(&c[k], types[k]);
		cols[k] = &c[k];
	}
	dailytab_start_iterate(daily, &it);
	while ((e = dailytab_iterate(daily, &it)) != NULL)
		for (int k = 0; e->cats != NULL && k < in->rules->ncats; k++)
		{
			if (e->cats[2 * k] == 0 && e->cats[2 * k + 1] == 0)
				continue;
			PwColumnAdd(&c[0], DateADTGetDatum(e->key.day), false);
			PwColumnAddCString(&c[1], e->key.op);
			PwColumnAddCString(&c[2], in->rules->cats[k].name);
			PwColumnAdd(&c[3], Int64GetDatum(e->cats[2 * k]), false);
			PwColumnAdd(&c[4], Int64GetDatum(e->cats[2 * k + 1]), false);
		}
	if (c[0].n == 0)
		return;
	PwSpiExecuteColumns(psprintf("INSERT INTO pw.maillog_categories AS m (day, mx_provider, profile, category, bounced, deferred)"
								 " SELECT day, op, %s, category, bounced, deferred"
								 "   FROM unnest($1, $2, $3, $4, $5) AS x(day, op, category, bounced, deferred)"
								 " ON CONFLICT (day, mx_provider, profile, category) DO UPDATE SET"
								 "   bounced = m.bounced + EXCLUDED.bounced, deferred = m.deferred + EXCLUDED.deferred",
								 quote_literal_cstr(profile)),
						cols, 5, SPI_OK_INSERT, 0);
}

/* Adds the outcomes per day and operator to pw.maillog_daily. */
static void
ApplyDaily(MaillogIngest *in, const char *profile)
{
	dailytab_hash *daily = dailytab_create(in->cxt, 256, NULL);
	const char *not_carrier = MaillogIntern(in, "(not a carrier)", strlen("(not a carrier)"));
	const char *untagged = MaillogIntern(in, "(untagged)", strlen("(untagged)"));
	dailytab_iterator it;
	DailyEntry *e;
	PwColumn	c[8];
	PwColumn   *cols[8];
	Oid			types[8] = {DATEOID, TEXTOID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID};

	for (int i = 0; i < in->naddrs; i++)
	{
		AddrAgg    *a = in->list[i];
		const char *op = !a->in_carriers ? not_carrier :
			a->mx != NULL ? a->mx : untagged;

		for (DayCount *dc = a->days; dc != NULL; dc = dc->next)
		{
			DailyKey	key = {dc->day, op};
			bool		found;

			e = dailytab_insert(daily, key, &found);
			if (!found)
			{
				e->sent = e->deferred = e->bounced = 0;
				e->hard_bounced = e->blocked = e->throttled = 0;
				e->cats = NULL;
			}
			AddToDaily(e, dc, in->rules->ncats);
		}
	}
	for (int k = 0; k < 8; k++)
	{
		PwColumnInit(&c[k], types[k]);
		cols[k] = &c[k];
	}
	dailytab_start_iterate(daily, &it);
	while ((e = dailytab_iterate(daily, &it)) != NULL)
	{
		PwColumnAdd(&c[0], DateADTGetDatum(e->key.day), false);
		PwColumnAddCString(&c[1], e->key.op);
		PwColumnAdd(&c[2], Int64GetDatum(e->sent), false);
		PwColumnAdd(&c[3], Int64GetDatum(e->deferred), false);
		PwColumnAdd(&c[4], Int64GetDatum(e->bounced), false);
		PwColumnAdd(&c[5], Int64GetDatum(e->hard_bounced), false);
		PwColumnAdd(&c[6], Int64GetDatum(e->blocked), false);
		PwColumnAdd(&c[7], Int64GetDatum(e->throttled), false);
	}
	PwSpiExecuteColumns(psprintf("INSERT INTO pw.maillog_daily AS m (day, mx_provider, profile, sent, deferred, bounced,"
								 "                                   hard_bounced, blocked, throttled)"
								 " SELECT day, op, %s, sent, deferred, bounced, hard_bounced, blocked, throttled"
								 "   FROM unnest($1, $2, $3, $4, $5, $6, $7, $8)"
								 "        AS x(day, op, sent, deferred, bounced, hard_bounced, blocked, throttled)"
								 " ON CONFLICT (day, mx_provider, profile) DO UPDATE SET"
								 "   sent = m.sent + EXCLUDED.sent, deferred = m.deferred + EXCLUDED.deferred,"
								 "   bounced = m.bounced + EXCLUDED.bounced,"
								 "   hard_bounced = m.hard_bounced + EXCLUDED.hard_bounced,"
								 "   blocked = m.blocked + EXCLUDED.blocked,"
								 "   throttled = m.throttled + EXCLUDED.throttled",
								 quote_literal_cstr(profile)),
						cols, 8, SPI_OK_INSERT, 0);
	ApplyDailyCategories(in, daily, profile);
	MaillogPhaseDone(in, "daily outcomes");
}

/*
 * The statement that marks hard_bounced the carriers chosen by "from_where"
 * (a FROM item and a condition on c), recording each one's prior result
 * and the bounce in pw.hard_bounces.  Its count is that of carriers marked.
 */
static char *
MarkStatement(PwCarriers *carriers, const char *from_where)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH prior AS (SELECT c.ctid AS row_tid, c.%2$s::text AS carrier_id,"
					 "                      lower(btrim(c.%3$s)) AS email, c.%4$s::text AS prior_result"
					 "                 FROM %1$s c, %5$s AND c.%4$s IS DISTINCT FROM 'hard_bounced'),"
					 " m AS (UPDATE %1$s c SET %4$s = 'hard_bounced' FROM prior p"
					 "        WHERE c.ctid = p.row_tid RETURNING p.carrier_id, p.email, p.prior_result)"
					 " INSERT INTO pw.hard_bounces AS h (carrier_id, email, prior_result, category, dsn,"
					 "                                   reason, bounced_at)"
					 " SELECT DISTINCT ON (m.carrier_id) m.carrier_id, m.email, m.prior_result,"
					 "        d.bounce_category, d.bounce_dsn, d.bounce_reason, d.bounced_at"
					 "   FROM m LEFT JOIN pw.deliveries d ON d.email = m.email"
					 " ON CONFLICT (carrier_id) DO UPDATE SET email = EXCLUDED.email,"
					 "   prior_result = EXCLUDED.prior_result, category = EXCLUDED.category,"
					 "   dsn = EXCLUDED.dsn, reason = EXCLUDED.reason, bounced_at = EXCLUDED.bounced_at,"
					 "   recorded_at = now(), released_at = NULL",
					 carriers->relation, carriers->id_col, carriers->email_col,
					 carriers->result_col, from_where);
	return sql.data;
}

/*
 * Marks hard_bounced the carriers found by the scan, by their row versions
 * (in physical order, no index probe).  Returns how many were marked.
 */
static uint64
MarkBouncedRowVersions(MaillogIngest *in, PwCarriers *carriers)
{
	PwColumn	tids;
	PwColumn   *cols[1] = {&tids};

	qsort(in->btids, in->nbtids, sizeof(ItemPointerData), TidCmp);
	PwColumnInit(&tids, TIDOID);
	for (int64 i = 0; i < in->nbtids; i++)
		PwColumnAdd(&tids, PointerGetDatum(&in->btids[i]), false);
	return PwSpiExecuteColumns(MarkStatement(carriers, "unnest($1) AS b(tid) WHERE c.ctid = b.tid"),
							   cols, 1, SPI_OK_INSERT, PW_PLAN_PROBE);
}

/*
 * Marks hard_bounced the carriers of the bounced addresses, by their
 * normalised email.  Returns how many were marked.
 */
static uint64
MarkBouncedAddresses(PwCarriers *carriers, const BouncedList *bounced, bool have_index)
{
	PwColumn	addrs;
	PwColumn   *cols[1] = {&addrs};

	PwColumnInit(&addrs, TEXTOID);
	for (int i = 0; i < bounced->n; i++)
		if (bounced->items[i]->to_bounce)
			PwColumnAddCString(&addrs, bounced->items[i]->addr);
	if (addrs.n == 0)
		return 0;
	return PwSpiExecuteColumns(MarkStatement(carriers,
											 psprintf("unnest($1) AS b(addr) WHERE lower(btrim(c.%s)) = b.addr",
													  carriers->email_col)),
							   cols, 1, SPI_OK_INSERT,
							   have_index ? PW_PLAN_PROBE : 0);
}

/*
 * Hard bounces: every carrier with the address, whatever its result.  After
 * a scan of the carriers, by the row versions it found; a carrier updated
 * since has a new row version, so if any was missed, by the addresses again.
 * First the carriers write lock, as late as possible: after pw.deliveries
 * (docs/internals.md, "Lock order").
 */
static void
WriteBackHardBounces(MaillogIngest *in, PwCarriers *carriers, MaillogIngestCounts *counts,
					 const BouncedList *bounced, bool scanned, bool have_index)
{
	bool		by_address = !scanned;

	PwLockCarriersWrites(carriers);

	if (scanned && in->nbtids > 0)
	{
		uint64		n = MarkBouncedRowVersions(in, carriers);

		counts->carriers_bounced = (int64) n;
		by_address = n < (uint64) in->nbtids;
	}
	if (by_address)
		counts->carriers_bounced += (int64)
			MarkBouncedAddresses(carriers, bounced, have_index);
	MaillogPhaseDone(in, "hard bounces written back");
}

/* Adds the bounced addresses to the suppression list (the first bounce's reason is kept). */
static void
SuppressHardBounces(MaillogIngest *in, MaillogIngestCounts *counts, const BouncedList *bounced)
{
	PwColumn	c[6];
	PwColumn   *cols[6];
	Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID};

	for (int k = 0; k < 6; k++)
	{
		PwColumnInit(&c[k], types[k]);
		cols[k] = &c[k];
	}
	for (int i = 0; i < bounced->n; i++)
	{
		AddrAgg    *a = bounced->items[i];

		PwColumnAddCString(&c[5], in->rules->cats[a->first_category].name);
		PwColumnAddCString(&c[0], a->addr);
		PwColumnAddCString(&c[1], a->first_dsn);
		PwColumnAddCString(&c[2], a->first_reason);
		PwColumnAddCString(&c[3], in->sources[a->first_source]);
		PwColumnAdd(&c[4], TimestampTzGetDatum(a->first_bounced_at), false);
	}
	if (c[0].n > 0)
		counts->suppressed = (int64)
			PwSpiExecuteColumns("INSERT INTO pw.suppressions (email, reason, source, created_at)"
								" SELECT addr, 'hard bounce ' || category || coalesce(' ' || dsn, '') || coalesce(': ' || reason, ''),"
								"        source, logged_at"
								"   FROM unnest($1, $2, $3, $4, $5, $6) AS b(addr, dsn, reason, source, logged_at, category)"
								"  WHERE addr LIKE '%_@_%'"
								"    AND NOT EXISTS (SELECT 1 FROM pw.suppressions s"
								"                     WHERE s.email = pw.normalize_email(b.addr))"
								" ON CONFLICT (email) DO NOTHING",
								cols, 6, SPI_OK_INSERT, 0);
	MaillogPhaseDone(in, "suppressions");
}

/*
 * Applies the aggregates: pending deferrals and expiries, which addresses
 * are carriers, one pw.deliveries row per address, the outcomes per day and
 * operator, hard bounces written back and suppressed.  The daily outcomes
 * are attributed to the profile pw.maillogs maps the log to ("given" as
 * passed, or its canonical path), '' if none.
 */
void
MaillogApply(MaillogIngest *in, PwCarriers *carriers, MaillogIngestCounts *counts,
			 const char *given, const char *canon)
{
	char	   *profile;
	AddrAgg   **sorted;
	BouncedList bounced;
	bool		scanned;
	bool		have_index;
	MemoryContext old;

	MaillogPhaseDone(in, "read");

	/* one ingest applies at a time: the deliveries and the pending deferrals */
	PwSpiRun("LOCK TABLE pw.deliveries IN SHARE ROW EXCLUSIVE MODE", SPI_OK_UTILITY);
	MaillogApplyPending(in);
	MaillogPhaseDone(in, "pending deferrals");
	profile = LookUpProfile(given, canon);
	if (in->naddrs == 0)
		return;

	old = MemoryContextSwitchTo(in->cxt);
	sorted = MaillogSortAddresses(in);
	MaillogPhaseDone(in, "addresses sorted");
	scanned = MaillogMatchCarriers(in, sorted, carriers, &have_index);
	ApplyDeliveries(in, sorted, counts, &bounced, profile);
	ApplyDaily(in, profile);
	WriteBackHardBounces(in, carriers, counts, &bounced, scanned, have_index);
	SuppressHardBounces(in, counts, &bounced);
	MemoryContextSwitchTo(old);
}
