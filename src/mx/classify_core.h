/*-------------------------------------------------------------------------
 *
 * classify_core.h
 *	  Domain-name validation and MX host classification in plain C (no
 *	  PostgreSQL dependency), so that they can be fuzzed on their own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_CLASSIFY_CORE_H
#define PW_CLASSIFY_CORE_H

#include <stddef.h>

/* Longest domain name in presentation form, without the trailing dot */
#define MX_DOMAIN_MAX 253
/* Buffer size for a normalised name or a label ("mx:" + name + NUL) */
#define MX_NAME_BUF 260
/* Longest input MxDomainNormalize() accepts before normalisation (bytes) */
#define PW_INPUT_MAX 1024

/* Results of MxDomainNormalize() */
typedef enum MxDomainStatus
{
	MX_DOMAIN_OK = 0,
	MX_DOMAIN_EMPTY,
	MX_DOMAIN_TOO_LONG,
	MX_DOMAIN_EMPTY_LABEL,
	MX_DOMAIN_LABEL_TOO_LONG,
	MX_DOMAIN_BAD_CHAR,
	MX_DOMAIN_BAD_HYPHEN,
	MX_DOMAIN_SINGLE_LABEL,
	MX_DOMAIN_NUMERIC_TLD,
	MX_DOMAIN_BAD_UTF8,
	MX_DOMAIN_BAD_IDN,			/* IDNA2008 refuses it (libidn2) */
	MX_DOMAIN_NOT_UNICODE,		/* not convertible from the database encoding */
	MX_DOMAIN_NO_MEMORY			/* libidn2 could not allocate */
} MxDomainStatus;

/* One MX host suffix rule: a host equal to or under suffix gets label */
typedef struct MxSuffixRule
{
	const char *suffix;
	const char *label;
} MxSuffixRule;

extern MxDomainStatus MxDomainNormalize(const char *in, size_t len,
										char *out);
extern const char *MxDomainStatusText(MxDomainStatus status);
extern void MxSuffixRulesSort(MxSuffixRule *rules, size_t n);
extern const char *MxSuffixMatch(const MxSuffixRule *rules, size_t n,
								 const char *host);
extern const char *MxRegistrableDomain(const char *host);
extern void MxClassifyHost(const MxSuffixRule *rules, size_t n,
						   const char *host, char *out);
extern int	MxClassifyExchanges(const MxSuffixRule *rules, size_t n,
								const char *const *hosts, const size_t *lens,
								size_t nhosts, char *out);

#endif							/* PW_CLASSIFY_CORE_H */
