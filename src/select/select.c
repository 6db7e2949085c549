/*-------------------------------------------------------------------------
 *
 * select.c
 *	  Selection: whom a run of a send profile may mail.
 *
 *	  pw.select_sendable_carriers() walks the profile's unsent candidates in
 *	  ascending carrier id, in batches of an ordered, LIMITed query, and takes
 *	  a candidate while its bucket (operator label, or the untagged bucket)
 *	  still has allowance, stopping at the quota.  Buckets with no allowance
 *	  left (held out by the warmup, capped for the day, exhausted in this
 *	  run) are passed to the next batch so the scan no longer returns their
 *	  rows.  The reputation brake (pw.brake_status()) pauses an operator
 *	  (allowance 0) or slows it (caps times the profile's brake_slow_factor).
 *	  pw.selection_composition() is the dry run, one row per bucket.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "common/pw_common.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_select_sendable_carriers);
PG_FUNCTION_INFO_V1(pw_selection_composition);

/* Bucket name of untagged carriers */
#define SEL_NULL_BUCKET "__null__"

/* Rows fetched by the first batch at least, and by any batch at most */
#define SEL_MIN_BATCH 256
#define SEL_MAX_BATCH 65536

/* Suppression lists up to this size are checked in memory, larger in SQL */
#define SEL_SUPPRESSIONS_IN_MEMORY 5000

/* locktag_field4 of the claim lock: keeps it apart from SQL advisory locks */
#define SEL_CLAIM_LOCK_SPACE 0x7077

/* One bucket: an operator label, or the untagged carriers. */
typedef struct SelBucket
{
	char	   *label;			/* hash key; NULL for the untagged bucket */
	char	   *op_class;		/* class from pw.operators, NULL: default */
	bool		has_override;	/* an operator_ramp row applies */
	int32		override_cap;
	int64		sent_today;		/* already sent today (sent column) */
	bool		resolved;		/* allowance computed */
	int64		allowance;		/* what this run may take */
	int64		taken;			/* taken in this run */
	int64		available;		/* composition: unsent candidates */
	int64		seen;			/* rows of it the batch queries returned */
	char	   *brake;			/* reputation brake: "paused", "slowed", NULL */
	char	   *brake_reason;
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
	bool		hold;			/* big and consumer held out */
	int32		per_op_run_cap;
	int32		null_run_cap;
	int32		default_daily_cap;
	double		brake_slow_factor;
	bool		brake_enabled;
	int32		brake_window_days;
	int32		brake_min_sample;
	double		brake_bounce_floor; /* brake_bounce_rate - 0.0001 */
	double		brake_deferral_floor;	/* brake_deferral_rate - 0.0001 */
	char	   *pool_sql;		/* quoted literals: 'a', 'b' */
	int			nclasscaps;
	char	  **class_names;
	int32	   *class_caps;
	HTAB	   *buckets;		/* char * label -> SelBucket */
	HTAB	   *blocked;		/* char * domain -> itself */
	HTAB	   *suppressed;		/* char * email -> itself, if in memory */
	SelBucket	null_bucket;
	SelRow	   *rows;
	int64		nrows;			/* rows taken (dropped ones included) */
	int64		rows_alloc;
	int64		ntaken;			/* rows taken and not dropped */
} SelState;

/* Hash of a char * key: the string it points to. */
static uint32
SelStringPtrHash(const void *key, Size keysize)
{
	const char *s = *(char *const *) key;

	return hash_bytes((const unsigned char *) s, (int) strlen(s));
}

/* Compares two char * keys by the strings they point to. */
static int
SelStringPtrMatch(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(char *const *) key1, *(char *const *) key2);
}

/* Copies a char * key (the string itself is owned by the caller). */
static void *
SelStringPtrCopy(void *dest, const void *src, Size keysize)
{
	*(char **) dest = *(char *const *) src;
	return dest;
}

/* A hash table keyed by strings of any length, in the state's context. */
static HTAB *
SelCreateStringHash(SelState *st, const char *name, Size entrysize)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = entrysize;
	ctl.hash = SelStringPtrHash;
	ctl.match = SelStringPtrMatch;
	ctl.keycopy = SelStringPtrCopy;
	ctl.hcxt = st->cxt;
	return hash_create(name, 256, &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE |
					   HASH_KEYCOPY | HASH_CONTEXT);
}

/* The bucket of a label (NULL: untagged), created when missing. */
static SelBucket *
SelGetBucket(SelState *st, const char *label)
{
	SelBucket  *b;
	bool		found;

	if (label == NULL)
		return &st->null_bucket;
	b = hash_search(st->buckets, &label, HASH_FIND, NULL);
	if (b == NULL)
	{
		char	   *key = MemoryContextStrdup(st->cxt, label);

		b = hash_search(st->buckets, &key, HASH_ENTER, &found);
		memset(((char *) b) + sizeof(char *), 0, sizeof(SelBucket) - sizeof(char *));
	}
	return b;
}

/* Whether a class is held out entirely during the warmup. */
static bool
SelHeldClass(const char *op_class)
{
	return op_class != NULL &&
		(strcmp(op_class, "big") == 0 || strcmp(op_class, "consumer") == 0);
}

/* Whether the brake slows a bucket down. */
static bool
SelSlowed(const SelBucket *b)
{
	return b->brake != NULL && strcmp(b->brake, "slowed") == 0;
}

/* A cap times the slow factor when the brake slows the bucket down. */
static int64
SelBrakeCap(SelState *st, const SelBucket *b, int64 cap)
{
	if (!SelSlowed(b))
		return cap;
	return (int64) floor((double) cap * st->brake_slow_factor);
}

/*
 * Computes a bucket's allowance for this run once: the untagged bucket gets
 * null_run_cap; an operator min(per_op_run_cap, its daily cap on the warmup
 * day minus what was sent to it today), 0 while its class is held out.  The
 * daily cap follows pw.daily_cap(): an operator_ramp override, else the
 * class ramp, else default_daily_cap for the default class and 0 otherwise.
 * A bucket the brake pauses gets 0; one it slows has its daily and run caps
 * multiplied by brake_slow_factor (rounded down).
 */
static void
SelResolve(SelState *st, SelBucket *b)
{
	const char *cls;
	int64		cap = -1;

	if (b->resolved)
		return;
	b->resolved = true;
	if (b->brake != NULL && strcmp(b->brake, "paused") == 0)
	{
		b->allowance = 0;
		return;
	}
	if (b == &st->null_bucket)
	{
		b->allowance = SelBrakeCap(st, b, st->null_run_cap);
		return;
	}
	cls = b->op_class ? b->op_class : "default";
	if (st->hold && SelHeldClass(cls))
	{
		b->allowance = 0;
		return;
	}
	if (b->has_override)
		cap = b->override_cap;
	else
	{
		for (int i = 0; i < st->nclasscaps; i++)
			if (strcmp(st->class_names[i], cls) == 0)
				cap = st->class_caps[i];
		if (cap < 0)
			cap = strcmp(cls, "default") == 0 ? st->default_daily_cap : 0;
	}
	cap = SelBrakeCap(st, b, cap) - b->sent_today;
	b->allowance = Min(Max(cap, 0), SelBrakeCap(st, b, st->per_op_run_cap));
}

/* Runs a query through SPI, failing on anything but the expected result. */
static void
SelExec(SelState *st, const char *sql, int nargs, Oid *types, Datum *values,
		int expected)
{
	int			rc;

	if (nargs > 0)
		rc = SPI_execute_with_args(sql, nargs, types, values, NULL,
								   st->read_only, 0);
	else
		rc = SPI_execute(sql, st->read_only, 0);
	if (rc != expected)
		elog(ERROR, "pw selection: query failed (%s): %s",
			 SPI_result_code_string(rc), sql);
	/* SPI leaves its procedure context current: go back to ours */
	MemoryContextSwitchTo(st->cxt);
}

/* Reads column "col" of SPI result row "row" as an int64 (0 when NULL). */
static int64
SelGetInt64(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* Reads column "col" of SPI result row "row" as a string, or NULL. */
static char *
SelGetText(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/* Loads the profile, its pool of results and the carriers contract. */
static void
SelLoadProfile(SelState *st, const char *profile, bool day_given, int32 day)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;
	Datum		pool;
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int32		today_day;
	bool		skip_big_mx;
	int32		exclude_until_day;
	StringInfoData buf;

	values[0] = CStringGetTextDatum(profile);
	SelExec(st,
			"SELECT p.sent_column::text, p.purpose, p.skip_big_mx,"
			"       p.exclude_until_day, p.per_op_run_cap, p.null_run_cap,"
			"       p.default_daily_cap, (current_date - p.warmup_start) + 1,"
			"       pw.profile_pool(p.name), p.brake_slow_factor::float8,"
			"       p.brake_enabled, p.brake_window_days, p.brake_min_sample,"
			"       (p.brake_bounce_rate - 0.0001)::float8,"
			"       (p.brake_deferral_rate - 0.0001)::float8"
			"  FROM pw.profiles p WHERE p.name = $1",
			1, types, values, SPI_OK_SELECT);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("send profile \"%s\" does not exist", profile),
				 errhint("Profiles are the rows of pw.profiles.")));

	st->profile = pstrdup(profile);
	st->sent_col_raw = SelGetText(0, 1);
	st->purpose = SelGetText(0, 2);
	skip_big_mx = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 3, &isnull));
	exclude_until_day = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 4, &isnull));
	st->per_op_run_cap = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 5, &isnull));
	st->null_run_cap = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 6, &isnull));
	st->default_daily_cap = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 7, &isnull));
	today_day = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 8, &isnull));
	pool = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 9, &isnull);
	st->brake_slow_factor = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
														 SPI_tuptable->tupdesc, 10, &isnull));
	st->brake_enabled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 11, &isnull));
	st->brake_window_days = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 12, &isnull));
	st->brake_min_sample = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc, 13, &isnull));
	st->brake_bounce_floor = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 14, &isnull));
	st->brake_deferral_floor = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc, 15, &isnull));

	if (day_given)
	{
		if (day < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("warmup_day must be 1 or more, not %d", day),
					 errhint("Day 1 is the profile's warmup_start; pass NULL for today.")));
		st->day = day;
	}
	else
	{
		if (today_day < 1)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the warmup of send profile \"%s\" has not started", profile),
					 errdetail("Its warmup_start is %d day(s) in the future.", 1 - today_day),
					 errhint("Pass warmup_day explicitly or move pw.profiles.warmup_start.")));
		st->day = today_day;
	}
	st->hold = skip_big_mx && st->day <= exclude_until_day;

	arr = DatumGetArrayTypeP(pool);
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &nelems);
	if (nelems == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("send profile \"%s\" has no result it may select", profile),
				 errhint("Set pw.profiles.sendable_results to results that are not dead.")));
	initStringInfo(&buf);
	for (int i = 0; i < nelems; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "",
						 quote_literal_cstr(TextDatumGetCString(elems[i])));
	st->pool_sql = buf.data;

	PwCarriersLoad(&st->carriers);
	MemoryContextSwitchTo(st->cxt);
	st->sent_col = PwCarriersCheckColumn(&st->carriers, st->sent_col_raw,
										 "sent", TIMESTAMPTZOID);
}

/*
 * Loads the operators the reputation brake pauses or slows down now.  The
 * same judgement as pw.brake_status(), but only the braked operators come
 * back, and only operators that may be braked are aggregated: the rate of a
 * sum of days lies between the rates of its days, so an operator whose
 * (rounded) rate over the window is over a threshold has a day whose rate
 * is over the threshold minus 0.00005; days are prefiltered against the
 * threshold minus 0.0001 (in float8, far within that margin), the few
 * operators left are summed and judged exactly as pw.brake_status() does.
 */
static void
SelLoadBrake(SelState *st)
{
	Oid			types[5] = {TEXTOID, INT4OID, INT8OID, FLOAT8OID, FLOAT8OID};
	Datum		values[5];

	values[0] = CStringGetTextDatum(st->profile);
	values[1] = Int32GetDatum(st->brake_window_days);
	values[2] = Int64GetDatum((int64) st->brake_min_sample);
	values[3] = Float8GetDatum(st->brake_bounce_floor);
	values[4] = Float8GetDatum(st->brake_deferral_floor);

	SelExec(st,
			"SELECT o.operator,"
			"       CASE WHEN r.bounce_rate > p.brake_bounce_rate THEN 'paused' ELSE 'slowed' END,"
			"       CASE WHEN r.bounce_rate > p.brake_bounce_rate"
			"            THEN format('bounce rate %s > %s over %s outcomes in %s day(s)',"
			"                        r.bounce_rate, p.brake_bounce_rate, o.sample, p.brake_window_days)"
			"            ELSE format('deferral rate %s > %s over %s outcomes in %s day(s): allowance x %s',"
			"                        r.deferral_rate, p.brake_deferral_rate, o.sample,"
			"                        p.brake_window_days, p.brake_slow_factor) END"
			"  FROM (SELECT d.mx_provider AS operator, sum(d.sent)::bigint AS sent,"
			"               sum(d.deferred)::bigint AS deferred, sum(d.bounced)::bigint AS bounced,"
			"               (sum(d.sent) + sum(d.deferred) + sum(d.bounced))::bigint AS sample"
			"          FROM pw.maillog_daily d"
			"         WHERE d.day > current_date - $2 AND d.day <= current_date"
			"           AND d.profile IN ($1, '')"
			"           AND d.mx_provider <> '(not a carrier)'"
			"           AND d.mx_provider IN"
			"               (SELECT s.mx_provider FROM pw.maillog_daily s"
			"                 WHERE s.day > current_date - $2 AND s.day <= current_date"
			"                   AND s.profile IN ($1, '')"
			"                   AND (s.bounced::float8 > $4 * (s.sent + s.bounced)::float8"
			"                        OR s.deferred::float8 >"
			"                           $5 * (s.sent + s.deferred + s.bounced)::float8))"
			"         GROUP BY d.mx_provider"
			"        HAVING sum(d.sent) + sum(d.deferred) + sum(d.bounced) >= $3) o"
			" CROSS JOIN LATERAL"
			"       (SELECT round(o.bounced::numeric / nullif(o.sent + o.bounced, 0), 4) AS bounce_rate,"
			"               round(o.deferred::numeric / nullif(o.sent + o.deferred + o.bounced, 0), 4)"
			"               AS deferral_rate) r"
			"  JOIN pw.profiles p ON p.name = $1"
			" WHERE r.bounce_rate > p.brake_bounce_rate OR r.deferral_rate > p.brake_deferral_rate",
			5, types, values, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *label = SelGetText(i, 1);
		SelBucket  *b;

		CHECK_FOR_INTERRUPTS();
		b = SelGetBucket(st, strcmp(label, "(untagged)") == 0 ? NULL : label);
		b->brake = SelGetText(i, 2);
		b->brake_reason = SelGetText(i, 3);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Loads the caps of the warmup day (class ramp, operator overrides), the
 * operator classes and the blocked domains.
 */
static void
SelLoadCaps(SelState *st)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(st->profile);
	values[1] = Int32GetDatum(st->day);

	SelExec(st,
			"SELECT DISTINCT ON (r.op_class) r.op_class, r.daily_cap"
			"  FROM pw.warmup_ramp r"
			" WHERE r.profile = $1 AND r.from_day <= $2"
			" ORDER BY r.op_class, r.from_day DESC",
			2, types, values, SPI_OK_SELECT);
	st->nclasscaps = (int) SPI_processed;
	st->class_names = palloc0(sizeof(char *) * (st->nclasscaps + 1));
	st->class_caps = palloc0(sizeof(int32) * (st->nclasscaps + 1));
	for (int i = 0; i < st->nclasscaps; i++)
	{
		st->class_names[i] = SelGetText(i, 1);
		st->class_caps[i] = (int32) pg_strtoint32(SelGetText(i, 2));
	}
	SPI_freetuptable(SPI_tuptable);

	SelExec(st, "SELECT o.label, o.op_class FROM pw.operators o",
			0, NULL, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		SelBucket  *b = SelGetBucket(st, SelGetText(i, 1));

		b->op_class = SelGetText(i, 2);
	}
	SPI_freetuptable(SPI_tuptable);

	SelExec(st,
			"SELECT DISTINCT ON (r.operator) r.operator, r.daily_cap"
			"  FROM pw.operator_ramp r"
			" WHERE r.profile = $1 AND r.from_day <= $2"
			" ORDER BY r.operator, r.from_day DESC",
			2, types, values, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		SelBucket  *b = SelGetBucket(st, SelGetText(i, 1));

		b->has_override = true;
		b->override_cap = pg_strtoint32(SelGetText(i, 2));
	}
	SPI_freetuptable(SPI_tuptable);

	/* the reputation brake: '(untagged)' outcomes brake the untagged bucket */
	if (st->brake_enabled)
		SelLoadBrake(st);

	SelExec(st, "SELECT d.domain FROM pw.blocked_domains d",
			0, NULL, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *domain = SelGetText(i, 1);

		(void) hash_search(st->blocked, &domain, HASH_ENTER, NULL);
	}
	SPI_freetuptable(SPI_tuptable);

	/* a short suppression list is checked in memory, a long one in SQL */
	SelExec(st, "SELECT s.email FROM pw.suppressions s LIMIT "
			CppAsString2(SEL_SUPPRESSIONS_IN_MEMORY) " + 1",
			0, NULL, NULL, SPI_OK_SELECT);
	if (SPI_processed <= SEL_SUPPRESSIONS_IN_MEMORY)
	{
		st->suppressed = SelCreateStringHash(st, "pw suppressions", sizeof(char *));
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			char	   *email = SelGetText(i, 1);

			(void) hash_search(st->suppressed, &email, HASH_ENTER, NULL);
		}
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Claim calls of one sent column are serialised by a transaction-level lock
 * on (relation, sent column), so that concurrent claimers count each other's
 * claims against today's caps.  That needs a fresh snapshot per query:
 * READ COMMITTED only.
 */
static void
SelClaimLock(SelState *st)
{
	LOCKTAG		tag;
	AttrNumber	attnum;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("claiming carriers requires the READ COMMITTED isolation level"),
				 errhint("Claim in a READ COMMITTED transaction, or select with claim => false.")));
	attnum = get_attnum(st->carriers.relid, st->sent_col_raw);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, st->carriers.relid,
						 (uint32) attnum, SEL_CLAIM_LOCK_SPACE);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* Counts today's sends per operator (the sent column within current_date). */
static void
SelLoadSentToday(SelState *st)
{
	StringInfoData sql;
	char	   *type;

	/* bounds of the column's own type: no conversion per index entry */
	type = format_type_be(get_atttype(st->carriers.relid,
									  get_attnum(st->carriers.relid, st->sent_col_raw)));
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT c.%s::text, count(*) FROM %s c"
					 " WHERE c.%s >= current_date::%s AND c.%s < (current_date + 1)::%s"
					 "   AND c.%s IS NOT NULL"
					 " GROUP BY 1",
					 st->carriers.mx_col, st->carriers.relation,
					 st->sent_col, type, st->sent_col, type, st->carriers.mx_col);
	SelExec(st, sql.data, 0, NULL, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		SelBucket  *b = SelGetBucket(st, SelGetText(i, 1));

		b->sent_today = SelGetInt64(i, 2);
	}
	SPI_freetuptable(SPI_tuptable);
}

/* Whether an address's domain (as pw.email_domain() has it) is blocked. */
static bool
SelBlocked(SelState *st, const char *email)
{
	char	   *domain;
	bool		found = false;

	if (hash_get_num_entries(st->blocked) == 0)
		return false;
	domain = PwEmailDomain(email, strlen(email), DEFAULT_COLLATION_OID);
	if (domain != NULL)
	{
		(void) hash_search(st->blocked, &domain, HASH_FIND, &found);
		pfree(domain);
	}
	return found;
}

/* Whether an address (as pw.normalize_email() has it) is suppressed. */
static bool
SelSuppressed(SelState *st, const char *email)
{
	char	   *normal;
	bool		found = false;

	if (hash_get_num_entries(st->suppressed) == 0)
		return false;
	normal = PwNormalizeEmail(email, strlen(email), DEFAULT_COLLATION_OID);
	(void) hash_search(st->suppressed, &normal, HASH_FIND, &found);
	pfree(normal);
	return found;
}

/*
 * The WHERE clause of the candidates: unsent, a result of the pool (the
 * shape of the partial index of pw.selection_index_ddl()), an address, not
 * suppressed (unless "in_memory" and the list is checked in memory).
 */
static void
SelAppendCandidateWhere(SelState *st, StringInfo sql, bool in_memory)
{
	PwCarriers *c = &st->carriers;

	appendStringInfo(sql,
					 " WHERE c.%s IS NULL AND c.%s IN (%s) AND c.%s IS NOT NULL",
					 st->sent_col, c->result_col, st->pool_sql, c->email_col);
	if (!in_memory || st->suppressed == NULL)
		appendStringInfo(sql,
						 "   AND NOT EXISTS (SELECT 1 FROM pw.suppressions s"
						 "                    WHERE s.email = pw.normalize_email(c.%s))",
						 c->email_col);
}

/*
 * The batch query: candidates from id "from_id" on, in ascending id, at most
 * "limit", without the labels in "excluded" (a text[] parameter: the
 * planner folds it into a constant, so that the filter is a hash lookup) and without the untagged bucket unless "with_null".  The
 * pool stays literal so that the profile's partial index matches.
 */
static char *
SelBatchQuery(SelState *st, int64 from_id, int64 limit, const char *excluded,
			  bool with_null)
{
	PwCarriers *c = &st->carriers;
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT c.%s::int8, c.%s::text, c.%s::text FROM %s c",
					 c->id_col, c->email_col, c->mx_col, c->relation);
	SelAppendCandidateWhere(st, &sql, true);
	if (from_id > PG_INT64_MIN)
		appendStringInfo(&sql, " AND c.%s >= " INT64_FORMAT, c->id_col, from_id);
	appendStringInfo(&sql,
					 " AND (c.%s %s NULL %s c.%s <> ALL (%s))"
					 " ORDER BY c.%s LIMIT " INT64_FORMAT,
					 c->mx_col, with_null ? "IS" : "IS NOT",
					 with_null ? "OR" : "AND", c->mx_col, excluded,
					 c->id_col, limit);
	return sql.data;
}

/*
 * Runs the batch query of candidates from "from_id" on, leaving out every
 * exhausted bucket (a hashed "<> ALL" filter costs the same for thousands of
 * labels as for a few).
 *
 * The scan must stay in id order and stop early, so the planner must not
 * trade the ordered index scan for a sort of the pool when the left-out
 * buckets make it expect few rows: the query is planned with sorts disabled,
 * and with parallel workers and JIT off (the cost of a disabled sort would
 * trigger them), for this query only.
 */
static void
SelExecBatch(SelState *st, int64 from_id, int64 limit)
{
	HASH_SEQ_STATUS seq;
	SelBucket  *b;
	Datum	   *exhausted;
	int			nexhausted = 0;
	Oid			types[1] = {TEXTARRAYOID};
	Datum		values[1];
	char	   *sql;
	int			nestlevel;

	exhausted = palloc(sizeof(Datum) * (hash_get_num_entries(st->buckets) + 1));
	exhausted[nexhausted++] = CStringGetTextDatum("none");
	hash_seq_init(&seq, st->buckets);
	while ((b = hash_seq_search(&seq)) != NULL)
	{
		SelResolve(st, b);
		if (b->taken >= b->allowance)
			exhausted[nexhausted++] = CStringGetTextDatum(b->label);
	}
	values[0] = PointerGetDatum(construct_array(exhausted, nexhausted, TEXTOID,
												-1, false, TYPALIGN_INT));
	SelResolve(st, &st->null_bucket);
	sql = SelBatchQuery(st, from_id, limit, "$1",
						st->null_bucket.taken < st->null_bucket.allowance);

	nestlevel = NewGUCNestLevel();
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("max_parallel_workers_per_gather", "0", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	SelExec(st, sql, 1, types, values, SPI_OK_SELECT);
	AtEOXact_GUC(true, nestlevel);
	pfree(sql);
	for (int i = 0; i < nexhausted; i++)
		pfree(DatumGetPointer(exhausted[i]));
	pfree(exhausted);
}

/* Appends a taken row. */
static void
SelAddRow(SelState *st, int64 id, const char *email, SelBucket *b)
{
	if (st->nrows == st->rows_alloc)
	{
		st->rows_alloc = st->rows_alloc ? st->rows_alloc * 2 : 256;
		st->rows = st->rows ? repalloc_huge(st->rows, sizeof(SelRow) * st->rows_alloc)
			: palloc(sizeof(SelRow) * st->rows_alloc);
	}
	st->rows[st->nrows].id = id;
	st->rows[st->nrows].email = pstrdup(email);
	st->rows[st->nrows].bucket = b;
	st->rows[st->nrows].dropped = false;
	st->nrows++;
	st->ntaken++;
	b->taken++;
}

/*
 * Claim: locks rows[from..nrows) with FOR UPDATE SKIP LOCKED, re-checking
 * that they are still unsent; a row another session holds (or has sent
 * meanwhile) is dropped and gives its bucket's allowance back.
 */
static void
SelLockPending(SelState *st, int64 from)
{
	PwCarriers *c = &st->carriers;
	StringInfoData sql;
	Datum	   *ids;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];
	HTAB	   *locked;
	HASHCTL		ctl;
	int64		n = st->nrows - from;

	if (n <= 0)
		return;
	ids = palloc(sizeof(Datum) * n);
	for (int64 i = 0; i < n; i++)
		ids[i] = Int64GetDatum(st->rows[from + i].id);
	values[0] = PointerGetDatum(construct_array(ids, (int) n, INT8OID, 8,
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT c.%s::int8 FROM %s c"
					 " WHERE c.%s = ANY ($1) AND c.%s IS NULL AND c.%s IN (%s)"
					 "   FOR UPDATE OF c SKIP LOCKED",
					 c->id_col, c->relation, c->id_col, st->sent_col,
					 c->result_col, st->pool_sql);
	SelExec(st, sql.data, 1, types, values, SPI_OK_SELECT);
	if (SPI_processed == (uint64) n)
	{
		SPI_freetuptable(SPI_tuptable);
		return;
	}

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64);
	ctl.hcxt = CurrentMemoryContext;
	locked = hash_create("pw claimed ids", Max(n, 16), &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		int64		id = SelGetInt64(i, 1);

		(void) hash_search(locked, &id, HASH_ENTER, NULL);
	}
	SPI_freetuptable(SPI_tuptable);
	for (int64 i = from; i < st->nrows; i++)
	{
		SelRow	   *r = &st->rows[i];

		if (hash_search(locked, &r->id, HASH_FIND, NULL) == NULL)
		{
			r->dropped = true;
			r->bucket->taken--;
			st->ntaken--;
		}
	}
	hash_destroy(locked);
}

/*
 * The selection: streams the candidates in ascending id in batches and
 * takes each while its bucket has allowance, until the quota.  With claim,
 * taken rows are locked batch by batch and finally marked sent.
 */
static void
SelRun(SelState *st, int64 quota, bool claim)
{
	int64		from_id = PG_INT64_MIN;
	int64		limit = Min(Max(2 * quota, SEL_MIN_BATCH), SEL_MAX_BATCH);
	int64		pending_from = 0;
	MemoryContext rowcxt = AllocSetContextCreate(st->cxt, "pw selection row",
												 ALLOCSET_SMALL_SIZES);

	while (st->ntaken < quota)
	{
		SPITupleTable *tt;
		uint64		n;
		int64		last_id = PG_INT64_MAX;

		CHECK_FOR_INTERRUPTS();
		SelExecBatch(st, from_id, limit);
		tt = SPI_tuptable;
		n = SPI_processed;

		for (uint64 i = 0; i < n && st->ntaken < quota; i++)
		{
			bool		isnull;
			int64		id;
			Datum		d;
			char	   *email;
			char	   *label = NULL;
			SelBucket  *b;
			MemoryContext oldcxt;

			id = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
			last_id = id;
			MemoryContextReset(rowcxt);
			oldcxt = MemoryContextSwitchTo(rowcxt);
			d = SPI_getbinval(tt->vals[i], tt->tupdesc, 3, &isnull);
			if (!isnull)
				label = TextDatumGetCString(d);
			b = SelGetBucket(st, label);
			SelResolve(st, b);
			b->seen++;
			if (b->taken >= b->allowance)
			{
				MemoryContextSwitchTo(oldcxt);
				continue;
			}
			email = TextDatumGetCString(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull));
			MemoryContextSwitchTo(oldcxt);
			if (SelBlocked(st, email) ||
				(st->suppressed && SelSuppressed(st, email)))
				continue;
			SelAddRow(st, id, email, b);
			if (claim && st->ntaken == quota)
			{
				SelLockPending(st, pending_from);
				pending_from = st->nrows;
			}
		}
		if (claim)
		{
			SelLockPending(st, pending_from);
			pending_from = st->nrows;
		}
		SPI_freetuptable(tt);
		if (n < (uint64) limit || last_id == PG_INT64_MAX)
			break;				/* the pool is exhausted */
		from_id = last_id + 1;
		limit = Min(limit * 2, SEL_MAX_BATCH);
	}
	MemoryContextDelete(rowcxt);

	if (claim && st->ntaken > 0)
	{
		PwCarriers *c = &st->carriers;
		StringInfoData sql;
		Datum	   *ids = palloc(sizeof(Datum) * st->ntaken);
		int64		k = 0;
		Oid			types[1] = {INT8ARRAYOID};
		Datum		values[1];

		for (int64 i = 0; i < st->nrows; i++)
			if (!st->rows[i].dropped)
				ids[k++] = Int64GetDatum(st->rows[i].id);
		values[0] = PointerGetDatum(construct_array(ids, (int) k, INT8OID, 8,
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		initStringInfo(&sql);
		appendStringInfo(&sql, "UPDATE %s c SET %s = now() WHERE c.%s = ANY ($1)",
						 c->relation, st->sent_col, c->id_col);
		SelExec(st, sql.data, 1, types, values, SPI_OK_UPDATE);
	}
}

/* Creates the state and its context, and checks the common arguments. */
static SelState *
SelBegin(FunctionCallInfo fcinfo, bool claim)
{
	MemoryContext cxt;
	SelState   *st;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("quota must not be NULL")));
	if (PG_GETARG_INT32(0) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("quota must be 0 or more, not %d", PG_GETARG_INT32(0))));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("profile must not be NULL"),
				 errhint("Name a row of pw.profiles, e.g. 'default'.")));

	cxt = AllocSetContextCreate(CurrentMemoryContext, "pw selection",
								ALLOCSET_DEFAULT_SIZES);
	st = MemoryContextAllocZero(cxt, sizeof(SelState));
	st->cxt = cxt;
	st->read_only = !claim;
	st->buckets = SelCreateStringHash(st, "pw selection buckets", sizeof(SelBucket));
	st->blocked = SelCreateStringHash(st, "pw blocked domains", sizeof(char *));
	return st;
}

/*
 * Connects to SPI, fixes the search_path and loads profile, caps and today's
 * sends.  Returns the GUC nest level to restore before SPI_finish().
 */
static int
SelPrepare(SelState *st, FunctionCallInfo fcinfo, bool claim)
{
	char	   *profile = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int			nestlevel;

	SPI_connect();
	nestlevel = PwSafeSearchPath();
	/* first the extension: a DROP EXTENSION under way is waited for */
	(void) PwLockExtension(false);
	MemoryContextSwitchTo(st->cxt);
	SelLoadProfile(st, profile, !PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2));
	SelLoadCaps(st);
	if (claim)
		SelClaimLock(st);
	SelLoadSentToday(st);
	return nestlevel;
}

/*
 * pw.select_sendable_carriers(quota, profile, warmup_day, claim): whom this
 * run may mail, in ascending carrier id.
 */
Datum
pw_select_sendable_carriers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		claim;
	SelState   *st;
	int			nestlevel;

	if (PG_ARGISNULL(3))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("claim must not be NULL")));
	claim = PG_GETARG_BOOL(3);
	st = SelBegin(fcinfo, claim);
	InitMaterializedSRF(fcinfo, 0);

	nestlevel = SelPrepare(st, fcinfo, claim);
	if (PG_GETARG_INT32(0) > 0)
		SelRun(st, PG_GETARG_INT32(0), claim);
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();

	for (int64 i = 0; i < st->nrows; i++)
	{
		SelRow	   *r = &st->rows[i];
		Datum		values[4];
		bool		nulls[4] = {0};

		if (r->dropped)
			continue;
		values[0] = Int64GetDatum(r->id);
		values[1] = CStringGetTextDatum(r->email);
		if (r->bucket->label)
		{
			values[2] = CStringGetTextDatum(r->bucket->label);
			values[3] = values[2];
		}
		else
		{
			nulls[2] = true;
			values[3] = CStringGetTextDatum(SEL_NULL_BUCKET);
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	MemoryContextDelete(st->cxt);
	return (Datum) 0;
}

/* Orders composition rows by bucket name (the untagged bucket first). */
static int
SelBucketCmp(const void *a, const void *b)
{
	const SelBucket *ba = *(SelBucket *const *) a;
	const SelBucket *bb = *(SelBucket *const *) b;

	if (ba->label == NULL || bb->label == NULL)
		return (ba->label != NULL) - (bb->label != NULL);
	return strcmp(ba->label, bb->label);
}

/* Counts the unsent candidates of every bucket, held-out ones included. */
static void
SelLoadAvailable(SelState *st)
{
	PwCarriers *c = &st->carriers;
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT c.%s::text, count(*) FROM %s c",
					 c->mx_col, c->relation);
	SelAppendCandidateWhere(st, &sql, false);
	appendStringInfo(&sql,
					 "   AND c.%s IS DISTINCT FROM 'none'"
					 "   AND NOT EXISTS (SELECT 1 FROM pw.blocked_domains b"
					 "                    WHERE b.domain = pw.email_domain(c.%s))"
					 " GROUP BY 1",
					 c->mx_col, c->email_col);
	SelExec(st, sql.data, 0, NULL, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		SelBucket  *b = SelGetBucket(st, SelGetText(i, 1));

		b->available = SelGetInt64(i, 2);
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * pw.selection_composition(quota, profile, warmup_day): the dry run, one row
 * per bucket with candidates: class, candidates, allowance, selected, and
 * the brake on it with its reason.
 */
Datum
pw_selection_composition(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SelState   *st;
	SelBucket **list;
	int			nlist = 0;
	HASH_SEQ_STATUS seq;
	SelBucket  *b;
	int			nestlevel;

	st = SelBegin(fcinfo, false);
	InitMaterializedSRF(fcinfo, 0);

	nestlevel = SelPrepare(st, fcinfo, false);
	if (PG_GETARG_INT32(0) > 0)
		SelRun(st, PG_GETARG_INT32(0), false);
	SelLoadAvailable(st);
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();

	list = MemoryContextAlloc(st->cxt,
							  sizeof(SelBucket *) * (hash_get_num_entries(st->buckets) + 1));
	if (st->null_bucket.available > 0)
		list[nlist++] = &st->null_bucket;
	hash_seq_init(&seq, st->buckets);
	while ((b = hash_seq_search(&seq)) != NULL)
		if (b->available > 0)
			list[nlist++] = b;
	qsort(list, nlist, sizeof(SelBucket *), SelBucketCmp);

	for (int i = 0; i < nlist; i++)
	{
		Datum		values[7];
		bool		nulls[7] = {0};

		b = list[i];
		SelResolve(st, b);
		if (b->label)
		{
			values[0] = CStringGetTextDatum(b->label);
			values[1] = CStringGetTextDatum(b->op_class ? b->op_class : "default");
		}
		else
		{
			values[0] = CStringGetTextDatum(SEL_NULL_BUCKET);
			nulls[1] = true;
		}
		values[2] = Int64GetDatum(b->available);
		values[3] = Int64GetDatum(b->allowance);
		values[4] = Int64GetDatum(b->taken);
		if (b->brake)
		{
			values[5] = CStringGetTextDatum(b->brake);
			values[6] = CStringGetTextDatum(b->brake_reason);
		}
		else
			nulls[5] = nulls[6] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	MemoryContextDelete(st->cxt);
	return (Datum) 0;
}

/* Registers nothing: selection has no GUCs. */
void
SelectInit(void)
{
}
