/*-------------------------------------------------------------------------
 *
 * reader.c
 *	  pw.read_maillog(): Postfix mail.log files as a table, read with large
 *	  buffered reads and parsed in C (maillog_parse.c), restricted to the
 *	  directory named by pw_deliverability.maillog_directory (path.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "maillog.h"
#include "verdict/verdict.h"
#include "maillog_parse.h"
#include "common/pw_common.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_read_maillog);
PG_FUNCTION_INFO_V1(pw_maillog_last_read);

/* Size of one read() from the log */
#define MAILLOG_READ_SIZE (1024 * 1024)

#define READ_MAILLOG_COLS 14

/* The last read of this backend, for pw.maillog_last_read() */
static MaillogReadStats last_read;
static bool last_read_valid = false;

/* Converts parsed timestamps to timestamptz. */
typedef struct TimeConv
{
	TimestampTz now;
	int			this_year;		/* current year in the session time zone */
	int			cache_key;		/* y/m/d/h of the cached zone offset, or -1 */
	int			cache_tz;
} TimeConv;

/* The stats of this backend's last read, or NULL. */
const MaillogReadStats *
MaillogLastRead(void)
{
	return last_read_valid ? &last_read : NULL;
}

/* Sets up timestamp conversion relative to the transaction start. */
static void
TimeConvInit(TimeConv *conv)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			tz;

	conv->now = GetCurrentTransactionStartTimestamp();
	if (timestamp2tm(conv->now, &tz, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "could not convert the current time");
	conv->this_year = tm.tm_year;
	conv->cache_key = -1;
	conv->cache_tz = 0;
}

/* A local wall-clock time of the session time zone as a timestamptz. */
static bool
LocalTimestamp(TimeConv *conv, int year, const MaillogTime *t, TimestampTz *out)
{
	struct pg_tm tm;
	int			key = ((year * 13 + t->month) * 32 + t->day) * 24 + t->hour;
	int			tz;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year;
	tm.tm_mon = t->month;
	tm.tm_mday = t->day;
	tm.tm_hour = t->hour;
	tm.tm_min = t->minute;
	tm.tm_sec = t->second > 59 ? 59 : t->second;
	if (key == conv->cache_key)
		tz = conv->cache_tz;
	else
	{
		tz = DetermineTimeZoneOffset(&tm, session_timezone);
		conv->cache_key = key;
		conv->cache_tz = tz;
	}
	return tm2timestamp(&tm, t->usec, &tz, out) == 0;
}

/*
 * The timestamptz of a parsed timestamp.  Traditional syslog timestamps
 * have no year: the current one, or the one before when that would put the
 * line more than a day into the future.  Times without an offset are in the
 * session time zone.
 */
static bool
MaillogTimestamp(TimeConv *conv, const MaillogTime *t, TimestampTz *out)
{
	if (t->year == 0)
	{
		int			year = conv->this_year;

		/* Feb 29: the latest leap year */
		for (int i = 0; i < 8 && t->day > MaillogDaysInMonth(year, t->month); i++)
			year--;
		if (!LocalTimestamp(conv, year, t, out))
			return false;
		if (*out > conv->now + USECS_PER_DAY)
		{
			year--;
			for (int i = 0; i < 8 && t->day > MaillogDaysInMonth(year, t->month); i++)
				year--;
			if (!LocalTimestamp(conv, year, t, out))
				return false;
		}
		return true;
	}
	if (!t->has_offset)
		return LocalTimestamp(conv, t->year, t, out);
	{
		int64		days = (int64) date2j(t->year, t->month, t->day) - POSTGRES_EPOCH_JDATE;
		int64		secs = ((int64) t->hour * 60 + t->minute) * 60 + t->second - t->offset_sec;

		*out = days * USECS_PER_DAY + secs * USECS_PER_SEC + t->usec;
		return IS_VALID_TIMESTAMP(*out);
	}
}

/* What pw.read_maillog() puts its rows into. */
typedef struct RowSink
{
	Tuplestorestate *ts;
	TupleDesc	desc;
	char	   *buf;			/* the text values of the row being built */
	const VerdictRuleset *rules;	/* to classify bounces and deferrals */
} RowSink;

/*
 * Room in RowSink.buf for the text values of one line: the fields are
 * disjoint slices of a line of at most MAILLOG_MAX_LINE bytes, each value
 * takes a header and up to 3 bytes of alignment more.
 */
#define ROW_TEXT_SPACE (MAILLOG_MAX_LINE + READ_MAILLOG_COLS * (VARHDRSZ + 3) + NAMEDATALEN)

/*
 * Sets a text column from a field (NULL when absent), building the value
 * at *pos and advancing it: the tuplestore copies the row.
 */
static void
SetText(Datum *values, bool *nulls, int i, const MaillogField *f, char **pos)
{
	if (f->ptr == NULL)
	{
		nulls[i] = true;
		return;
	}
	SET_VARSIZE(*pos, VARHDRSZ + f->len);
	memcpy(*pos + VARHDRSZ, f->ptr, f->len);
	values[i] = PointerGetDatum(*pos);
	nulls[i] = false;
	*pos += INTALIGN(VARHDRSZ + f->len);
}

/*
 * Sets the category column of a bounce or deferral (as the ingest judges
 * it: an expiry of a recipient by the reason of its last deferral); NULL
 * for other lines.
 */
static void
SetCategory(RowSink *sink, const MaillogRecord *rec, Datum *values, bool *nulls,
			int i, char **pos)
{
	const MaillogField *st = &rec->status;
	bool		expired = st->len == 7 && memcmp(st->ptr, "expired", 7) == 0;
	MaillogField f;
	int			cat;

	nulls[i] = true;
	if (st->ptr == NULL ||
		!((st->len == 8 && memcmp(st->ptr, "deferred", 8) == 0) ||
		  (st->len == 7 && memcmp(st->ptr, "bounced", 7) == 0) ||
		  (expired && rec->recipient.ptr != NULL)))
		return;
	cat = VerdictClassify(sink->rules, rec->dsn.ptr, (int) rec->dsn.len,
						  rec->reason.ptr, (int) rec->reason.len);
	if (expired)
		cat = VerdictExpiryCategory(sink->rules, cat);
	f.ptr = sink->rules->cats[cat].name;
	f.len = Min(strlen(f.ptr), NAMEDATALEN - VARHDRSZ - 4);
	SetText(values, nulls, i, &f, pos);
}

/* Turns one parsed event line into a row of pw.read_maillog(). */
static void
EmitRow(void *arg, const MaillogRecord *rec, TimestampTz when, int64 line_offset)
{
	RowSink    *sink = (RowSink *) arg;
	Datum		values[READ_MAILLOG_COLS];
	bool		nulls[READ_MAILLOG_COLS];
	char	   *pos = sink->buf;

	values[0] = Int64GetDatum(line_offset);
	nulls[0] = false;
	values[1] = TimestampTzGetDatum(when);
	nulls[1] = false;
	SetText(values, nulls, 2, &rec->host, &pos);
	SetText(values, nulls, 3, &rec->program, &pos);
	values[4] = Int32GetDatum((int32) rec->pid);
	nulls[4] = rec->pid < 0;
	SetText(values, nulls, 5, &rec->queue_id, &pos);
	SetText(values, nulls, 6, &rec->recipient, &pos);
	SetText(values, nulls, 7, &rec->orig_recipient, &pos);
	SetText(values, nulls, 8, &rec->relay, &pos);
	values[9] = Float8GetDatum(rec->delay);
	nulls[9] = !rec->has_delay;
	SetText(values, nulls, 10, &rec->dsn, &pos);
	SetText(values, nulls, 11, &rec->status, &pos);
	SetText(values, nulls, 12, &rec->reason, &pos);
	SetCategory(sink, rec, values, nulls, 13, &pos);
	Assert(pos <= sink->buf + ROW_TEXT_SPACE);
	tuplestore_putvalues(sink->ts, sink->desc, values, nulls);
}

/* Parses one complete line, counts it and hands an event to the sink. */
static void
HandleLine(const char *line, size_t len, int64 offset, MaillogReadStats *st,
		   TimeConv *conv, MaillogEventSink sink, void *arg)
{
	MaillogRecord rec;
	TimestampTz when;

	st->lines++;
	if (len > 0 && line[len - 1] == '\r')
		len--;
	switch (MaillogParseLine(line, len, &rec))
	{
		case MAILLOG_UNPARSED:
			st->unparsed++;
			break;
		case MAILLOG_OTHER:
			st->other++;
			break;
		case MAILLOG_EVENT:
			/* every field is a slice of the line, split at ASCII bytes */
			if (!pg_verifymbstr(line, (int) len, true) ||
				!MaillogTimestamp(conv, &rec.ts, &when))
			{
				st->unparsed++;
				break;
			}
			sink(arg, &rec, when, offset);
			st->events++;
			break;
	}
}

/*
 * Reads the complete lines of a (canonical) path from start_offset on,
 * hands every event line to sink and fills *st.  A final line without a
 * newline is left for a later read; a line longer than MAILLOG_MAX_LINE is
 * skipped and counted.
 */
static void
MaillogRead(const char *canon, int64 start_offset, MaillogEventSink sink,
			void *arg, MaillogReadStats *st)
{
	int			fd;
	struct stat sb;
	char	   *buf;
	size_t		have = 0;		/* bytes in buf */
	int64		buf_offset;		/* file offset of buf[0] */
	bool		skipping = false;	/* inside an over-long line */
	TimeConv	conv;

	memset(st, 0, sizeof(*st));
	st->start_offset = start_offset;
	st->end_offset = start_offset;

	fd = MaillogOpen(canon, &sb);
	st->dev = (uint64) sb.st_dev;
	st->inode = (uint64) sb.st_ino;
	if (start_offset > 0 && lseek(fd, (off_t) start_offset, SEEK_SET) < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not seek in mail log \"%s\": %m", canon)));

	TimeConvInit(&conv);
	buf = palloc(MAILLOG_READ_SIZE + MAILLOG_MAX_LINE);
	buf_offset = start_offset;

	for (;;)
	{
		ssize_t		n;
		size_t		pos = 0;

		CHECK_FOR_INTERRUPTS();
		n = read(fd, buf + have, MAILLOG_READ_SIZE + MAILLOG_MAX_LINE - have);
		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read mail log \"%s\": %m", canon)));
		}
		if (n == 0)
			break;				/* EOF: what is left is a partial line */
		have += (size_t) n;

		for (;;)
		{
			char	   *nl = memchr(buf + pos, '\n', have - pos);
			size_t		len;

			if (nl == NULL)
				break;
			len = (size_t) (nl - (buf + pos));
			if (skipping)
			{
				st->lines++;
				st->overlong++;
				skipping = false;
			}
			else if (len > MAILLOG_MAX_LINE)
			{
				st->lines++;
				st->overlong++;
			}
			else
				HandleLine(buf + pos, len, buf_offset + (int64) pos, st, &conv,
						   sink, arg);
			pos += len + 1;
			st->end_offset = buf_offset + (int64) pos;
		}

		/* keep the incomplete tail, or drop it if it is already too long */
		if (have - pos > MAILLOG_MAX_LINE)
		{
			skipping = true;
			buf_offset += (int64) have;
			have = 0;
		}
		else
		{
			if (pos > 0)
				memmove(buf, buf + pos, have - pos);
			have -= pos;
			buf_offset += (int64) pos;
		}
	}

	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close mail log \"%s\": %m", canon)));
	pfree(buf);
}

/* Remembers a read's stats for pw.maillog_last_read(). */
static void
RememberRead(const char *canon, const MaillogReadStats *st)
{
	if (last_read_valid && last_read.path)
		pfree(last_read.path);
	last_read = *st;
	last_read.path = MemoryContextStrdup(TopMemoryContext, canon);
	last_read_valid = true;
}

/*
 * Reads a (canonical) path from start_offset on like pw.read_maillog(),
 * handing each event line to sink instead of returning rows; the stats are
 * also what pw.maillog_last_read() shows next.
 */
void
MaillogReadEvents(const char *canon, int64 start_offset, MaillogEventSink sink,
				  void *arg, MaillogReadStats *st)
{
	MaillogRead(canon, start_offset, sink, arg, st);
	RememberRead(canon, st);
}

/*
 * pw.read_maillog(path text, start_offset bigint DEFAULT 0): one row per
 * delivery-status line and per qmgr expiry line of a Postfix log.
 */
Datum
pw_read_maillog(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *path;
	char	   *canon;
	int64		start_offset = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1);
	MaillogReadStats st;
	RowSink		sink;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("mail log path must not be NULL")));
	if (start_offset < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start_offset must not be negative")));
	path = text_to_cstring(PG_GETARG_TEXT_PP(0));
	canon = MaillogResolvePath(path);

	InitMaterializedSRF(fcinfo, 0);
	sink.ts = rsinfo->setResult;
	sink.desc = rsinfo->setDesc;
	sink.buf = palloc(ROW_TEXT_SPACE);
	sink.rules = VerdictRules();
	MaillogReadEvents(canon, start_offset, EmitRow, &sink, &st);
	pfree(sink.buf);
	ereport(DEBUG1,
			(errmsg_internal("read_maillog %s: " INT64_FORMAT " lines, " INT64_FORMAT
							 " events, " INT64_FORMAT " unparsed, " INT64_FORMAT " overlong",
							 canon, st.lines, st.events, st.unparsed, st.overlong)));
	return (Datum) 0;
}

/*
 * pw.maillog_last_read(): what the last pw.read_maillog() of this session
 * read (offsets and line counts, including skipped lines).
 */
Datum
pw_maillog_last_read(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[10];
	bool		nulls[10] = {0};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (!last_read_valid)
		PG_RETURN_NULL();
	values[0] = CStringGetTextDatum(last_read.path);
	values[1] = Int64GetDatum(last_read.start_offset);
	values[2] = Int64GetDatum(last_read.end_offset);
	values[3] = Int64GetDatum(last_read.lines);
	values[4] = Int64GetDatum(last_read.events);
	values[5] = Int64GetDatum(last_read.other);
	values[6] = Int64GetDatum(last_read.unparsed);
	values[7] = Int64GetDatum(last_read.overlong);
	values[8] = Int64GetDatum((int64) last_read.dev);
	values[9] = Int64GetDatum((int64) last_read.inode);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
