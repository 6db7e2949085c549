/*-------------------------------------------------------------------------
 *
 * pw_common.h
 *	  Helpers every subsystem uses: the carriers contract, e-mail
 *	  normalisation, the safe search_path and the jobs' first locks.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_COMMON_H
#define PW_COMMON_H

#include "postgres.h"

#include "lib/stringinfo.h"

/*
 * The user's carriers relation and the columns the extension works on, as
 * configured in pw.carriers_config and checked against the catalog.  Names
 * are already quoted for use in SQL text.
 */
typedef struct PwCarriers
{
	Oid			relid;
	char	   *relation;		/* schema-qualified, quoted */
	char	   *id_col;
	char	   *email_col;
	char	   *result_col;
	char	   *mx_col;
} PwCarriers;

/* carriers.c */
extern void PwCarriersLoad(PwCarriers *carriers);
extern char *PwCarriersCheckColumn(PwCarriers *carriers, const char *column,
								   const char *role, Oid wanted_type);

/* email.c */
extern char *PwNormalizeEmail(const char *email, size_t len, Oid collid);
extern bool PwNormalizeEmailInto(StringInfo buf, const char *email, size_t len,
								 Oid collid);
extern char *PwEmailDomain(const char *email, size_t len, Oid collid);

/* search_path.c */
extern int	PwSafeSearchPath(void);

/* locks.c */
extern bool PwLockExtension(bool missing_ok);
extern void PwLockCarriersWrites(const PwCarriers *carriers);

#endif							/* PW_COMMON_H */
