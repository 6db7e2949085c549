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

#include "access/attnum.h"
#include "lib/stringinfo.h"

/* A column of the carriers relation as the catalog has it. */
typedef struct PwCarrierColumn
{
	AttrNumber	attnum;
	Oid			type;
	Oid			collation;		/* InvalidOid for a type without one */
} PwCarrierColumn;

/*
 * The user's carriers relation and the columns the extension works on, as
 * configured in pw.carriers_config and checked against the catalog, resolved
 * once: names already quoted for use in SQL text, and each column's number,
 * type and collation.
 */
typedef struct PwCarriers
{
	Oid			relid;
	char	   *relation;		/* schema-qualified, quoted */
	char	   *id_col;
	char	   *email_col;
	char	   *result_col;
	char	   *mx_col;
	PwCarrierColumn id_att;
	PwCarrierColumn email_att;
	PwCarrierColumn result_att;
	PwCarrierColumn mx_att;
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

/* locks.c */
extern bool PwLockExtension(bool missing_ok);
extern void PwLockCarriersWrites(const PwCarriers *carriers);
struct LOCKTAG;
extern void PwLockAcquireSaying(const struct LOCKTAG *tag, int mode, const char *what);
extern void PwLockNamedAdvisory(const char *name, const char *what);

#endif							/* PW_COMMON_H */
