/*-------------------------------------------------------------------------
 *
 * mx.h
 *	  Internal declarations of MX tagging: the asynchronous resolver, the
 *	  suffix-rule loader and the tagging run shared by SQL and the worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_MX_H
#define PW_MX_H

#include "postgres.h"

#include <ares.h>

#include "classify_core.h"
#include "storage/latch.h"
#include "utils/palloc.h"
#include "utils/timestamp.h"

/* GUCs of the resolver (resolver.c) */
extern char *pw_dns_servers;
extern int	pw_dns_concurrency;
extern int	pw_dns_timeout_ms;
extern int	pw_dns_tries;
extern int	pw_dns_max_qps;

/* GUCs of tagging (mx_tag.c) */
extern int	pw_recheck_after;
extern int	pw_retry_after;
extern int	pw_tag_batch_size;
extern bool pw_dns_process;

/* One socket c-ares asked us to watch */
typedef struct PwDnsSocket
{
	ares_socket_t fd;
	bool		readable;
	bool		writable;
} PwDnsSocket;

/*
 * An asynchronous resolver: a c-ares channel driven by a WaitEventSet over
 * its sockets, the latch and postmaster death.  Lives in its own memory
 * context; deleting that context (also on error) destroys the channel and
 * frees the wait set.
 */
typedef struct PwResolver
{
	MemoryContext cxt;
	ares_channel channel;
	bool		have_channel;
	bool		destroying;		/* callbacks must do nothing */
	WaitEventSet *wes;
	bool		wes_dirty;
	int			nsocks;
	int			maxsocks;
	PwDnsSocket *socks;
	int			inflight;
	int			concurrency;
	int			max_qps;
	double		tokens;
	TimestampTz last_refill;
	uint64		sent;
} PwResolver;

/* Called with a finished query's answer (abuf NULL unless status is success) */
typedef void (*PwDnsCallback) (void *arg, int status, unsigned char *abuf, int alen);

/* resolver.c */
extern PwResolver *PwResolverCreate(MemoryContext parent);
extern void PwResolverDestroy(PwResolver *res);
extern bool PwResolverCanSend(PwResolver *res);
extern void PwResolverQuery(PwResolver *res, const char *name, int type,
							PwDnsCallback cb, void *arg);
extern void PwResolverStep(PwResolver *res, bool want_send);
extern const char *PwDnsStatusText(int status);

/* Where a domain's lookup stands */
typedef enum PwJobStep
{
	PW_STEP_MX,
	PW_STEP_A,
	PW_STEP_AAAA,
	PW_STEP_DONE
} PwJobStep;

/* Outcomes, as stored in pw.mx_domains.outcome */
#define PW_OUT_MX			"mx"
#define PW_OUT_ADDRESS		"address"
#define PW_OUT_NULL_MX		"null_mx"
#define PW_OUT_NXDOMAIN		"nxdomain"
#define PW_OUT_NO_RECORDS	"no_records"
#define PW_OUT_INVALID		"invalid"
#define PW_OUT_FAILED		"failed"

/* One domain of a batch */
typedef struct PwDomainJob
{
	char	   *domain;			/* the cache key: pw.email_domain() form */
	char	   *old_label;		/* its label before this lookup, or NULL */
	Datum		tids;			/* tid[] of its untagged carriers, or 0 */
	bool		cached;			/* in pw.mx_domains already */
	char		qname[PW_NAME_BUF]; /* normalised name sent to DNS */
	PwJobStep	step;
	const char *outcome;
	char	   *label;
	char	   *hosts;			/* exchanges in preference order, ' '-joined */
	const char *error;
} PwDomainJob;

/* lookup.c */
extern void PwLookupDomains(PwResolver *res, MemoryContext cxt,
							const PwSuffixRule *rules, size_t nrules,
							PwDomainJob *jobs, int njobs);
extern int	PwMxCmp(const void *a, const void *b);

/* dns_process.c */
typedef struct PwDnsProcess PwDnsProcess;
extern PwDnsProcess *PwDnsProcessStart(const PwSuffixRule *rules, size_t nrules,
									   int batch_size);
extern void PwDnsProcessSubmit(PwDnsProcess *proc, PwDomainJob *jobs, int njobs);
extern void PwDnsProcessCollect(PwDnsProcess *proc, PwDomainJob *jobs, int njobs,
								MemoryContext cxt);
extern void PwDnsProcessStop(PwDnsProcess *proc);

/* classify.c */
extern void PwSuffixRulesLoad(MemoryContext cxt, PwSuffixRule **rules,
							  size_t *nrules);
extern PwDomainStatus MxDomainNormalize(const char *name, size_t len, char *out);

/* Counts of one tagging run */
typedef struct PwMxTagCounts
{
	int64		looked_up;
	int64		tagged;
	int64		none;
	int64		invalid;
	int64		failed;
	int64		carriers;
	double		seconds;
} PwMxTagCounts;

/* mx_tag.c */
extern void PwMxTagRun(int max_domains, PwMxTagCounts *counts);
extern bool PwMxTagInstalled(void);

#endif							/* PW_MX_H */
