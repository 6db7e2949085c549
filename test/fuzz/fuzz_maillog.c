/*-------------------------------------------------------------------------
 *
 * fuzz_maillog.c
 *	  libFuzzer harness for the Postfix mail.log line parser
 *	  (src/maillog_parse.c).
 *
 * The input is one line as the reader hands it over: a pointer and a
 * length, no newline, no terminating NUL.  The bytes are copied into a
 * buffer of exactly that size so that AddressSanitizer reports any read
 * past the end.  Besides memory errors, the harness aborts when a result
 * breaks the parser's contract (a field outside the line, a timestamp out
 * of range, a negative delay).
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maillog/maillog_parse.h"

/* Aborts with a message when a contract of the parser is broken. */
static void
Check(int ok, const char *what)
{
	if (!ok)
	{
		fprintf(stderr, "fuzz_maillog: contract broken: %s\n", what);
		abort();
	}
}

/* A present field must lie inside [line, line + len). */
static void
CheckField(const MaillogField *f, const char *line, size_t len,
		   const char *name)
{
	if (f->ptr == NULL)
	{
		Check(f->len == 0, name);
		return;
	}
	Check(f->ptr >= line && f->ptr <= line + len, name);
	Check(f->len <= (size_t) (line + len - f->ptr), name);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One fuzz iteration. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *line = malloc(size ? size : 1);
	MaillogRecord rec;
	MaillogLineKind kind;

	if (line == NULL)
		return 0;
	memcpy(line, data, size);
	kind = MaillogParseLine(line, size, &rec);
	Check(kind == MAILLOG_UNPARSED || kind == MAILLOG_OTHER ||
		  kind == MAILLOG_EVENT, "kind");

	if (kind != MAILLOG_UNPARSED)
	{
		const MaillogTime *t = &rec.ts;

		Check(t->month >= 1 && t->month <= 12, "month");
		Check(t->day >= 1 && t->day <= 31, "day");
		Check(t->hour >= 0 && t->hour <= 23, "hour");
		Check(t->minute >= 0 && t->minute <= 59, "minute");
		Check(t->second >= 0 && t->second <= 60, "second");
		Check(t->usec >= 0 && t->usec < 1000000, "usec");
		Check(t->year >= 0 && t->year <= 9999, "year");
		if (t->year > 0)
			Check(t->day <= MaillogDaysInMonth(t->year, t->month), "day of month");
		Check(t->offset_sec > -86400 && t->offset_sec < 86400, "offset");
		Check(rec.pid >= -1, "pid");
		Check(rec.host.ptr != NULL && rec.host.len > 0, "host");
		Check(rec.program.ptr != NULL && rec.program.len > 0, "program");
	}
	if (kind == MAILLOG_EVENT)
	{
		Check(rec.queue_id.ptr != NULL && rec.queue_id.len >= 3, "queue id");
		Check(rec.status.ptr != NULL && rec.status.len > 0, "status");
		Check(rec.recipient.ptr != NULL ||
			  (rec.status.len == 7 && memcmp(rec.status.ptr, "expired", 7) == 0),
			  "event without recipient");
	}
	if (rec.has_delay)
		Check(rec.delay >= 0.0 && rec.delay < 1e16, "delay");

	CheckField(&rec.host, line, size, "host field");
	CheckField(&rec.program, line, size, "program field");
	CheckField(&rec.queue_id, line, size, "queue_id field");
	CheckField(&rec.recipient, line, size, "recipient field");
	CheckField(&rec.orig_recipient, line, size, "orig_recipient field");
	CheckField(&rec.sender, line, size, "sender field");
	CheckField(&rec.relay, line, size, "relay field");
	CheckField(&rec.dsn, line, size, "dsn field");
	CheckField(&rec.status, line, size, "status field");
	CheckField(&rec.reason, line, size, "reason field");

	free(line);
	return 0;
}
