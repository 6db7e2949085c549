/*-------------------------------------------------------------------------
 *
 * pw_common.h
 *	  Helpers every subsystem uses: the carriers contract, e-mail
 *	  normalisation and the safe search_path.
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

/*
 * Longest address stored (octets): RFC 5321's 256-octet path less its angle
 * brackets.  Longer ones are bad input (and could exceed an index row).
 */
#define PW_EMAIL_MAX_LEN 254

/* email.c */
extern char *PwNormalizeEmail(const char *email, size_t len, Oid collid);
extern bool PwNormalizeEmailInto(StringInfo buf, const char *email, size_t len,
								 Oid collid);
extern char *PwEmailDomain(const char *email, size_t len, Oid collid);

/* search_path.c */
extern int	PwSafeSearchPath(void);

#endif							/* PW_COMMON_H */
