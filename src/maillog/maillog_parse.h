/*-------------------------------------------------------------------------
 *
 * maillog_parse.h
 *	  A parser of Postfix mail.log lines in plain C, with no PostgreSQL
 *	  dependency (so that it can be fuzzed on its own).
 *
 * A line is given as a pointer and a length, without its newline and not
 * NUL-terminated.  The parser never reads outside [line, line + len) and
 * never allocates: every string field of the result points into the line.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MAILLOG_PARSE_H
#define MAILLOG_PARSE_H

#include <stddef.h>

/* What a line turned out to be. */
typedef enum MaillogLineKind
{
	MAILLOG_UNPARSED = 0,		/* not a syslog line we understand */
	MAILLOG_OTHER,				/* a well-formed line that is no delivery status */
	MAILLOG_EVENT				/* a delivery-status or qmgr expiry line */
} MaillogLineKind;

/* A slice of the line; ptr is NULL when the field is absent. */
typedef struct MaillogField
{
	const char *ptr;
	size_t		len;
} MaillogField;

/*
 * The timestamp as written.  Traditional syslog timestamps have no year
 * (year == 0) and no offset (has_offset == 0): the caller infers both.
 */
typedef struct MaillogTime
{
	int			year;			/* 0 when the line has none */
	int			month;			/* 1..12 */
	int			day;			/* 1..31 */
	int			hour;
	int			minute;
	int			second;			/* 0..60 */
	int			usec;			/* fraction, in microseconds */
	int			has_offset;		/* an RFC 3339 offset or Z was given */
	int			offset_sec;		/* seconds east of UTC */
} MaillogTime;

typedef struct MaillogRecord
{
	MaillogTime ts;
	MaillogField host;
	MaillogField program;		/* e.g. postfix/smtp, postfix-out/lmtp */
	long		pid;			/* -1 when the line has none */
	MaillogField queue_id;
	MaillogField recipient;		/* to=<...>, without the brackets */
	MaillogField orig_recipient;	/* orig_to=<...> */
	MaillogField sender;		/* from=<...> (qmgr expiry lines) */
	MaillogField relay;
	int			has_delay;
	double		delay;
	MaillogField dsn;
	MaillogField status;		/* sent, bounced, deferred, expired, ... */
	MaillogField reason;		/* the parenthesised text after the status */
} MaillogRecord;

/* Parses one line (without its newline) into *rec. */
extern MaillogLineKind MaillogParseLine(const char *line, size_t len,
										MaillogRecord *rec);

/* Days in a month of a (proleptic Gregorian) year. */
extern int	MaillogDaysInMonth(int year, int month);

#endif							/* MAILLOG_PARSE_H */
