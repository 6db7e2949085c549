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
#define PW_DOMAIN_MAX 253
/* Buffer size for a normalised name or a label ("mx:" + name + NUL) */
#define PW_NAME_BUF 260
/* Longest input PwDomainNormalize() accepts before normalisation (bytes) */
#define PW_INPUT_MAX 1024

/* Results of PwDomainNormalize() */
typedef enum PwDomainStatus
{
	PW_DOMAIN_OK = 0,
	PW_DOMAIN_EMPTY,
	PW_DOMAIN_TOO_LONG,
	PW_DOMAIN_EMPTY_LABEL,
	PW_DOMAIN_LABEL_TOO_LONG,
	PW_DOMAIN_BAD_CHAR,
	PW_DOMAIN_BAD_HYPHEN,
	PW_DOMAIN_SINGLE_LABEL,
	PW_DOMAIN_NUMERIC_TLD,
	PW_DOMAIN_BAD_UTF8,
	PW_DOMAIN_BAD_IDN,			/* IDNA2008 refuses it (libidn2) */
	PW_DOMAIN_NOT_UNICODE,		/* not convertible from the database encoding */
	PW_DOMAIN_NO_MEMORY			/* libidn2 could not allocate */
} PwDomainStatus;

/* One MX host suffix rule: a host equal to or under suffix gets label */
typedef struct PwSuffixRule
{
	const char *suffix;
	const char *label;
} PwSuffixRule;

extern PwDomainStatus PwDomainNormalize(const char *in, size_t len,
										char *out);
extern const char *PwDomainStatusText(PwDomainStatus status);
extern void PwSuffixRulesSort(PwSuffixRule *rules, size_t n);
extern const char *PwSuffixMatch(const PwSuffixRule *rules, size_t n,
								 const char *host);
extern const char *PwRegistrableDomain(const char *host);
extern void PwClassifyHost(const PwSuffixRule *rules, size_t n,
						   const char *host, char *out);
extern int	PwClassifyExchanges(const PwSuffixRule *rules, size_t n,
								const char *const *hosts, const size_t *lens,
								size_t nhosts, char *out);

#endif							/* PW_CLASSIFY_CORE_H */
