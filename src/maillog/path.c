/*-------------------------------------------------------------------------
 *
 * path.c
 *	  Which mail logs may be read: the pw_deliverability.maillog_directory
 *	  setting, paths resolved (symbolic links, "..") and kept inside it, and
 *	  the files opened for reading.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/parallel.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "fmgr.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "maillog.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_maillog_directory_problem);

static char *maillog_directory = NULL;

/* What is wrong with dir as the mail-log directory, or NULL. */
static const char *
MaillogDirectoryProblem(const char *dir)
{
	struct stat sb;

	if (stat(dir, &sb) != 0)
		return errno == ENOENT || errno == ENOTDIR ? "does not exist" :
			"cannot be examined by the server";
	if (!S_ISDIR(sb.st_mode))
		return "is not a directory";
	if (access(dir, R_OK | X_OK) != 0)
		return "cannot be read by the server";
	return NULL;
}

/*
 * pw.maillog_directory_problem(): what is wrong with the configured mail-log
 * directory ("is not set", "does not exist", ...), NULL when it is readable.
 */
Datum
pw_maillog_directory_problem(PG_FUNCTION_ARGS)
{
	const char *problem;

	if (maillog_directory == NULL || maillog_directory[0] == '\0')
		PG_RETURN_TEXT_P(cstring_to_text("is not set"));
	problem = MaillogDirectoryProblem(maillog_directory);
	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}

/*
 * Check hook of maillog_directory: any value is accepted (the directory may
 * be created later), but one that does not exist or that the server cannot
 * read is reported: a WARNING to whoever sets it (SET, ALTER SYSTEM), a LOG
 * line when the postmaster reads the configuration (start, reload), nothing
 * from the backends re-reading the file on a reload or applying a role's or
 * database's settings at connection.
 */
static bool
CheckMaillogDirectory(char **newval, void **extra, GucSource source)
{
	const char *dir = *newval;
	int			elevel;
	const char *problem;

	if (dir == NULL || dir[0] == '\0')
		return true;
	if (!IsUnderPostmaster)
		elevel = LOG;
	else if (IsParallelWorker() || !IsTransactionState() ||
			 (source < PGC_S_INTERACTIVE && source != PGC_S_FILE))
		return true;
	else
		elevel = WARNING;

	problem = MaillogDirectoryProblem(dir);
	if (problem != NULL)
		ereport(elevel,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("%s.maillog_directory \"%s\" %s", PW_GUC_PREFIX, dir, problem),
				 errdetail("Reading mail logs fails until the directory exists and the server's operating system user can read and search it."),
				 errhint("Create the directory or grant the server's user read and execute permission on it.")));
	return true;
}

/* Registers the pw_deliverability.maillog_directory GUC. */
void
MaillogInit(void)
{
	DefineCustomStringVariable(PW_GUC_PREFIX ".maillog_directory",
							   "Names the directory whose files pw.read_maillog() and pw.ingest_maillog() may read.",
							   "Empty disables reading mail logs.  Paths are resolved "
							   "(symbolic links, \"..\") and must stay inside it.",
							   &maillog_directory,
							   "",
							   PGC_SUSET,
							   0,
							   CheckMaillogDirectory, NULL, NULL);
}

/* Whether path lies strictly below directory dir (both canonical). */
static bool
PathInside(const char *path, const char *dir)
{
	size_t		dirlen = strlen(dir);

	if (dirlen == 1 && dir[0] == '/')
		return path[0] == '/' && path[1] != '\0';
	return strncmp(path, dir, dirlen) == 0 && path[dirlen] == '/' &&
		path[dirlen + 1] != '\0';
}

/* Refuses a path outside pw_deliverability.maillog_directory. */
static void
OutsideError(const char *path)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("mail log \"%s\" is outside %s.maillog_directory", path, PW_GUC_PREFIX),
			 errhint("Only files inside the directory named by %s.maillog_directory can be read; \"..\" and symbolic links leading out of it are refused.",
					 PW_GUC_PREFIX)));
}

/*
 * Opens a mail log (already resolved, never through a symbolic link) for
 * reading as a transient file and fills *sb from the open descriptor; errors
 * name the file.  The open never blocks: it is non-blocking, so a FIFO (or
 * a device) planted in the directory is refused instead of waiting for a
 * writer, and anything but a regular file is refused before it is read, as
 * is a file with more than one hard link.
 */
int
MaillogOpen(const char *canon, struct stat *sb)
{
	int			fd = OpenTransientFile(canon, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | PG_BINARY);
	int			flags;

	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open mail log \"%s\": %m", canon)));
	if (fstat(fd, sb) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat mail log \"%s\": %m", canon)));
	if (!S_ISREG(sb->st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("mail log \"%s\" is not a regular file", canon)));
	/* another link could lead out of the directory, or ingest it twice */
	if (sb->st_nlink != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("mail log \"%s\" has %lu hard links", canon,
						(unsigned long) sb->st_nlink),
				 errdetail("A file with more than one link may be a file outside %s.maillog_directory, or a log that would be read twice under two names.",
						   PW_GUC_PREFIX),
				 errhint("Remove the other links; rotate logs by renaming them.")));
	/* reads of a regular file then block as usual */
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not set mail log \"%s\" to blocking reads: %m", canon)));
	return fd;
}

/*
 * Resolves a mail log path and checks that it lies inside
 * pw_deliverability.maillog_directory; relative paths are taken relative to
 * that directory.  Returns the canonical path, palloc'd.
 */
char *
MaillogResolvePath(const char *path)
{
	char	   *dir;
	char	   *full;
	char	   *canon;
	char	   *resolved;
	if (maillog_directory == NULL || maillog_directory[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("reading mail logs is disabled"),
				 errhint("A superuser sets %s.maillog_directory to the directory holding the mail logs.",
						 PW_GUC_PREFIX)));
	if (path == NULL || path[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mail log path must not be empty")));

	resolved = realpath(maillog_directory, NULL);
	if (resolved == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not resolve %s.maillog_directory \"%s\": %m",
						PW_GUC_PREFIX, maillog_directory)));
	dir = pstrdup(resolved);
	free(resolved);

	if (is_absolute_path(path))
		full = pstrdup(path);
	else
		full = psprintf("%s/%s", dir, path);

	resolved = realpath(full, NULL);
	if (resolved == NULL)
	{
		int			save_errno = errno;
		char	   *lexical = pstrdup(full);
		char	   *confdir = pstrdup(maillog_directory);

		/* say nothing about the existence of files outside the directory */
		canonicalize_path(lexical);
		canonicalize_path(confdir);
		if (!PathInside(lexical, dir) && !PathInside(lexical, confdir))
			OutsideError(path);
		errno = save_errno;
		if (errno == ENOENT || errno == ENOTDIR)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("mail log \"%s\" does not exist", path)));
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not resolve mail log path \"%s\": %m", path)));
	}
	canon = pstrdup(resolved);
	free(resolved);

	if (!PathInside(canon, dir))
		OutsideError(path);
	pfree(full);
	pfree(dir);
	return canon;
}
