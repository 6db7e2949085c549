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

/* GUC prefix shared by every module */
#define PW_GUC_PREFIX "pw_deliverability"

/* The extension's schema (not relocatable) */
#define PW_SCHEMA "pw"

/* A hint to the CPU to fetch the memory at p (PostgreSQL 15 has none) */
#if defined(__GNUC__) || defined(__clang__)
#define PwPrefetch(p) __builtin_prefetch(p)
#else
#define PwPrefetch(p) ((void) (p))
#endif

/* Module initialisation, called by _PG_init() */
extern void PwCarriersInit(void);
extern void PwTokenInit(void);
extern void PwRunsInit(void);
extern void PwLifecycleInit(void);
extern void PwProgressInit(void);

/* mx/ */
extern void MxResolverInit(void);
extern void MxTagInit(void);
extern void MxWorkerInit(void);

/* select/ */
extern void SelInit(void);

/* verdict/ */
extern void VerdictInit(void);

/* maillog/ */
extern void MaillogInit(void);

#endif							/* PW_DELIVERABILITY_H */
