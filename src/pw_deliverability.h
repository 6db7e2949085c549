/*-------------------------------------------------------------------------
 *
 * pw_deliverability.h
 *	  Shared declarations of the pw_deliverability extension.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_DELIVERABILITY_H
#define PW_DELIVERABILITY_H

#include "postgres.h"

#include "lib/stringinfo.h"

/* GUC prefix shared by every module */
#define PW_GUC_PREFIX "pw_deliverability"

/* A hint to the CPU to fetch the memory at p (PostgreSQL 15 has none) */
#if defined(__GNUC__) || defined(__clang__)
#define PwPrefetch(p) __builtin_prefetch(p)
#else
#define PwPrefetch(p) ((void) (p))
#endif

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
extern void CarriersInit(void);

/* email.c */
extern char *PwNormalizeEmail(const char *email, size_t len, Oid collid);
extern bool PwNormalizeEmailInto(StringInfo buf, const char *email, size_t len,
								 Oid collid);
extern char *PwEmailDomain(const char *email, size_t len, Oid collid);

/* search_path.c */
extern int	PwSafeSearchPath(void);

/* resolver.c, mx_tag.c, worker.c */
extern void ResolverInit(void);
extern void MxTagInit(void);
extern void WorkerInit(void);

/* select.c */
extern void SelectInit(void);

/* maillog.c */
extern void MaillogInit(void);

#endif							/* PW_DELIVERABILITY_H */
