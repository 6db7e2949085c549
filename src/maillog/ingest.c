/*-------------------------------------------------------------------------
 *
 * ingest.c
 *	  pw.ingest_maillog(): apply a Postfix log to the carriers exactly once
 *	  (deliveries recorded, hard bounces written back and suppressed), and
 *	  pw.confirm_deliveries(): deliveries that never bounced become
 *	  send_confirmed.
 *
 * The file position (device, inode, offset) lives in pw.maillog_files and
 * advances in the same transaction as the writeback, so an error or a crash
 * never skips or repeats a line.  The lines are aggregated in C while they
 * are read (one entry per address, with its outcomes per day), then applied
 * with set-based statements over arrays and ephemeral named relations, built
 * on the configured carriers contract (PwCarriersLoad).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/bufmgr.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/queryenvironment.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/varlena.h"

#include "maillog.h"
#include "common/pw_common.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_ingest_maillog);
PG_FUNCTION_INFO_V1(pw_confirm_deliveries);
PG_FUNCTION_INFO_V1(pw_create_writeback_index);

/* How long a deferred recipient waits for its queue id's expiry line */
#define PENDING_WINDOW "30 days"

/*
 * The carriers are scanned instead of probed once per address when the
 * addresses are more than 1/SCAN_RATIO of the carriers (a probe costs
 * about as much as scanning that many rows).
 */
#define SCAN_RATIO 16

/* Bytes before the stored offset kept to recognise the file (tail column) */
#define TAIL_BYTES 256

/* One stretch of a file to read. */
typedef struct Segment
{
	char	   *path;			/* canonical */
	int64		start;
	uint64		dev;
	uint64		inode;
} Segment;

/* Counts returned by pw.ingest_maillog() */
typedef struct IngestCounts
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
	int64		unknown;
	int64		suppressed;
	int64		end_offset;
} IngestCounts;

/* Runs a statement with optional parameters; returns SPI_processed. */
static uint64
Exec(const char *sql, int nargs, Oid *types, Datum *values, int expected)
{
	int			rc;

	if (nargs > 0)
		rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);
	else
		rc = SPI_execute(sql, false, 0);
	if (rc != expected)
		elog(ERROR, "pw.ingest_maillog: statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
	return SPI_processed;
}

/* The int8 in column 1 of the first result row (0 when NULL). */
static int64
FirstInt8(void)
{
	bool		isnull;
	Datum		d;

	if (SPI_processed < 1)
		return 0;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * The ingest reads the log as pw.read_maillog() does: refuse a role that may
 * not execute that function.
 */
static void
CheckReadPrivilege(void)
{
	Oid			fn;
	bool		isnull;

	Exec("SELECT pg_catalog.to_regprocedure('pw.read_maillog(text, bigint)')::oid",
		 0, NULL, NULL, SPI_OK_SELECT);
	fn = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										&isnull));
	if (isnull)
		elog(ERROR, "pw.ingest_maillog: function pw.read_maillog(text, bigint) is missing");
	if (pg_proc_aclcheck(fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_FUNCTION, "read_maillog");
}

/* Stats a canonical path; false when it does not exist. */
static bool
StatPath(const char *path, struct stat *sb)
{
	if (stat(path, sb) == 0)
		return true;
	if (errno == ENOENT)
		return false;
	ereport(ERROR,
			(errcode_for_file_access(),
			 errmsg("could not stat mail log \"%s\": %m", path)));
	return false;
}

/*
 * The (up to TAIL_BYTES) bytes of a file just before offset, or NULL when
 * offset is 0, the file is shorter, or it is no longer the file (dev, inode)
 * it was.
 */
static bytea *
ReadTail(const char *path, int64 offset, uint64 dev, uint64 inode)
{
	int			len = (int) Min(offset, (int64) TAIL_BYTES);
	bytea	   *tail;
	struct stat sb;
	ssize_t		n;
	int			fd;

	if (len <= 0)
		return NULL;
	fd = MaillogOpen(path, &sb);
	tail = palloc(VARHDRSZ + len);
	n = pread(fd, VARDATA(tail), len, (off_t) (offset - len));
	if (n < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read mail log \"%s\": %m", path)));
	CloseTransientFile(fd);
	if (n != len || (uint64) sb.st_dev != dev || (uint64) sb.st_ino != inode)
	{
		pfree(tail);
		return NULL;
	}
	SET_VARSIZE(tail, VARHDRSZ + len);
	return tail;
}

/*
 * Whether the bytes of a file before offset are still those stored (a file
 * reusing the inode, or the file truncated and written past the offset
 * again, differ).  True when nothing was stored.
 */
static bool
TailMatches(const char *path, int64 offset, uint64 dev, uint64 inode,
			const bytea *stored)
{
	bytea	   *now;
	bool		same;

	if (stored == NULL || offset == 0)
		return true;
	now = ReadTail(path, offset, dev, inode);
	same = now != NULL && VARSIZE_ANY_EXHDR(now) == VARSIZE_ANY_EXHDR(stored) &&
		memcmp(VARDATA_ANY(now), VARDATA_ANY(stored), VARSIZE_ANY_EXHDR(now)) == 0;
	if (now != NULL)
		pfree(now);
	return same;
}

/* What a delivery-status line means for the writeback. */
typedef enum EventKind
{
	KIND_OTHER,
	KIND_SENT,
	KIND_DEFERRED,
	KIND_BOUNCED,
	KIND_EXPIRED				/* a message expired (qmgr line, no recipient) */
} EventKind;

/* One day's outcomes of an address. */
typedef struct DayCount
{
	DateADT		day;
	int64		sent;
	int64		deferred;
	int64		bounced;
	struct DayCount *next;
} DayCount;

/* What the lines of one call said about one (normalised) address. */
typedef struct AddrAgg
{
	char	   *addr;
	TimestampTz first_sent_at;
	TimestampTz last_sent_at;
	TimestampTz last_deferred_at;
	TimestampTz bounced_at;		/* of the latest bounce */
	TimestampTz first_bounced_at;
	int64		sent_count;
	int64		deferred_count;
	int64		bounce_count;
	char	   *bounce_dsn;		/* of the latest bounce */
	char	   *bounce_reason;
	char	   *first_dsn;		/* of the first bounce: the suppression's */
	char	   *first_reason;
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
PairHash(PairKey key)
{
	return hash_combine(hash_bytes((const unsigned char *) key.qid, strlen(key.qid)),
						hash_bytes((const unsigned char *) key.addr, strlen(key.addr)));
}

#define SH_PREFIX pairtab
#define SH_ELEMENT_TYPE PairEntry
#define SH_KEY_TYPE PairKey
#define SH_KEY key
#define SH_HASH_KEY(tb, k) PairHash(k)
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
	uint32		hash;			/* PairHash(key), taken while the line is hot */
	TimestampTz at;
} DoneEvent;

/* A message expired (a qmgr line): the recipients it still had bounce */
typedef struct ExpiryEvent
{
	char	   *qid;
	TimestampTz at;
	TimestampTz since;			/* at - PENDING_WINDOW: older deferrals are forgotten */
	int			source;
} ExpiryEvent;

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

/* The values of one array parameter, collected row by row. */
typedef struct Column
{
	Oid			type;			/* of the elements */
	int			n;
	int			size;
	Datum	   *values;
	bool	   *nulls;
} Column;

/*
 * Rows handed to the statements of this call as an ephemeral named relation
 * (as a trigger's transition table is): no array to build and unnest.
 */
typedef struct Batch
{
	const char *name;
	TupleDesc	desc;
	Tuplestorestate *ts;
	int64		n;
} Batch;

/* Starts an empty batch of rows (in the current memory context). */
static void
BatchInit(Batch *b, const char *name, int ncols, const char *const *colnames,
		  const Oid *types)
{
	b->name = name;
	b->desc = CreateTemplateTupleDesc(ncols);
	for (int i = 0; i < ncols; i++)
		TupleDescInitEntry(b->desc, (AttrNumber) (i + 1), colnames[i], types[i], -1, 0);
	/* a batch operation: maintenance_work_mem before spilling to disk */
	b->ts = tuplestore_begin_heap(false, false, Max(work_mem, maintenance_work_mem));
	b->n = 0;
}

/*
 * A text datum of a string, built in buf (grown as needed): valid until buf
 * is used again.
 */
static Datum
TextIn(StringInfo buf, const char *s)
{
	int			len = (int) strlen(s);

	resetStringInfo(buf);
	enlargeStringInfo(buf, VARHDRSZ + len);
	SET_VARSIZE(buf->data, VARHDRSZ + len);
	memcpy(buf->data + VARHDRSZ, s, len);
	return PointerGetDatum(buf->data);
}

/* Appends a row to a batch (which copies the values). */
static void
BatchAdd(Batch *b, Datum *values, bool *nulls)
{
	tuplestore_putvalues(b->ts, b->desc, values, nulls);
	b->n++;
}

/* Makes a batch visible, by its name, to the statements run through SPI. */
static void
BatchRegister(Batch *b)
{
	EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));

	enr->md.name = pstrdup(b->name);
	enr->md.reliddesc = InvalidOid;
	enr->md.tupdesc = b->desc;
	enr->md.enrtype = ENR_NAMED_TUPLESTORE;
	enr->md.enrtuples = (double) b->n;
	enr->reldata = b->ts;
	if (SPI_register_relation(enr) != SPI_OK_REL_REGISTER)
		elog(ERROR, "pw.ingest_maillog: could not register \"%s\"", b->name);
}

/* Hides a batch from SPI again and frees its rows. */
static void
BatchDrop(Batch *b)
{
	if (SPI_unregister_relation(b->name) != SPI_OK_REL_UNREGISTER)
		elog(ERROR, "pw.ingest_maillog: could not unregister \"%s\"", b->name);
	tuplestore_end(b->ts);
}

/* What one call has read so far, in its own memory context. */
typedef struct Ingest
{
	MemoryContext cxt;
	IngestCounts *counts;
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
} Ingest;

/* Starts an empty column of element type "type". */
static void
ColumnInit(Column *col, Oid type)
{
	col->type = type;
	col->n = 0;
	col->size = 256;
	col->values = palloc(col->size * sizeof(Datum));
	col->nulls = palloc(col->size * sizeof(bool));
}

/* Appends a value (or a NULL) to a column. */
static void
ColumnAdd(Column *col, Datum value, bool isnull)
{
	if (col->n == col->size)
	{
		col->size *= 2;
		col->values = repalloc_huge(col->values, col->size * sizeof(Datum));
		col->nulls = repalloc_huge(col->nulls, col->size * sizeof(bool));
	}
	col->values[col->n] = value;
	col->nulls[col->n] = isnull;
	col->n++;
}

/* Appends a text value, NULL when s is. */
static void
ColumnAddText(Column *col, const char *s, size_t len)
{
	if (s == NULL)
		ColumnAdd(col, (Datum) 0, true);
	else
		ColumnAdd(col, PointerGetDatum(cstring_to_text_with_len(s, (int) len)), false);
}

/* Appends a NUL-terminated string, NULL when s is. */
static void
ColumnAddCString(Column *col, const char *s)
{
	ColumnAddText(col, s, s ? strlen(s) : 0);
}

/* The column as a one-dimensional array datum. */
static Datum
ColumnArray(Column *col)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1];
	int			lbs[1] = {1};

	get_typlenbyvalalign(col->type, &typlen, &typbyval, &typalign);
	dims[0] = col->n;
	return PointerGetDatum(construct_md_array(col->values, col->nulls, 1, dims, lbs,
											  col->type, typlen, typbyval, typalign));
}

/*
 * Runs a statement whose parameters $1.. are the given columns as arrays;
 * with probe, joins to the carriers probe them (the normalised-email index,
 * or row versions) instead of hashing or sorting them.
 * Returns SPI_processed.
 */
static uint64
ExecColumns(const char *sql, Column **cols, int ncols, int expected, bool probe)
{
	Oid		   *types = palloc(ncols * sizeof(Oid));
	Datum	   *values = palloc(ncols * sizeof(Datum));
	int			nestlevel = 0;
	int			rc;

	for (int i = 0; i < ncols; i++)
	{
		types[i] = get_array_type(cols[i]->type);
		values[i] = ColumnArray(cols[i]);
	}
	if (probe)
	{
		nestlevel = NewGUCNestLevel();
		(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
	rc = SPI_execute_with_args(sql, ncols, types, values, NULL, false, 0);
	if (rc != expected)
		elog(ERROR, "pw.ingest_maillog: statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
	if (probe)
		AtEOXact_GUC(true, nestlevel);
	for (int i = 0; i < ncols; i++)
		pfree(DatumGetPointer(values[i]));
	pfree(types);
	pfree(values);
	return SPI_processed;
}

/* The index of a source file in in->sources, added if new. */
static int
SourceIndex(Ingest *in, const char *path)
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
SourceAfter(Ingest *in, int i, int j)
{
	return varstr_cmp(in->sources[i], strlen(in->sources[i]),
					  in->sources[j], strlen(in->sources[j]),
					  DEFAULT_COLLATION_OID) > 0;
}

/* The date of a time in the session time zone (as timestamptz::date). */
static DateADT
DayOf(Ingest *in, TimestampTz when)
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
NormAddress(Ingest *in, const MaillogRecord *rec)
{
	const MaillogField *f = rec->orig_recipient.ptr != NULL && rec->orig_recipient.len > 0 ?
		&rec->orig_recipient : &rec->recipient;

	if (f->ptr == NULL ||
		!PwNormalizeEmailInto(&in->scratch, f->ptr, f->len, DEFAULT_COLLATION_OID))
		return NULL;
	return in->scratch.data;
}

/* The aggregate of an address, created if new. */
static AddrAgg *
AddrFor(Ingest *in, const char *addr)
{
	bool		found;
	StrEntry   *e = strtab_insert(in->addrs, addr, &found);

	if (!found)
	{
		AddrAgg    *a = palloc0(sizeof(AddrAgg));

		a->addr = pstrdup(addr);
		a->source = -1;
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

/*
 * Adds one sent, deferred or bounced line of an address; dsn and reason
 * (of a bounce) are kept as given.
 */
static void
AddOutcome(Ingest *in, AddrAgg *a, EventKind kind, TimestampTz when,
		   char *dsn, char *reason, int source)
{
	DateADT		day = DayOf(in, when);
	DayCount   *dc;

	for (dc = a->days; dc != NULL && dc->day != day; dc = dc->next)
		;
	if (dc == NULL)
	{
		dc = palloc0(sizeof(DayCount));
		dc->day = day;
		dc->next = a->days;
		a->days = dc;
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
			in->counts->deferred++;
			break;
		case KIND_BOUNCED:
			if (a->bounce_count == 0 || when >= a->bounced_at)
			{
				a->bounced_at = when;
				a->bounce_dsn = dsn;
				a->bounce_reason = reason;
			}
			if (a->bounce_count == 0 || when < a->first_bounced_at)
			{
				a->first_bounced_at = when;
				a->first_dsn = dsn;
				a->first_reason = reason;
				a->first_source = source;
			}
			a->bounce_count++;
			dc->bounced++;
			in->counts->bounced++;
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

/*
 * Takes one event line of a log being ingested (a MaillogEventSink): counts
 * it into its address's aggregate and keeps what the pending deferrals
 * need.
 */
static void
IngestEvent(void *arg, const MaillogRecord *rec, TimestampTz when, int64 line_offset)
{
	Ingest	   *in = (Ingest *) arg;
	EventKind	kind = KindOf(&rec->status);
	MemoryContext old = MemoryContextSwitchTo(in->cxt);
	const char *addr;
	AddrAgg    *a;

	if (!in->have_events || when > in->max_logged_at)
		in->max_logged_at = when;
	in->have_events = true;
	addr = NormAddress(in, rec);
	/* an expiry with a recipient is that recipient's bounce */
	if (kind == KIND_EXPIRED && addr != NULL)
		kind = KIND_BOUNCED;
	if (kind == KIND_EXPIRED)
	{
		in->counts->expired++;
		if (rec->queue_id.ptr != NULL)
		{
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
	}
	else if (kind != KIND_OTHER && addr != NULL)
	{
		a = AddrFor(in, addr);
		if (kind == KIND_BOUNCED)
			AddOutcome(in, a, kind, when,
					   rec->dsn.ptr ? pnstrdup(rec->dsn.ptr, rec->dsn.len) : NULL,
					   rec->reason.ptr ? pnstrdup(rec->reason.ptr, rec->reason.len) : NULL,
					   in->source);
		else
			AddOutcome(in, a, kind, when, NULL, NULL, in->source);
		if (rec->queue_id.ptr != NULL)
		{
			PairKey		key;

			key.qid = pnstrdup(rec->queue_id.ptr, rec->queue_id.len);
			key.addr = a->addr;
			if (kind == KIND_DEFERRED)
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
			else
			{
				if (in->ndone == in->maxdone)
				{
					in->maxdone *= 2;
					in->done = repalloc_huge(in->done, in->maxdone * sizeof(DoneEvent));
				}
				in->done[in->ndone].key = key;
				in->done[in->ndone].hash = PairHash(key);
				in->done[in->ndone].at = when;
				in->ndone++;
			}
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * The one copy of a string (of len bytes) kept in in->strings: equal
 * operator names are then the same pointer.
 */
static const char *
Intern(Ingest *in, const char *str, size_t len)
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
static void
Phase(Ingest *in, const char *name)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, in->phase_start);
	ereport(DEBUG1,
			(errmsg_internal("ingest_maillog: %s in %.0f ms", name,
							 INSTR_TIME_GET_MILLISEC(now))));
	INSTR_TIME_SET_CURRENT(in->phase_start);
}

/* Sets up an empty Ingest in its own memory context. */
static void
IngestInit(Ingest *in, IngestCounts *counts)
{
	MemoryContext old;

	memset(in, 0, sizeof(*in));
	in->cxt = AllocSetContextCreate(CurrentMemoryContext, "pw.ingest_maillog",
									ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(in->cxt);
	in->counts = counts;
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
static void
ReadSegment(Ingest *in, const Segment *seg, IngestCounts *counts)
{
	MaillogReadStats st;
	MemoryContext old = MemoryContextSwitchTo(in->cxt);

	in->source = SourceIndex(in, seg->path);
	MemoryContextSwitchTo(old);
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
 * deferral, within PENDING_WINDOW of it.  NULL if none.
 */
static ExpiryEvent *
ExpiryFor(Ingest *in, const char *qid, TimestampTz deferred_at)
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
 * message deferred at most PENDING_WINDOW before the expiry (the earliest
 * such expiry is the bounce's).
 */
static void
ApplyPending(Ingest *in)
{
	pairtab_iterator it;
	PairEntry  *e;
	uint64		nstored = 0;
	ExpiryBounce *bounces = NULL;
	int64		nbounces = 0;
	int64		maxbounces = 0;
	MemoryContext old = MemoryContextSwitchTo(in->cxt);

	/* the recipients already pending */
	if (in->ndone > 0 || in->nexps > 0)
	{
		MemoryContextSwitchTo(old);
		nstored = (uint64) Exec("SELECT queue_id, email FROM pw.maillog_pending", 0, NULL, NULL,
								SPI_OK_SELECT);
		MemoryContextSwitchTo(in->cxt);
		for (uint64 i = 0; i < nstored; i++)
		{
			PairKey		key;
			bool		found;

			key.qid = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			key.addr = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
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
	}

	/* the latest delivery or bounce of each recipient that may be pending */
	for (int64 i = 0; i < in->ndone; i++)
	{
		e = pairtab_lookup_hash(in->pairs, in->done[i].key, in->done[i].hash);
		if (e != NULL && (!e->done || in->done[i].at > e->done_at))
		{
			e->done = true;
			e->done_at = in->done[i].at;
		}
	}

	/* recipients deferred here whose message expired here: bounced */
	if (in->nexps > 0)
	{
		Interval   *window = DatumGetIntervalP(DirectFunctionCall3(interval_in,
																   CStringGetDatum(PENDING_WINDOW),
																   ObjectIdGetDatum(InvalidOid),
																   Int32GetDatum(-1)));

		for (int64 i = 0; i < in->nexps; i++)
			in->exps[i].since =
				DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
														TimestampTzGetDatum(in->exps[i].at),
														IntervalPGetDatum(window)));
		qsort(in->exps, in->nexps, sizeof(ExpiryEvent), ExpiryEventCmp);
		maxbounces = 64;
		bounces = palloc(maxbounces * sizeof(ExpiryBounce));
		pairtab_start_iterate(in->pairs, &it);
		while ((e = pairtab_iterate(in->pairs, &it)) != NULL)
		{
			ExpiryEvent *x;

			if (!e->deferred || e->stored || (e->done && e->done_at >= e->deferred_at))
				continue;
			x = ExpiryFor(in, e->key.qid, e->deferred_at);
			if (x == NULL)
				continue;
			e->expired = true;
			if (nbounces == maxbounces)
			{
				maxbounces *= 2;
				bounces = repalloc_huge(bounces, maxbounces * sizeof(ExpiryBounce));
			}
			bounces[nbounces].qid = e->key.qid;
			bounces[nbounces].addr = e->key.addr;
			bounces[nbounces].at = x->at;
			bounces[nbounces].dsn = e->dsn;
			bounces[nbounces].reason = e->reason;
			bounces[nbounces].source = x->source;
			nbounces++;
		}
	}

	/* deferrals still open at the end of these lines */
	{
		Column		c[6];
		Column	   *cols[6];
		Column	   *gone[3];
		Oid			types[6] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID};

		for (int k = 0; k < 6; k++)
		{
			ColumnInit(&c[k], types[k]);
			cols[k] = &c[k];
		}
		pairtab_start_iterate(in->pairs, &it);
		while ((e = pairtab_iterate(in->pairs, &it)) != NULL)
		{
			if (!e->deferred || e->expired || (e->done && e->done_at >= e->deferred_at))
				continue;
			ColumnAddCString(&c[0], e->key.qid);
			ColumnAddCString(&c[1], e->key.addr);
			ColumnAdd(&c[2], TimestampTzGetDatum(e->deferred_at), false);
			ColumnAddCString(&c[3], e->dsn);
			ColumnAddCString(&c[4], e->reason);
			ColumnAddCString(&c[5], in->sources[e->source]);
		}
		MemoryContextSwitchTo(old);
		if (c[0].n > 0)
			ExecColumns("INSERT INTO pw.maillog_pending AS p (queue_id, email, deferred_at, dsn, reason, source)"
						" SELECT * FROM unnest($1, $2, $3, $4, $5, $6)"
						" ON CONFLICT (queue_id, email) DO UPDATE SET"
						"  deferred_at = EXCLUDED.deferred_at, dsn = EXCLUDED.dsn,"
						"  reason = EXCLUDED.reason, source = EXCLUDED.source"
						"  WHERE EXCLUDED.deferred_at >= p.deferred_at",
						cols, 6, SPI_OK_INSERT, false);

		/* stored recipients sent or bounced since their deferral */
		MemoryContextSwitchTo(in->cxt);
		for (int k = 0; k < 3; k++)
		{
			c[k].n = 0;
			gone[k] = &c[k];
		}
		pairtab_start_iterate(in->pairs, &it);
		while ((e = pairtab_iterate(in->pairs, &it)) != NULL)
		{
			if (!e->stored || !e->done)
				continue;
			ColumnAddCString(&c[0], e->key.qid);
			ColumnAddCString(&c[1], e->key.addr);
			ColumnAdd(&c[2], TimestampTzGetDatum(e->done_at), false);
		}
		MemoryContextSwitchTo(old);
		if (c[0].n > 0)
			ExecColumns("DELETE FROM pw.maillog_pending p"
						" USING unnest($1, $2, $3) AS b(queue_id, addr, logged_at)"
						" WHERE b.queue_id = p.queue_id AND b.addr = p.email"
						"   AND b.logged_at >= p.deferred_at",
						gone, 3, SPI_OK_DELETE, false);
	}

	/* a message expired: every stored recipient still pending bounces */
	if (in->nexps > 0 && nstored > 0)
	{
		Column		c[3];
		Column	   *cols[3] = {&c[0], &c[1], &c[2]};
		uint64		n;

		MemoryContextSwitchTo(in->cxt);
		ColumnInit(&c[0], TEXTOID);
		ColumnInit(&c[1], TIMESTAMPTZOID);
		ColumnInit(&c[2], TEXTOID);
		for (int64 i = 0; i < in->nexps; i++)
		{
			ColumnAddCString(&c[0], in->exps[i].qid);
			ColumnAdd(&c[1], TimestampTzGetDatum(in->exps[i].at), false);
			ColumnAddCString(&c[2], in->sources[in->exps[i].source]);
		}
		MemoryContextSwitchTo(old);
		n = ExecColumns("WITH x AS (SELECT * FROM unnest($1, $2, $3) AS x(queue_id, logged_at, source)),"
						" gone AS (DELETE FROM pw.maillog_pending p USING x"
						"           WHERE p.queue_id = x.queue_id AND p.deferred_at <= x.logged_at"
						"             AND p.deferred_at > x.logged_at - interval '" PENDING_WINDOW "'"
						"          RETURNING p.queue_id, p.email, p.dsn, p.reason, x.logged_at, x.source)"
						" SELECT DISTINCT ON (queue_id, email) queue_id, email, logged_at, dsn, reason, source"
						"   FROM gone ORDER BY queue_id, email, logged_at",
						cols, 3, SPI_OK_SELECT, false);
		MemoryContextSwitchTo(in->cxt);
		for (uint64 i = 0; i < n; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			bool		isnull;
			Datum		d;
			ExpiryBounce *b;

			if (nbounces == maxbounces)
			{
				maxbounces = Max(64, maxbounces * 2);
				bounces = bounces == NULL ? palloc(maxbounces * sizeof(ExpiryBounce)) :
					repalloc_huge(bounces, maxbounces * sizeof(ExpiryBounce));
			}
			b = &bounces[nbounces++];
			b->qid = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
			b->addr = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
			b->at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));
			d = SPI_getbinval(tup, desc, 4, &isnull);
			b->dsn = isnull ? NULL : TextDatumGetCString(d);
			d = SPI_getbinval(tup, desc, 5, &isnull);
			b->reason = isnull ? NULL : TextDatumGetCString(d);
			d = SPI_getbinval(tup, desc, 6, &isnull);
			b->source = SourceIndex(in, isnull ? "" : TextDatumGetCString(d));
		}
		SPI_freetuptable(SPI_tuptable);
	}

	/* the expiry bounces, in one order whichever way they were found */
	if (nbounces > 0)
		qsort(bounces, nbounces, sizeof(ExpiryBounce), ExpiryBounceCmp);
	for (int64 i = 0; i < nbounces; i++)
	{
		ExpiryBounce *b = &bounces[i];
		char	   *reason = b->reason == NULL ? pstrdup("expired in queue") :
			psprintf("expired in queue after: %s", b->reason);

		AddOutcome(in, AddrFor(in, b->addr), KIND_BOUNCED, b->at,
				   b->dsn == NULL ? NULL : pstrdup(b->dsn), reason, b->source);
	}
	MemoryContextSwitchTo(old);

	/* forget deferrals too old for any expiry line to come */
	if (in->have_events)
	{
		Oid			types[1] = {TIMESTAMPTZOID};
		Datum		values[1] = {TimestampTzGetDatum(in->max_logged_at)};

		Exec("DELETE FROM pw.maillog_pending"
			 " WHERE deferred_at < $1 - interval '" PENDING_WINDOW "'",
			 1, types, values, SPI_OK_DELETE);
	}
}

/* qsort order of row versions: physical. */
static int
TidCmp(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) a, (ItemPointer) b);
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
static AddrAgg **
SortAddresses(Ingest *in)
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

/*
 * Whether the carriers have a valid index on lower(btrim(email)) to probe
 * (without one the planner is left to hash the carriers).
 */
static bool
HaveWritebackIndex(PwCarriers *carriers)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2];

	values[0] = ObjectIdGetDatum(carriers->relid);
	values[1] = CStringGetTextDatum(psprintf("lower(btrim(%s))", carriers->email_col));
	Exec("SELECT 1 FROM pg_catalog.pg_index i"
		 " WHERE i.indrelid = $1 AND i.indisvalid AND i.indnatts = 1 AND i.indpred IS NULL"
		 "   AND pg_catalog.pg_get_indexdef(i.indexrelid, 1, false) = $2",
		 2, types, values, SPI_OK_SELECT);
	return SPI_processed > 0;
}

/*
 * Finds the carriers of every address (sorted, so that the index is probed
 * in its order): whether there is one, the greatest mx, and whether one of
 * them is not hard_bounced yet.
 */
static void
MatchCarriers(Ingest *in, AddrAgg **sorted, PwCarriers *carriers, bool probe)
{
	Column		addrs;
	Column	   *cols[1] = {&addrs};
	StringInfoData sql;
	uint64		n;
	Oid			mxcoll;
	MemoryContext old = MemoryContextSwitchTo(in->cxt);

	ColumnInit(&addrs, TEXTOID);
	for (int i = 0; i < in->naddrs; i++)
		ColumnAddCString(&addrs, sorted[i]->addr);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT a.i, c.%s, c.%s IS DISTINCT FROM 'hard_bounced'"
					 "  FROM unnest($1) WITH ORDINALITY AS a(addr, i)"
					 "  JOIN %s c ON lower(btrim(c.%s)) = a.addr",
					 carriers->mx_col, carriers->result_col, carriers->relation,
					 carriers->email_col);
	MemoryContextSwitchTo(old);
	n = ExecColumns(sql.data, cols, 1, SPI_OK_SELECT, probe);
	mxcoll = TupleDescAttr(SPI_tuptable->tupdesc, 1)->attcollation;
	if (!OidIsValid(mxcoll))
		mxcoll = DEFAULT_COLLATION_OID;
	old = MemoryContextSwitchTo(in->cxt);
	for (uint64 r = 0; r < n; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		i = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		Datum		mx = SPI_getbinval(tup, desc, 2, &isnull);
		AddrAgg    *a;

		if (i < 1 || i > in->naddrs)
			elog(ERROR, "pw.ingest_maillog: address " INT64_FORMAT " out of range", i);
		a = sorted[i - 1];
		a->in_carriers = true;
		if (!isnull)
		{
			text	   *t = DatumGetTextPP(mx);

			/* max(mx) in the column's collation */
			if (a->mx == NULL ||
				varstr_cmp(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), a->mx, strlen(a->mx),
						   mxcoll) > 0)
				a->mx = Intern(in, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
		}
		if (DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull)))
			a->to_bounce = true;
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
}

/* A column of the carriers for ScanCarriers(): number and collation. */
typedef struct CarrierColumn
{
	AttrNumber	attnum;
	Oid			collation;
} CarrierColumn;

/*
 * Looks up a (quoted) carriers column; false when it is not plain text or
 * varchar with a deterministic collation, or not readable by the current
 * role without a table-wide privilege.
 */
static bool
ScanColumn(PwCarriers *carriers, const char *quoted, bool table_select,
		   CarrierColumn *col)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2];
	bool		isnull;
	Oid			type;

	values[0] = ObjectIdGetDatum(carriers->relid);
	values[1] = CStringGetTextDatum(quoted);
	Exec("SELECT a.attnum, a.attcollation, a.atttypid FROM pg_catalog.pg_attribute a"
		 " WHERE a.attrelid = $1 AND pg_catalog.quote_ident(a.attname) = $2"
		 "   AND a.attnum > 0 AND NOT a.attisdropped",
		 2, types, values, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;
	col->attnum = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	col->collation = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	type = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	if (type != TEXTOID && type != VARCHAROID)
		return false;
	if (!OidIsValid(col->collation) || !get_collation_isdeterministic(col->collation))
		return false;
	if (!table_select &&
		pg_attribute_aclcheck(carriers->relid, col->attnum, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		return false;
	return true;
}

/*
 * Finds the carriers of every address by one sequential scan of the
 * carriers table, hashing lower(btrim(email)) into the addresses (lower()
 * only called when it could change something): cheaper than one index probe
 * per address when the addresses are many.  Does what the join of
 * MatchCarriers() does; returns false, having done nothing, where it could
 * not (not a plain table, row-level security, columns of other types or
 * nondeterministic collations, privileges short of SELECT on the columns).
 */
static bool
ScanCarriers(Ingest *in, PwCarriers *carriers)
{
	CarrierColumn email,
				mx,
				result;
	bool		table_select;
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	StringInfoData key;
	uint64		n = 0;
	uint64		nbits;
	uint8	   *filter;
	MemoryContext old;

	if (get_rel_relkind(carriers->relid) != RELKIND_RELATION ||
		check_enable_rls(carriers->relid, InvalidOid, true) != RLS_NONE)
		return false;
	table_select = pg_class_aclcheck(carriers->relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK;
	if (!ScanColumn(carriers, carriers->email_col, table_select, &email) ||
		!ScanColumn(carriers, carriers->mx_col, table_select, &mx) ||
		!ScanColumn(carriers, carriers->result_col, table_select, &result))
		return false;

	old = MemoryContextSwitchTo(in->cxt);
	initStringInfo(&key);

	/*
	 * Most carriers are not in the log: a bitmap of two bits per address
	 * (at least 8 bits an address, small enough to stay in the CPU caches)
	 * answers most of them without touching the hash table.
	 */
	nbits = 1024;
	while (nbits < (uint64) in->naddrs * 8)
		nbits *= 2;
	filter = palloc0(nbits / 8);
	for (int i = 0; i < in->naddrs; i++)
	{
		uint32		h = hash_bytes((const unsigned char *) in->list[i]->addr,
								   strlen(in->list[i]->addr));
		uint64		b1 = h & (nbits - 1);
		uint64		b2 = murmurhash32(h) & (nbits - 1);

		filter[b1 / 8] |= 1 << (b1 % 8);
		filter[b2 / 8] |= 1 << (b2 % 8);
	}

	/* what a statement run through SPI now would see */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	snapshot = GetActiveSnapshot();
	rel = table_open(carriers->relid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;
		text	   *t;
		bool		nonempty;
		StrEntry   *e;
		uint32		h;
		uint64		b1,
					b2;

		if ((++n & 4095) == 0)
			CHECK_FOR_INTERRUPTS();
		d = slot_getattr(slot, email.attnum, &isnull);
		if (isnull)
			continue;
		t = (text *) PG_DETOAST_DATUM_PACKED(d);
		nonempty = PwNormalizeEmailInto(&key, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
										email.collation);
		if ((Pointer) t != DatumGetPointer(d))
			pfree(t);
		if (!nonempty)
			continue;
		h = hash_bytes((const unsigned char *) key.data, key.len);
		b1 = h & (nbits - 1);
		b2 = murmurhash32(h) & (nbits - 1);
		if ((filter[b1 / 8] & (1 << (b1 % 8))) == 0 ||
			(filter[b2 / 8] & (1 << (b2 % 8))) == 0)
			continue;
		e = strtab_lookup_hash(in->addrs, key.data, h);
		if (e == NULL)
			continue;

		/* a carrier of an address of the log */
		e->agg->in_carriers = true;
		d = slot_getattr(slot, mx.attnum, &isnull);
		if (!isnull)
		{
			text	   *m = DatumGetTextPP(d);

			/* max(mx) in the column's collation */
			if (e->agg->mx == NULL ||
				varstr_cmp(VARDATA_ANY(m), VARSIZE_ANY_EXHDR(m), e->agg->mx,
						   strlen(e->agg->mx), mx.collation) > 0)
				e->agg->mx = Intern(in, VARDATA_ANY(m), VARSIZE_ANY_EXHDR(m));
		}
		d = slot_getattr(slot, result.attnum, &isnull);
		if (!isnull)
		{
			text	   *r = DatumGetTextPP(d);

			if (VARSIZE_ANY_EXHDR(r) == strlen("hard_bounced") &&
				memcmp(VARDATA_ANY(r), "hard_bounced", strlen("hard_bounced")) == 0)
				continue;
		}
		e->agg->to_bounce = true;
		if (e->agg->bounce_count > 0)
		{
			if (in->nbtids == in->maxbtids)
			{
				in->maxbtids = Max(1024, in->maxbtids * 2);
				in->btids = in->btids == NULL ?
					palloc(in->maxbtids * sizeof(ItemPointerData)) :
					repalloc_huge(in->btids, in->maxbtids * sizeof(ItemPointerData));
			}
			in->btids[in->nbtids++] = slot->tts_tid;
		}
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	PopActiveSnapshot();
	pfree(key.data);
	pfree(filter);
	MemoryContextSwitchTo(old);
	return true;
}

/*
 * Applies the aggregates: pending deferrals and expiries, which addresses
 * are carriers, one pw.deliveries row per address (updated, or inserted
 * when new: ingests are serialized on pw.deliveries), the outcomes per day
 * and operator, hard bounces written back and suppressed.  The daily
 * outcomes are attributed to the profile pw.maillogs maps the log to
 * ("given" as passed, or its canonical path), '' if none.
 */
static void
ApplyIngest(Ingest *in, PwCarriers *carriers, IngestCounts *counts,
			const char *given, const char *canon)
{
	StringInfoData sql;
	char	   *profile;
	Oid			log_types[2] = {TEXTOID, TEXTOID};
	Datum		log_values[2];
	AddrAgg   **sorted;
	AddrAgg   **bounced_list;	/* the addresses that bounced, sorted */
	int			nbounced = 0;
	bool		scanned = false;
	bool		have_index;		/* the carriers have the writeback index */
	MemoryContext old;

	Phase(in, "read");

	/* one ingest applies at a time: the deliveries and the pending deferrals */
	Exec("LOCK TABLE pw.deliveries IN SHARE ROW EXCLUSIVE MODE", 0, NULL, NULL, SPI_OK_UTILITY);
	ApplyPending(in);
	Phase(in, "pending deferrals");

	/*
	 * The profile is looked up once: pw.maillog_profile() is security
	 * definer.
	 */
	log_values[0] = CStringGetTextDatum(given);
	log_values[1] = CStringGetTextDatum(canon);
	Exec("SELECT pw.maillog_profile($1, $2)", 2, log_types, log_values, SPI_OK_SELECT);
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		profile = isnull ? pstrdup("") : TextDatumGetCString(d);
	}
	if (in->naddrs == 0)
		return;

	old = MemoryContextSwitchTo(in->cxt);
	sorted = SortAddresses(in);
	MemoryContextSwitchTo(old);
	Phase(in, "addresses sorted");

	/*
	 * Which addresses are carriers: by probing the index once per address,
	 * or, for many addresses (or without the index), by one scan of the
	 * carriers.
	 */
	have_index = HaveWritebackIndex(carriers);
	{
		double		reltuples = 0;

		if (have_index)
		{
			Relation	rel = table_open(carriers->relid, AccessShareLock);

			reltuples = rel->rd_rel->reltuples;
			if (reltuples < 0)
				reltuples = (double) RelationGetNumberOfBlocks(rel) * 100;
			table_close(rel, NoLock);
		}
		if (!have_index || (double) in->naddrs * SCAN_RATIO > reltuples)
			scanned = ScanCarriers(in, carriers);
		if (!scanned)
			MatchCarriers(in, sorted, carriers, have_index);
		Phase(in, scanned ? "carriers matched by a scan" : "carriers matched by index probes");
	}

	/* what the log said about each address, carrier or not */
	old = MemoryContextSwitchTo(in->cxt);
	{
		const char *names[13] = {"addr", "first_sent_at", "last_sent_at", "sent_count",
			"last_deferred_at", "deferred_count", "bounced_at", "bounce_count", "bounce_dsn",
		"bounce_reason", "source", "in_carriers", "mx"};
		Oid			types[13] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID,
			TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID, INT8OID, TEXTOID, TEXTOID, TEXTOID,
		BOOLOID, TEXTOID};
		Batch		rows;
		Datum		values[13];
		bool		nulls[13];
		int64		updated;
		StringInfoData buf[4];	/* the text values of a row */
		Datum	   *sources = palloc(in->nsources * sizeof(Datum));

		BatchInit(&rows, "pw_ingest_addresses", 13, names, types);
		for (int k = 0; k < 4; k++)
			initStringInfo(&buf[k]);
		for (int k = 0; k < in->nsources; k++)
			sources[k] = PointerGetDatum(cstring_to_text(in->sources[k]));
		bounced_list = palloc(in->naddrs * sizeof(AddrAgg *));
		for (int i = 0; i < in->naddrs; i++)
		{
			AddrAgg    *a = sorted[i];

			/* the aggregates lie in the order of the log: fetch ahead */
			if (i + 8 < in->naddrs)
				PwPrefetch(sorted[i + 8]);
			if (i + 4 < in->naddrs)
				PwPrefetch(sorted[i + 4]->addr);
			if (a->bounce_count > 0)
				bounced_list[nbounced++] = a;

			memset(nulls, 0, sizeof(nulls));
			values[0] = TextIn(&buf[0], a->addr);
			values[1] = TimestampTzGetDatum(a->first_sent_at);
			nulls[1] = a->sent_count == 0;
			values[2] = TimestampTzGetDatum(a->last_sent_at);
			nulls[2] = a->sent_count == 0;
			values[3] = Int64GetDatum(a->sent_count);
			values[4] = TimestampTzGetDatum(a->last_deferred_at);
			nulls[4] = a->deferred_count == 0;
			values[5] = Int64GetDatum(a->deferred_count);
			values[6] = TimestampTzGetDatum(a->bounced_at);
			nulls[6] = a->bounce_count == 0;
			values[7] = Int64GetDatum(a->bounce_count);
			nulls[8] = a->bounce_dsn == NULL;
			values[8] = nulls[8] ? (Datum) 0 : TextIn(&buf[1], a->bounce_dsn);
			nulls[9] = a->bounce_reason == NULL;
			values[9] = nulls[9] ? (Datum) 0 : TextIn(&buf[2], a->bounce_reason);
			values[10] = sources[a->source];
			values[11] = BoolGetDatum(a->in_carriers);
			nulls[12] = a->mx == NULL;
			values[12] = nulls[12] ? (Datum) 0 : TextIn(&buf[3], a->mx);
			BatchAdd(&rows, values, nulls);
			if (!a->in_carriers)
				counts->unknown++;
		}
		MemoryContextSwitchTo(old);
		BatchRegister(&rows);
		Phase(in, "deliveries batched");
		Exec("WITH u AS ("
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
			 "     source = s.source, in_carriers = s.in_carriers, mx_provider = s.mx"
			 "    FROM pw_ingest_addresses s WHERE d.email = s.addr"
			 "   RETURNING 1)"
			 " SELECT count(*) FROM u",
			 0, NULL, NULL, SPI_OK_SELECT);

		/*
		 * The new addresses: none when every one was updated, all of them
		 * when none was (the lock keeps other ingests out).
		 */
		updated = FirstInt8();
		if (updated < rows.n)
			Exec(psprintf("INSERT INTO pw.deliveries (email, first_sent_at, last_sent_at, sent_count,"
						  "   last_deferred_at, deferred_count, bounced_at, bounce_count, bounce_dsn,"
						  "   bounce_reason, source, in_carriers, mx_provider)"
						  " SELECT s.addr, s.first_sent_at, s.last_sent_at, s.sent_count, s.last_deferred_at,"
						  "   s.deferred_count, s.bounced_at, s.bounce_count, s.bounce_dsn, s.bounce_reason,"
						  "   s.source, s.in_carriers, s.mx"
						  "   FROM pw_ingest_addresses s%s",
						  updated == 0 ? "" :
						  " WHERE NOT EXISTS (SELECT 1 FROM pw.deliveries d WHERE d.email = s.addr)"),
				 0, NULL, NULL, SPI_OK_INSERT);
		BatchDrop(&rows);
	}

	Phase(in, "deliveries");

	/* the outcomes per day and operator */
	old = MemoryContextSwitchTo(in->cxt);
	{
		dailytab_hash *daily = dailytab_create(in->cxt, 256, NULL);
		const char *not_carrier = Intern(in, "(not a carrier)", strlen("(not a carrier)"));
		const char *untagged = Intern(in, "(untagged)", strlen("(untagged)"));
		dailytab_iterator it;
		DailyEntry *e;
		Column		c[5];
		Column	   *cols[5];
		Oid			types[5] = {DATEOID, TEXTOID, INT8OID, INT8OID, INT8OID};
		char	   *sqltext;

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
					e->sent = e->deferred = e->bounced = 0;
				e->sent += dc->sent;
				e->deferred += dc->deferred;
				e->bounced += dc->bounced;
			}
		}
		for (int k = 0; k < 5; k++)
		{
			ColumnInit(&c[k], types[k]);
			cols[k] = &c[k];
		}
		dailytab_start_iterate(daily, &it);
		while ((e = dailytab_iterate(daily, &it)) != NULL)
		{
			ColumnAdd(&c[0], DateADTGetDatum(e->key.day), false);
			ColumnAddCString(&c[1], e->key.op);
			ColumnAdd(&c[2], Int64GetDatum(e->sent), false);
			ColumnAdd(&c[3], Int64GetDatum(e->deferred), false);
			ColumnAdd(&c[4], Int64GetDatum(e->bounced), false);
		}
		MemoryContextSwitchTo(old);
		sqltext = psprintf("INSERT INTO pw.maillog_daily AS m (day, mx_provider, profile, sent, deferred, bounced)"
						   " SELECT day, op, %s, sent, deferred, bounced"
						   "   FROM unnest($1, $2, $3, $4, $5) AS x(day, op, sent, deferred, bounced)"
						   " ON CONFLICT (day, mx_provider, profile) DO UPDATE SET"
						   "   sent = m.sent + EXCLUDED.sent, deferred = m.deferred + EXCLUDED.deferred,"
						   "   bounced = m.bounced + EXCLUDED.bounced",
						   quote_literal_cstr(profile));
		ExecColumns(sqltext, cols, 5, SPI_OK_INSERT, false);
	}

	Phase(in, "daily outcomes");

	/*
	 * The carriers write lock before the first carrier row, as late as
	 * possible: after pw.deliveries (docs/internals.md, "Lock order").
	 *
	 * Hard bounces: every carrier with the address, whatever its result.
	 * After a scan of the carriers, by the row versions it found (in
	 * physical order, no index probe); a carrier updated since has a new row
	 * version, so if any was missed, by the addresses again.
	 */
	PwLockCarriersWrites(carriers);
	old = MemoryContextSwitchTo(in->cxt);
	{
		Column		bounced;
		Column	   *cols[1] = {&bounced};
		bool		by_address = !scanned;

		if (scanned && in->nbtids > 0)
		{
			Column		tids;
			Column	   *tcols[1] = {&tids};
			uint64		n;

			qsort(in->btids, in->nbtids, sizeof(ItemPointerData), TidCmp);
			ColumnInit(&tids, TIDOID);
			for (int64 i = 0; i < in->nbtids; i++)
				ColumnAdd(&tids, PointerGetDatum(&in->btids[i]), false);
			MemoryContextSwitchTo(old);
			initStringInfo(&sql);
			appendStringInfo(&sql,
							 "UPDATE %s c SET %s = 'hard_bounced'"
							 "  FROM unnest($1) AS b(tid)"
							 " WHERE c.ctid = b.tid AND c.%s IS DISTINCT FROM 'hard_bounced'",
							 carriers->relation, carriers->result_col, carriers->result_col);
			n = ExecColumns(sql.data, tcols, 1, SPI_OK_UPDATE, true);
			counts->carriers_bounced = (int64) n;
			by_address = n < (uint64) in->nbtids;
			MemoryContextSwitchTo(in->cxt);
		}
		ColumnInit(&bounced, TEXTOID);
		if (by_address)
			for (int i = 0; i < nbounced; i++)
				if (bounced_list[i]->to_bounce)
					ColumnAddCString(&bounced, bounced_list[i]->addr);
		MemoryContextSwitchTo(old);
		if (bounced.n > 0)
		{
			initStringInfo(&sql);
			appendStringInfo(&sql,
							 "UPDATE %s c SET %s = 'hard_bounced'"
							 "  FROM unnest($1) AS b(addr)"
							 " WHERE lower(btrim(c.%s)) = b.addr AND c.%s IS DISTINCT FROM 'hard_bounced'",
							 carriers->relation, carriers->result_col, carriers->email_col,
							 carriers->result_col);
			counts->carriers_bounced += (int64)
				ExecColumns(sql.data, cols, 1, SPI_OK_UPDATE, have_index);
		}
	}

	Phase(in, "hard bounces written back");

	/* and the suppression list (the first bounce's reason is kept) */
	old = MemoryContextSwitchTo(in->cxt);
	{
		Column		c[5];
		Column	   *cols[5];
		Oid			types[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};

		for (int k = 0; k < 5; k++)
		{
			ColumnInit(&c[k], types[k]);
			cols[k] = &c[k];
		}
		for (int i = 0; i < nbounced; i++)
		{
			AddrAgg    *a = bounced_list[i];

			ColumnAddCString(&c[0], a->addr);
			ColumnAddCString(&c[1], a->first_dsn);
			ColumnAddCString(&c[2], a->first_reason);
			ColumnAddCString(&c[3], in->sources[a->first_source]);
			ColumnAdd(&c[4], TimestampTzGetDatum(a->first_bounced_at), false);
		}
		MemoryContextSwitchTo(old);
		if (c[0].n > 0)
			counts->suppressed = (int64)
				ExecColumns("INSERT INTO pw.suppressions (email, reason, source, created_at)"
							" SELECT addr, 'hard bounce' || coalesce(' ' || dsn, '') || coalesce(': ' || reason, ''),"
							"        source, logged_at"
							"   FROM unnest($1, $2, $3, $4, $5) AS b(addr, dsn, reason, source, logged_at)"
							"  WHERE addr LIKE '%_@_%'"
							"    AND NOT EXISTS (SELECT 1 FROM pw.suppressions s"
							"                     WHERE s.email = pw.normalize_email(b.addr))"
							" ON CONFLICT (email) DO NOTHING",
							cols, 5, SPI_OK_INSERT, false);
	}
	Phase(in, "suppressions");
}

/*
 * pw.ingest_maillog(path text): reads a log from where the last call on it
 * stopped, finishing the rotated file (path.1) first when the file was
 * rotated, applies what it read and advances the stored offset.
 */
Datum
pw_ingest_maillog(PG_FUNCTION_ARGS)
{
	char	   *canon = MaillogResolvePath(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PwCarriers	carriers;
	IngestCounts counts;
	TupleDesc	tupdesc;
	Datum		values[13];
	bool		nulls[13] = {0};
	Oid			types[5] = {TEXTOID, INT8OID, INT8OID, INT8OID, BYTEAOID};
	Datum		args[5];
	bool		argnulls[5] = {0};
	char		argn[6];
	struct stat sb;
	bool		have_state = false;
	int64		st_dev = 0,
				st_inode = 0,
				st_offset = 0;
	bytea	   *st_tail = NULL;
	bytea	   *new_tail;
	Segment		segs[2];
	int			nsegs = 0;
	MemoryContext callerctx = CurrentMemoryContext;
	int			nestlevel;
	Ingest		in;
	instr_time	t_start,
				t_read,
				t_end;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	memset(&counts, 0, sizeof(counts));
	INSTR_TIME_SET_CURRENT(t_start);

	SPI_connect();
	nestlevel = PwSafeSearchPath();
	/* first the extension: a DROP EXTENSION under way is waited for */
	(void) PwLockExtension(false);
	CheckReadPrivilege();
	PwCarriersLoad(&carriers);

	/* the file's state, locked against concurrent ingestion of it */
	args[0] = CStringGetTextDatum(canon);
	Exec("INSERT INTO pw.maillog_files (path, dev, inode) VALUES ($1, -1, -1)"
		 " ON CONFLICT (path) DO NOTHING", 1, types, args, SPI_OK_INSERT);
	Exec("SELECT dev, inode, \"offset\", tail FROM pw.maillog_files WHERE path = $1 FOR UPDATE",
		 1, types, args, SPI_OK_SELECT);
	if (SPI_processed == 1)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		st_dev = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		st_inode = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		st_offset = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		{
			Datum		t = SPI_getbinval(tup, desc, 4, &isnull);

			/* copied out of SPI's memory: it outlives the next statements */
			if (!isnull)
				st_tail = DatumGetByteaPCopy(t);
		}
		have_state = !(st_dev == -1 && st_inode == -1);
	}

	if (!StatPath(canon, &sb))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("mail log \"%s\" does not exist", canon)));
	if (!S_ISREG(sb.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("mail log \"%s\" is not a regular file", canon)));

	if (have_state && (int64) sb.st_dev == st_dev && (int64) sb.st_ino == st_inode &&
		(int64) sb.st_size >= st_offset &&
		TailMatches(canon, st_offset, (uint64) sb.st_dev, (uint64) sb.st_ino, st_tail))
	{
		/* the same file, grown or not */
		segs[nsegs++] = (Segment) {canon, st_offset, (uint64) sb.st_dev, (uint64) sb.st_ino};
	}
	else
	{
		if (have_state)
		{
			/* rotated (or truncated): finish the old file if it is path.1 */
			char	   *rotated = psprintf("%s.1", canon);
			struct stat rsb;

			if (StatPath(rotated, &rsb) && (int64) rsb.st_dev == st_dev &&
				(int64) rsb.st_ino == st_inode && (int64) rsb.st_size >= st_offset &&
				TailMatches(rotated, st_offset, (uint64) rsb.st_dev, (uint64) rsb.st_ino, st_tail))
				segs[nsegs++] = (Segment) {MaillogResolvePath(rotated), st_offset,
					(uint64) rsb.st_dev, (uint64) rsb.st_ino};
			else
				ereport(WARNING,
						(errmsg("mail log \"%s\" was rotated or truncated and the old file is not \"%s\"",
								canon, rotated),
						 errdetail("Lines written to the old file after offset " INT64_FORMAT " were not ingested, nor any file rotated out between the two calls.",
								   st_offset),
						 errhint("Ingest more often than the log rotates; rotation must rename the file, not copy and truncate it.")));
		}
		segs[nsegs++] = (Segment) {canon, 0, (uint64) sb.st_dev, (uint64) sb.st_ino};
	}

	IngestInit(&in, &counts);
	for (int i = 0; i < nsegs; i++)
		ReadSegment(&in, &segs[i], &counts);
	INSTR_TIME_SET_CURRENT(t_read);

	ApplyIngest(&in, &carriers, &counts, text_to_cstring(PG_GETARG_TEXT_PP(0)), canon);
	MemoryContextDelete(in.cxt);

	/* what the file holds before the new offset, to recognise it next time */
	new_tail = ReadTail(canon, counts.end_offset, (uint64) sb.st_dev, (uint64) sb.st_ino);
	args[1] = Int64GetDatum((int64) sb.st_dev);
	args[2] = Int64GetDatum((int64) sb.st_ino);
	args[3] = Int64GetDatum(counts.end_offset);
	args[4] = new_tail ? PointerGetDatum(new_tail) : (Datum) 0;
	argnulls[4] = new_tail == NULL;
	for (int i = 0; i < 5; i++)
		argn[i] = argnulls[i] ? 'n' : ' ';
	argn[5] = '\0';
	if (SPI_execute_with_args(psprintf("UPDATE pw.maillog_files SET dev = $2, inode = $3, \"offset\" = $4, tail = $5,"
				  " lines = lines + " INT64_FORMAT ", events = events + " INT64_FORMAT ","
				  " unparsed = unparsed + " INT64_FORMAT ", overlong = overlong + " INT64_FORMAT ","
				  " updated_at = now() WHERE path = $1",
				  counts.lines, counts.events, counts.unparsed, counts.overlong),
							  5, types, args, argn, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "pw.ingest_maillog: could not update pw.maillog_files");
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();
	INSTR_TIME_SET_CURRENT(t_end);
	INSTR_TIME_SUBTRACT(t_end, t_read);
	INSTR_TIME_SUBTRACT(t_read, t_start);
	ereport(DEBUG1,
			(errmsg_internal("ingest_maillog %s: " INT64_FORMAT " lines, " INT64_FORMAT
							 " events, read in %.0f ms, applied in %.0f ms",
							 canon, counts.lines, counts.events,
							 INSTR_TIME_GET_MILLISEC(t_read), INSTR_TIME_GET_MILLISEC(t_end))));

	MemoryContextSwitchTo(callerctx);
	values[0] = Int32GetDatum(counts.files);
	values[1] = Int64GetDatum(counts.lines);
	values[2] = Int64GetDatum(counts.events);
	values[3] = Int64GetDatum(counts.unparsed);
	values[4] = Int64GetDatum(counts.overlong);
	values[5] = Int64GetDatum(counts.sent);
	values[6] = Int64GetDatum(counts.deferred);
	values[7] = Int64GetDatum(counts.bounced);
	values[8] = Int64GetDatum(counts.expired);
	values[9] = Int64GetDatum(counts.carriers_bounced);
	values[10] = Int64GetDatum(counts.unknown);
	values[11] = Int64GetDatum(counts.suppressed);
	values[12] = Int64GetDatum(counts.end_offset);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * pw.confirm_deliveries(older_than interval): carriers whose address was
 * first delivered before now() - older_than and never bounced become
 * send_confirmed, unless hard_bounced or suppressed.
 */
Datum
pw_confirm_deliveries(PG_FUNCTION_ARGS)
{
	PwCarriers	carriers;
	StringInfoData sql;
	Oid			types[1] = {INTERVALOID};
	Datum		args[1];
	int64		changed;
	int			nestlevel;

	args[0] = PG_GETARG_DATUM(0);
	SPI_connect();
	nestlevel = PwSafeSearchPath();
	/*
	 * The extension, pw.deliveries, then the carriers write lock, as an
	 * ingest takes them (docs/internals.md, "Lock order").
	 */
	(void) PwLockExtension(false);
	PwCarriersLoad(&carriers);
	Exec("LOCK TABLE pw.deliveries IN ROW EXCLUSIVE MODE", 0, NULL, NULL, SPI_OK_UTILITY);
	PwLockCarriersWrites(&carriers);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH c AS (UPDATE %s c SET %s = 'send_confirmed'"
					 "             FROM pw.deliveries d"
					 "            WHERE lower(btrim(c.%s)) = d.email"
					 "              AND d.first_sent_at <= now() - $1"
					 "              AND d.bounced_at IS NULL"
					 "              AND c.%s IS DISTINCT FROM 'send_confirmed'"
					 "              AND c.%s IS DISTINCT FROM 'hard_bounced'"
					 "              AND NOT EXISTS (SELECT 1 FROM pw.suppressions s WHERE s.email = d.email)"
					 "            RETURNING d.email),"
					 " u AS (UPDATE pw.deliveries d SET confirmed_at = now()"
					 "        WHERE d.email IN (SELECT email FROM c) AND d.confirmed_at IS NULL)"
					 " SELECT count(*) FROM c",
					 carriers.relation, carriers.result_col, carriers.email_col,
					 carriers.result_col, carriers.result_col);
	Exec(sql.data, 1, types, args, SPI_OK_SELECT);
	changed = FirstInt8();
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();
	PG_RETURN_INT64(changed);
}

/*
 * pw.create_writeback_index(): the index on the carriers' normalised email
 * (lower(btrim(email))) the writeback joins on, created if missing.
 */
Datum
pw_create_writeback_index(PG_FUNCTION_ARGS)
{
	PwCarriers	carriers;
	char	   *relname;
	char		idxname[NAMEDATALEN];
	char	   *sql;
	int			nestlevel;

	SPI_connect();
	nestlevel = PwSafeSearchPath();
	PwCarriersLoad(&carriers);
	relname = get_rel_name(carriers.relid);
	snprintf(idxname, sizeof(idxname), "%.40s_pw_email_norm_idx", relname);
	sql = psprintf("CREATE INDEX IF NOT EXISTS %s ON %s (lower(btrim(%s)))",
				   quote_identifier(idxname), carriers.relation, carriers.email_col);
	Exec(sql, 0, NULL, NULL, SPI_OK_UTILITY);
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(idxname));
}
