/*-------------------------------------------------------------------------
 *
 * mx.h
 *	  Declarations of the MX tagging subsystem, one section per file:
 *
 *	  resolver.c	the asynchronous c-ares resolver and its GUCs
 *	  lookup.c		looking up a batch of domains (MX, then A and AAAA), and
 *					one domain's MX records
 *	  dns_process.c	the separate resolver process of a tagging run
 *	  classify.c	the suffix rules from pw.mx_suffix_rules and the SQL
 *					classifier (the pure classifier is classify_core.c)
 *	  mx_tag.c		the tagging run and its GUCs
 *	  mx_write.c	the tagging run's writes to pw.mx_domains and the carriers
 *	  mx_sql.c		pw.mx_tag() and pw.resolve_mx()
 *	  progress.c	the progress of running tagging runs (pw.mx_tag_progress)
 *	  worker.c		the background MX tagger
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_MX_H
#define PW_MX_H

#include "postgres.h"

#include "classify_core.h"
#include "common/pw_common.h"
#include "utils/palloc.h"

/* resolver.c */

/*
 * An asynchronous resolver: a c-ares channel driven by a WaitEventSet over
 * its sockets, the latch and postmaster death, in its own memory context.
 */
typedef struct MxResolver MxResolver;

/* Called with a finished query's answer (abuf NULL unless status is success) */
typedef void (*MxDnsCallback) (void *arg, int status, unsigned char *abuf, int alen);

extern MxResolver *MxResolverCreate(MemoryContext parent);
extern void MxResolverDestroy(MxResolver *res);
extern bool MxResolverCanSend(MxResolver *res);
extern bool MxResolverIdle(MxResolver *res);
extern void MxResolverQuery(MxResolver *res, const char *name, int type,
							MxDnsCallback cb, void *arg);
extern void MxResolverStep(MxResolver *res, bool want_send);
extern const char *MxDnsStatusText(int status);
extern int	MxResolverTimeoutRetries(void);

/* lookup.c */

/* Where a domain's lookup stands */
typedef enum MxJobStep
{
	MX_STEP_MX,
	MX_STEP_A,
	MX_STEP_AAAA,
	MX_STEP_DONE
} MxJobStep;

/* Outcomes, as stored in pw.mx_domains.outcome */
#define MX_OUTCOME_MX			"mx"
#define MX_OUTCOME_ADDRESS		"address"
#define MX_OUTCOME_NULL_MX		"null_mx"
#define MX_OUTCOME_NXDOMAIN		"nxdomain"
#define MX_OUTCOME_NO_RECORDS	"no_records"
#define MX_OUTCOME_INVALID		"invalid"
#define MX_OUTCOME_FAILED		"failed"

/* The label of domains that cannot receive mail */
#define MX_LABEL_NONE			"none"

/* One domain of a batch */
typedef struct MxDomainJob
{
	char	   *domain;			/* the cache key: pw.email_domain() form */
	char	   *old_label;		/* its label before this lookup, or NULL */
	Datum		tids;			/* tid[] of its untagged carriers, or 0 */
	bool		cached;			/* in pw.mx_domains already */
	char		qname[MX_NAME_BUF]; /* normalised name sent to DNS */
	MxJobStep	step;
	int			timeouts;		/* its queries that timed out so far */
	const char *outcome;
	char	   *label;
	char	   *hosts;			/* exchanges in preference order, ' '-joined */
	const char *error;
} MxDomainJob;

/* One MX record of a domain */
typedef struct MxExchange
{
	int			preference;
	char	   *host;			/* "." for a null MX */
} MxExchange;

extern void MxLookupDomains(MxResolver *res, MemoryContext cxt,
							const MxSuffixRule *rules, size_t nrules,
							MxDomainJob *jobs, int njobs);
extern int	MxLookupExchanges(const char *qname, MxExchange **exchanges);

/* dns_process.c */
typedef struct MxDnsProcess MxDnsProcess;

extern MxDnsProcess *MxDnsProcessStart(const MxSuffixRule *rules, size_t nrules,
									   int batch_size);
extern void MxDnsProcessSubmit(MxDnsProcess *proc, MxDomainJob *jobs, int njobs);
extern void MxDnsProcessCollect(MxDnsProcess *proc, MxDomainJob *jobs, int njobs,
								MemoryContext cxt);
extern void MxDnsProcessStop(MxDnsProcess *proc);

/* classify.c */
extern void MxSuffixRulesLoad(MemoryContext cxt, MxSuffixRule **rules,
							  size_t *nrules);
extern MxDomainStatus MxDomainNormalizeDb(const char *name, size_t len, char *out);

/* mx_tag.c */

/* Counts of one tagging run */
typedef struct MxTagCounts
{
	int64		looked_up;
	int64		tagged;
	int64		none;
	int64		invalid;
	int64		failed;
	int64		carriers;
	double		seconds;
} MxTagCounts;

extern void MxTagRun(int max_domains, bool background, MxTagCounts *counts);
extern bool MxTagInstalled(void);

/* progress.c */

/* The phases of a tagging run, as pw.mx_tag_progress shows them */
typedef enum MxTagPhase
{
	MX_PHASE_LOCK,
	MX_PHASE_LOOKUP,
	MX_PHASE_WRITE,
	MX_PHASE_CACHED_LABELS
} MxTagPhase;

/* The counts of a running tagging run */
typedef struct MxTagProgress
{
	int64		fetched;		/* domains read from the discovery query */
	int64		looked_up;		/* ... whose lookup is done */
	int64		tagged;			/* ... written with an operator label */
	int64		none;			/* ... written with label none */
	int64		failed;			/* ... written failed */
	int64		written;		/* ... written to pw.mx_domains */
	int64		carriers;		/* carriers labelled */
	int64		batches;		/* batches written */
} MxTagProgress;

extern void MxProgressStart(int max_domains, bool background);
extern void MxProgressReport(MxTagPhase phase, const MxTagProgress *counts);
extern void MxProgressEnd(void);

/* mx_write.c */

/* The prepared batch statements of one tagging run */
typedef struct MxWritePlans MxWritePlans;

extern uint64 MxWriteCachedLabels(const PwCarriers *carriers);
extern MxWritePlans *MxWritePlansPrepare(const PwCarriers *carriers,
										 int recheck_after, int retry_after);
extern void MxWriteBatch(MxWritePlans *plans, MxDomainJob *jobs, int njobs,
						 MxTagCounts *counts);
extern void MxWritePlansFree(MxWritePlans *plans);

#endif							/* PW_MX_H */
