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
 * never skips or repeats a line.  Rows are staged in a temporary table and
 * applied with set-based statements built on the configured carriers
 * contract (PwCarriersLoad).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "storage/bufmgr.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "maillog.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_ingest_maillog);
PG_FUNCTION_INFO_V1(pw_confirm_deliveries);
PG_FUNCTION_INFO_V1(pw_create_writeback_index);

/* How long a deferred recipient waits for its queue id's expiry line */
#define PENDING_WINDOW "30 days"

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

/* Creates this session's staging tables if needed, and empties them. */
static void
PrepareStaging(void)
{
	Exec("SELECT to_regclass('pg_temp.pw_maillog_batch') IS NOT NULL", 0, NULL, NULL,
		 SPI_OK_SELECT);
	{
		bool		isnull;
		bool		exists = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 1, &isnull));

		if (!exists)
		{
			Exec("CREATE TEMP TABLE pw_maillog_batch ("
				 " source text, logged_at timestamptz, queue_id text, addr text,"
				 " dsn text, kind text, reason text) ON COMMIT DELETE ROWS",
				 0, NULL, NULL, SPI_OK_UTILITY);
		}
	}
	Exec("SELECT to_regclass('pg_temp.pw_maillog_addr') IS NOT NULL", 0, NULL, NULL,
		 SPI_OK_SELECT);
	{
		bool		isnull;
		bool		exists = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
														SPI_tuptable->tupdesc, 1, &isnull));

		if (!exists)
			Exec("CREATE TEMP TABLE pw_maillog_addr ("
				 " addr text, in_carriers boolean, mx text) ON COMMIT DELETE ROWS",
				 0, NULL, NULL, SPI_OK_UTILITY);
	}
	Exec("TRUNCATE pg_temp.pw_maillog_batch, pg_temp.pw_maillog_addr", 0, NULL, NULL,
		 SPI_OK_UTILITY);
}

/*
 * Runs a statement joining staged rows to the carriers by probing the index
 * on the normalised email (addresses are few next to the carriers; with the
 * probes in index order this beats hashing the whole table, and the planner
 * still hashes when there is no such index).  Returns SPI_processed.
 */
static uint64
ExecProbingCarriers(const char *sql, int expected)
{
	int			nestlevel = NewGUCNestLevel();
	uint64		n;

	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	n = Exec(sql, 0, NULL, NULL, expected);
	AtEOXact_GUC(true, nestlevel);
	return n;
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

/* Reads one segment into the staging table through pw.read_maillog(). */
static void
StageSegment(const Segment *seg, IngestCounts *counts)
{
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2];
	const MaillogReadStats *st;

	values[0] = CStringGetTextDatum(seg->path);
	values[1] = Int64GetDatum(seg->start);
	Exec("INSERT INTO pg_temp.pw_maillog_batch (source, logged_at, queue_id, addr, dsn, kind, reason)"
		 " SELECT $1, r.logged_at, r.queue_id, a.addr, r.dsn,"
		 "  CASE r.status WHEN 'sent' THEN 'sent' WHEN 'deferred' THEN 'deferred'"
		 "   WHEN 'bounced' THEN 'bounced'"
		 "   WHEN 'expired' THEN CASE WHEN a.addr IS NULL THEN 'expired' ELSE 'bounced' END"
		 "   ELSE 'other' END, CASE WHEN r.status <> 'sent' THEN r.reason END"
		 " FROM pw.read_maillog($1, $2) r,"
		 "  LATERAL (SELECT nullif(lower(btrim(coalesce(nullif(r.orig_recipient, ''), r.recipient))), '')"
		 "           AS addr) a",
		 2, types, values, SPI_OK_INSERT);
	st = MaillogLastRead();
	if (st == NULL || strcmp(st->path, seg->path) != 0)
		elog(ERROR, "pw.ingest_maillog: read of \"%s\" left no statistics", seg->path);
	if (st->dev != seg->dev || st->inode != seg->inode)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mail log \"%s\" was replaced while it was being ingested", seg->path),
				 errhint("Call pw.ingest_maillog() again.")));
	counts->files++;
	counts->lines += st->lines;
	counts->events += st->events;
	counts->unparsed += st->unparsed;
	counts->overlong += st->overlong;
	counts->end_offset = st->end_offset;
}

/*
 * Applies the staged rows: pending deferrals, expiries, deliveries,
 * writeback.  The daily outcomes are attributed to the profile pw.maillogs
 * maps the log to ("given" as passed, or its canonical path), '' if none.
 */
static void
ApplyBatch(PwCarriers *carriers, IngestCounts *counts, const char *given,
		   const char *canon)
{
	StringInfoData sql;
	char	   *norm;
	char	   *profile;
	Oid			log_types[2] = {TEXTOID, TEXTOID};
	Datum		log_values[2];

	/* recipients deferred and not yet finished, per queue id */
	Exec("INSERT INTO pw.maillog_pending AS p (queue_id, email, deferred_at, dsn, reason, source)"
		 " SELECT DISTINCT ON (queue_id, addr) queue_id, addr, logged_at, dsn, reason, source"
		 "   FROM pg_temp.pw_maillog_batch"
		 "  WHERE kind = 'deferred' AND addr IS NOT NULL AND queue_id IS NOT NULL"
		 "  ORDER BY queue_id, addr, logged_at DESC"
		 " ON CONFLICT (queue_id, email) DO UPDATE SET"
		 "  deferred_at = EXCLUDED.deferred_at, dsn = EXCLUDED.dsn,"
		 "  reason = EXCLUDED.reason, source = EXCLUDED.source"
		 "  WHERE EXCLUDED.deferred_at >= p.deferred_at",
		 0, NULL, NULL, SPI_OK_INSERT);
	Exec("DELETE FROM pw.maillog_pending p USING pg_temp.pw_maillog_batch b"
		 " WHERE b.queue_id = p.queue_id AND b.addr = p.email"
		 "   AND b.kind IN ('sent', 'bounced') AND b.logged_at >= p.deferred_at",
		 0, NULL, NULL, SPI_OK_DELETE);

	/* a message expired: every recipient still pending bounces */
	counts->expired = (int64) Exec("SELECT 1 FROM pg_temp.pw_maillog_batch WHERE kind = 'expired'",
								   0, NULL, NULL, SPI_OK_SELECT);
	Exec("WITH x AS (SELECT queue_id, logged_at, source FROM pg_temp.pw_maillog_batch"
		 "            WHERE kind = 'expired' AND queue_id IS NOT NULL),"
		 " gone AS (DELETE FROM pw.maillog_pending p USING x"
		 "           WHERE p.queue_id = x.queue_id AND p.deferred_at <= x.logged_at"
		 "             AND p.deferred_at > x.logged_at - interval '" PENDING_WINDOW "'"
		 "          RETURNING p.queue_id, p.email, p.dsn, p.reason, x.logged_at, x.source)"
		 " INSERT INTO pg_temp.pw_maillog_batch (source, logged_at, queue_id, addr, dsn, kind, reason)"
		 " SELECT DISTINCT ON (queue_id, email) source, logged_at, queue_id, email, dsn, 'bounced',"
		 "        'expired in queue' || coalesce(' after: ' || reason, '')"
		 "   FROM gone ORDER BY queue_id, email, logged_at",
		 0, NULL, NULL, SPI_OK_INSERT);

	/* forget deferrals too old for any expiry line to come */
	Exec("DELETE FROM pw.maillog_pending"
		 " WHERE deferred_at < (SELECT max(logged_at) FROM pg_temp.pw_maillog_batch)"
		 "                     - interval '" PENDING_WINDOW "'",
		 0, NULL, NULL, SPI_OK_DELETE);

	Exec("SELECT count(*) FILTER (WHERE kind = 'sent'), count(*) FILTER (WHERE kind = 'deferred'),"
		 "       count(*) FILTER (WHERE kind = 'bounced')"
		 "  FROM pg_temp.pw_maillog_batch WHERE addr IS NOT NULL",
		 0, NULL, NULL, SPI_OK_SELECT);
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		counts->sent = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		counts->deferred = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		counts->bounced = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	}

	/*
	 * One statement: which addresses are carriers (and their operator now),
	 * what the log said about each address, carrier or not (known addresses
	 * updated, new ones plainly inserted: ingests are serialized on
	 * pw.deliveries), and the outcomes per day and operator.  Returns the
	 * number of addresses that are not carriers.
	 */
	/*
	 * The profile is looked up once: pw.maillog_profile() is security
	 * definer, so calling it per staged row costs seconds on a big log.
	 */
	log_values[0] = CStringGetTextDatum(given);
	log_values[1] = CStringGetTextDatum(canon);
	Exec("SELECT pw.maillog_profile($1, $2)", 2, log_types, log_values, SPI_OK_SELECT);
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		profile = isnull ? pstrdup("") : TextDatumGetCString(d);
	}

	norm = psprintf("lower(btrim(c.%s))", carriers->email_col);
	Exec("LOCK TABLE pw.deliveries IN SHARE ROW EXCLUSIVE MODE", 0, NULL, NULL, SPI_OK_UTILITY);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "INSERT INTO pg_temp.pw_maillog_addr (addr, in_carriers, mx)"
					 " SELECT x.addr, bool_or(c.%s IS NOT NULL), max(c.%s)"
					 "   FROM (SELECT DISTINCT addr FROM pg_temp.pw_maillog_batch"
					 "          WHERE addr IS NOT NULL AND kind IN ('sent', 'deferred', 'bounced')"
					 "          ORDER BY addr) x"
					 "   LEFT JOIN %s c ON %s = x.addr"
					 "  GROUP BY x.addr",
					 carriers->email_col, carriers->mx_col, carriers->relation, norm);
	ExecProbingCarriers(sql.data, SPI_OK_INSERT);
	Exec("ANALYZE pg_temp.pw_maillog_addr", 0, NULL, NULL, SPI_OK_UTILITY);
	resetStringInfo(&sql);
	appendStringInfoString(&sql,
					 "WITH a AS (SELECT addr, in_carriers, mx FROM pg_temp.pw_maillog_addr),"
					 " g AS MATERIALIZED ("
					 "   SELECT g.*, lb.dsn AS bounce_dsn, lb.reason AS bounce_reason, a.in_carriers, a.mx"
					 "     FROM (SELECT b.addr,"
					 "             min(b.logged_at) FILTER (WHERE b.kind = 'sent') AS first_sent_at,"
					 "             max(b.logged_at) FILTER (WHERE b.kind = 'sent') AS last_sent_at,"
					 "             count(*) FILTER (WHERE b.kind = 'sent') AS sent_count,"
					 "             max(b.logged_at) FILTER (WHERE b.kind = 'deferred') AS last_deferred_at,"
					 "             count(*) FILTER (WHERE b.kind = 'deferred') AS deferred_count,"
					 "             max(b.logged_at) FILTER (WHERE b.kind = 'bounced') AS bounced_at,"
					 "             count(*) FILTER (WHERE b.kind = 'bounced') AS bounce_count,"
					 "             max(b.source) AS source"
					 "             FROM pg_temp.pw_maillog_batch b"
					 "            WHERE b.kind IN ('sent', 'deferred', 'bounced') AND b.addr IS NOT NULL"
					 "            GROUP BY b.addr) g"
					 "     JOIN a ON a.addr = g.addr"
					 "     LEFT JOIN (SELECT DISTINCT ON (addr) addr, dsn, reason"
					 "                  FROM pg_temp.pw_maillog_batch WHERE kind = 'bounced'"
					 "                 ORDER BY addr, logged_at DESC) lb ON lb.addr = g.addr),"
					 " u AS ("
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
					 "    FROM g s WHERE d.email = s.addr"
					 "   RETURNING d.email),"
					 " i AS ("
					 "   INSERT INTO pw.deliveries (email, first_sent_at, last_sent_at, sent_count,"
					 "     last_deferred_at, deferred_count, bounced_at, bounce_count, bounce_dsn,"
					 "     bounce_reason, source, in_carriers, mx_provider)"
					 "   SELECT s.addr, s.first_sent_at, s.last_sent_at, s.sent_count, s.last_deferred_at,"
					 "     s.deferred_count, s.bounced_at, s.bounce_count, s.bounce_dsn, s.bounce_reason,"
					 "     s.source, s.in_carriers, s.mx"
					 "     FROM g s WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.email = s.addr)"
					 "    ORDER BY s.addr),"
					 " m AS ("
					 "   INSERT INTO pw.maillog_daily AS m (day, mx_provider, profile, sent, deferred, bounced)"
					 "   SELECT b.logged_at::date,"
					 "     CASE WHEN a.in_carriers THEN coalesce(a.mx, '(untagged)') ELSE '(not a carrier)' END,"
					 "     $1,"
					 "     count(*) FILTER (WHERE b.kind = 'sent'), count(*) FILTER (WHERE b.kind = 'deferred'),"
					 "     count(*) FILTER (WHERE b.kind = 'bounced')"
					 "     FROM pg_temp.pw_maillog_batch b JOIN a ON a.addr = b.addr"
					 "    WHERE b.kind IN ('sent', 'deferred', 'bounced')"
					 "    GROUP BY 1, 2, 3"
					 "   ON CONFLICT (day, mx_provider, profile) DO UPDATE SET"
					 "     sent = m.sent + EXCLUDED.sent, deferred = m.deferred + EXCLUDED.deferred,"
					 "     bounced = m.bounced + EXCLUDED.bounced)"
					 " SELECT count(*) FILTER (WHERE NOT in_carriers) FROM a");
	log_values[0] = CStringGetTextDatum(profile);
	Exec(sql.data, 1, log_types, log_values, SPI_OK_SELECT);
	counts->unknown = FirstInt8();

	/* hard bounces: every carrier with the address, whatever its result */
	resetStringInfo(&sql);
	appendStringInfo(&sql,
					 "UPDATE %s c SET %s = 'hard_bounced'"
					 "  FROM (SELECT DISTINCT addr FROM pg_temp.pw_maillog_batch WHERE kind = 'bounced') b"
					 " WHERE %s = b.addr AND c.%s IS DISTINCT FROM 'hard_bounced'",
					 carriers->relation, carriers->result_col, norm, carriers->result_col);
	counts->carriers_bounced = (int64) ExecProbingCarriers(sql.data, SPI_OK_UPDATE);

	/* and the suppression list (the first bounce's reason is kept) */
	counts->suppressed = (int64)
		Exec("INSERT INTO pw.suppressions (email, reason, source, created_at)"
			 " SELECT DISTINCT ON (addr) addr,"
			 "        'hard bounce' || coalesce(' ' || dsn, '') || coalesce(': ' || reason, ''),"
			 "        source, logged_at"
			 "   FROM pg_temp.pw_maillog_batch"
			 "  WHERE kind = 'bounced' AND addr LIKE '%_@_%'"
			 "  ORDER BY addr, logged_at"
			 " ON CONFLICT (email) DO NOTHING",
			 0, NULL, NULL, SPI_OK_INSERT);
	pfree(sql.data);
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

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	memset(&counts, 0, sizeof(counts));

	SPI_connect();
	nestlevel = PwSafeSearchPath();

	/*
	 * The staged rows are scanned several times: keep them in memory when
	 * this session has not used temporary tables yet (temp_buffers can only
	 * change before; the buffers are allocated as they fill).
	 */
	if (NLocBuffer == 0)
		(void) set_config_option("temp_buffers", "128MB", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	PwCarriersLoad(&carriers);
	PrepareStaging();

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

	for (int i = 0; i < nsegs; i++)
		StageSegment(&segs[i], &counts);
	Exec("ANALYZE pg_temp.pw_maillog_batch", 0, NULL, NULL, SPI_OK_UTILITY);

	ApplyBatch(&carriers, &counts, text_to_cstring(PG_GETARG_TEXT_PP(0)), canon);

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
	PwCarriersLoad(&carriers);
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
