/*-------------------------------------------------------------------------
 *
 * file_state.c
 *	  Where pw.ingest_maillog() reads: the file position (device, inode,
 *	  offset) and the bytes before it (tail) kept in pw.maillog_files, the
 *	  file recognised by them, or found rotated to path.1, and the position
 *	  advanced in the same transaction as the writeback.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "storage/fd.h"
#include "utils/builtins.h"

#include "common/spi.h"
#include "ingest_int.h"

/* Bytes before the stored offset kept to recognise the file (tail column) */
#define TAIL_BYTES 256

/* Result columns of the stored state of a file */
#define STATE_DEV 1
#define STATE_INODE 2
#define STATE_OFFSET 3
#define STATE_TAIL 4

/* The stored state of a file: where the last ingest of it stopped */
typedef struct FileState
{
	bool		known;			/* false: never ingested */
	int64		dev;
	int64		inode;
	int64		offset;
	bytea	   *tail;			/* NULL when none was stored */
} FileState;

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

/*
 * Reads the stored state of a file, its row created if missing and locked
 * against concurrent ingestion of the file.
 */
static void
LockFileState(const char *canon, FileState *state)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(canon)};

	memset(state, 0, sizeof(*state));
	PwSpiExecute("INSERT INTO pw.maillog_files (path, dev, inode) VALUES ($1, -1, -1)"
				 " ON CONFLICT (path) DO NOTHING", 1, types, args, NULL, false,
				 SPI_OK_INSERT);
	if (PwSpiExecute("SELECT dev, inode, \"offset\", tail FROM pw.maillog_files"
					 " WHERE path = $1 FOR UPDATE", 1, types, args, NULL, false,
					 SPI_OK_SELECT) != 1)
		return;
	state->dev = PwSpiGetInt64(0, STATE_DEV);
	state->inode = PwSpiGetInt64(0, STATE_INODE);
	state->offset = PwSpiGetInt64(0, STATE_OFFSET);
	if (!PwSpiIsNull(0, STATE_TAIL))
	{
		bool		isnull;

		/* copied out of SPI's memory: it outlives the next statements */
		state->tail = DatumGetByteaPCopy(PwSpiGetDatum(0, STATE_TAIL, BYTEAOID, &isnull));
	}
	state->known = !(state->dev == -1 && state->inode == -1);
}

/* Whether the file statted as *sb is still the one of the stored state. */
static bool
SameFile(const char *path, const struct stat *sb, const FileState *state)
{
	return (int64) sb->st_dev == state->dev && (int64) sb->st_ino == state->inode &&
		(int64) sb->st_size >= state->offset &&
		TailMatches(path, state->offset, (uint64) sb->st_dev, (uint64) sb->st_ino,
					state->tail);
}

/*
 * The file was rotated (or truncated): the segment finishing the old file
 * if it is path.1 (true), or a warning that lines were lost (false).
 */
static bool
RotatedSegment(const char *canon, const FileState *state, MaillogSegment *seg)
{
	char	   *rotated = psprintf("%s.1", canon);
	struct stat rsb;

	if (StatPath(rotated, &rsb) && SameFile(rotated, &rsb, state))
	{
		*seg = (MaillogSegment) {MaillogResolvePath(rotated), state->offset,
			(uint64) rsb.st_dev, (uint64) rsb.st_ino};
		return true;
	}
	ereport(WARNING,
			(errmsg("mail log \"%s\" was rotated or truncated and the old file is not \"%s\"",
					canon, rotated),
			 errdetail("Lines written to the old file after offset " INT64_FORMAT " were not ingested, nor any file rotated out between the two calls.",
					   state->offset),
			 errhint("Ingest more often than the log rotates; rotation must rename the file, not copy and truncate it.")));
	return false;
}

/*
 * Locks the state of a log and plans what to read: the rest of the same
 * file, or the rest of the rotated file (path.1) and the new file from its
 * start.  Fills segs (room for 2) and *sb (the file at canon); returns the
 * number of segments.
 */
int
MaillogFileStatePlan(const char *canon, MaillogSegment *segs, struct stat *sb)
{
	FileState	state;
	int			nsegs = 0;

	LockFileState(canon, &state);
	if (!StatPath(canon, sb))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("mail log \"%s\" does not exist", canon)));
	if (!S_ISREG(sb->st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("mail log \"%s\" is not a regular file", canon)));

	if (state.known && SameFile(canon, sb, &state))
	{
		/* the same file, grown or not */
		segs[nsegs++] = (MaillogSegment) {(char *) canon, state.offset,
			(uint64) sb->st_dev, (uint64) sb->st_ino};
		return nsegs;
	}
	if (state.known && RotatedSegment(canon, &state, &segs[nsegs]))
		nsegs++;
	segs[nsegs++] = (MaillogSegment) {(char *) canon, 0, (uint64) sb->st_dev, (uint64) sb->st_ino};
	return nsegs;
}

/*
 * Advances the stored state of a log to where this ingest stopped, with
 * the bytes before the new offset to recognise the file next time.
 */
void
MaillogFileStateSave(const char *canon, const struct stat *sb,
					 const MaillogIngestCounts *counts)
{
	bytea	   *new_tail = ReadTail(canon, counts->end_offset, (uint64) sb->st_dev,
									(uint64) sb->st_ino);
	Oid			types[5] = {TEXTOID, INT8OID, INT8OID, INT8OID, BYTEAOID};
	Datum		args[5];
	char		argn[6] = "     ";

	args[0] = CStringGetTextDatum(canon);
	args[1] = Int64GetDatum((int64) sb->st_dev);
	args[2] = Int64GetDatum((int64) sb->st_ino);
	args[3] = Int64GetDatum(counts->end_offset);
	args[4] = new_tail ? PointerGetDatum(new_tail) : (Datum) 0;
	if (new_tail == NULL)
		argn[4] = 'n';
	PwSpiExecute(psprintf("UPDATE pw.maillog_files SET dev = $2, inode = $3, \"offset\" = $4, tail = $5,"
						  " lines = lines + " INT64_FORMAT ", events = events + " INT64_FORMAT ","
						  " unparsed = unparsed + " INT64_FORMAT ", overlong = overlong + " INT64_FORMAT ","
						  " updated_at = now() WHERE path = $1",
						  counts->lines, counts->events, counts->unparsed, counts->overlong),
				 5, types, args, argn, false, SPI_OK_UPDATE);
}
