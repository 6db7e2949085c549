/*-------------------------------------------------------------------------
 *
 * maillog.h
 *	  Reading Postfix mail logs from inside the server: the subsystem header.
 *	  path.c says which files may be read and opens them, reader.c reads
 *	  them (pw.read_maillog()), parsed by maillog_parse.c; ingest.c and the
 *	  files of ingest_int.h apply them to the carriers (pw.ingest_maillog()),
 *	  confirm.c confirms the deliveries (pw.confirm_deliveries()).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_MAILLOG_H
#define PW_MAILLOG_H

#include <sys/stat.h>

#include "postgres.h"

#include "datatype/timestamp.h"
#include "maillog_parse.h"

/* What one read of a mail log saw. */
typedef struct MaillogReadStats
{
	char	   *path;			/* canonical path read */
	int64		start_offset;
	int64		end_offset;		/* just after the last complete line */
	int64		lines;			/* complete lines read */
	int64		events;			/* rows returned */
	int64		other;			/* well-formed lines without a delivery status */
	int64		unparsed;		/* lines the parser could not read */
	int64		overlong;		/* lines longer than the limit, skipped */
	uint64		dev;			/* device and inode of the file read */
	uint64		inode;
} MaillogReadStats;

/* Longest line read; longer ones are skipped and counted. */
#define MAILLOG_MAX_LINE (64 * 1024)

/* Called with every event line read, its time and its byte offset. */
typedef void (*MaillogEventSink) (void *arg, const MaillogRecord *rec,
								  TimestampTz when, int64 line_offset);

/* path.c */
extern char *MaillogResolvePath(const char *path);
extern int	MaillogOpen(const char *canon, struct stat *sb);

/* reader.c */
extern const MaillogReadStats *MaillogLastRead(void);
extern void MaillogReadEvents(const char *canon, int64 start_offset,
							  MaillogEventSink sink, void *arg,
							  MaillogReadStats *st);

#endif							/* PW_MAILLOG_H */
