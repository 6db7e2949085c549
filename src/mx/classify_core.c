/*-------------------------------------------------------------------------
 *
 * classify_core.c
 *	  Domain-name validation (LDH labels; IDN labels to A-labels through
 *	  libidn2) and MX host classification: suffix rules first, else "mx:"
 *	  plus the host's registrable domain under the ICANN section of the
 *	  Public Suffix List.
 *
 *	  Plain C on purpose: no PostgreSQL headers, no allocation except the
 *	  process-wide libpsl context and libidn2's result while one name is
 *	  normalised, so a fuzzer can drive it directly.
 *
 *-------------------------------------------------------------------------
 */
#include "classify_core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <idn2.h>
#include <libpsl.h>

#ifndef PW_PSL_FILE
#define PW_PSL_FILE "/usr/share/publicsuffix/public_suffix_list.dat"
#endif

/* The process-wide Public Suffix List context (loaded on first use). */
static const psl_ctx_t *
PslContext(void)
{
	static const psl_ctx_t *ctx = NULL;
	static int	tried = 0;

	if (!tried)
	{
		tried = 1;
		ctx = psl_latest(PW_PSL_FILE);
		if (ctx == NULL)
			ctx = psl_builtin();
	}
	return ctx;
}

/* An ASCII letter in lower case, any other byte as it is (no locale). */
static unsigned char
AsciiLower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char) (c - 'A' + 'a') : c;
}

/* Whether c is a letter, digit or hyphen (ASCII, already lower case). */
static int
IsLdh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/*
 * Checks one ASCII label, lower-cases it and appends it to out at *o
 * (after a dot unless it is the first).
 */
static PwDomainStatus
NormalizeLabel(const unsigned char *s, size_t len, char *out, size_t *o)
{
	char		label[64];

	if (len == 0)
		return PW_DOMAIN_EMPTY_LABEL;
	if (len > 63)
		return PW_DOMAIN_LABEL_TOO_LONG;
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = AsciiLower(s[i]);

		if (!IsLdh(c))
			return PW_DOMAIN_BAD_CHAR;
		label[i] = (char) c;
	}
	if (label[0] == '-' || label[len - 1] == '-')
		return PW_DOMAIN_BAD_HYPHEN;
	if (*o + (*o > 0 ? 1 : 0) + len > PW_DOMAIN_MAX)
		return PW_DOMAIN_TOO_LONG;
	if (*o > 0)
		out[(*o)++] = '.';
	memcpy(out + *o, label, len);
	*o += len;
	out[*o] = '\0';
	return PW_DOMAIN_OK;
}

/*
 * Normalises an ASCII name without its trailing dot into out: the LDH rules
 * of each label, two or more labels, a top label that is not all digits.
 */
static PwDomainStatus
NormalizeLabels(const unsigned char *s, size_t len, char *out)
{
	size_t		o = 0;
	size_t		start = 0;
	int			labels = 0;
	const char *tld;

	for (size_t i = 0; i <= len; i++)
	{
		if (i == len || s[i] == '.')
		{
			PwDomainStatus st = NormalizeLabel(s + start, i - start, out, &o);

			if (st != PW_DOMAIN_OK)
				return st;
			labels++;
			start = i + 1;
		}
	}
	if (labels < 2)
		return PW_DOMAIN_SINGLE_LABEL;
	tld = strrchr(out, '.') + 1;
	if (strspn(tld, "0123456789") == strlen(tld))
		return PW_DOMAIN_NUMERIC_TLD;
	return PW_DOMAIN_OK;
}

/* The status of a libidn2 error. */
static PwDomainStatus
IdnStatus(int rc)
{
	switch (rc)
	{
		case IDN2_MALLOC:
			return PW_DOMAIN_NO_MEMORY;
		case IDN2_ENCODING_ERROR:
			return PW_DOMAIN_BAD_UTF8;
		case IDN2_TOO_BIG_DOMAIN:
			return PW_DOMAIN_TOO_LONG;
		case IDN2_TOO_BIG_LABEL:
		case IDN2_PUNYCODE_BIG_OUTPUT:
			return PW_DOMAIN_LABEL_TOO_LONG;
		case IDN2_DISALLOWED:
		case IDN2_UNASSIGNED:
			return PW_DOMAIN_BAD_CHAR;
		case IDN2_HYPHEN_STARTEND:
			return PW_DOMAIN_BAD_HYPHEN;
		default:
			return PW_DOMAIN_BAD_IDN;
	}
}

/*
 * Validates a domain or host name in UTF-8 and writes its normal form to
 * out (at least PW_NAME_BUF bytes): lower case, no trailing dot, IDN labels
 * as A-labels.  A name with a non-ASCII character goes through libidn2
 * first: IDNA2008 with the non-transitional UTS #46 mapping (case folding,
 * NFC, ignored characters dropped, ideographic full stops as dots) and
 * IDNA2008's rules on every label.  Then every name needs two or more LDH
 * labels of 1..63 octets, no label starting or ending with a hyphen, at
 * most 253 octets, and a top label that is not all digits (so IP literals
 * are refused).
 */
PwDomainStatus
PwDomainNormalize(const char *in, size_t len, char *out)
{
	const unsigned char *s = (const unsigned char *) in;
	char		copy[PW_INPUT_MAX + 1];
	char	   *mapped = NULL;
	int			dotted = 0;
	int			nonascii = 0;
	PwDomainStatus st;

	out[0] = '\0';
	if (len > 0 && s[len - 1] == '.')
	{
		len--;
		dotted = 1;
	}
	if (len == 0)
		return PW_DOMAIN_EMPTY;
	if (len > PW_INPUT_MAX)
		return PW_DOMAIN_TOO_LONG;
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == '\0')
			return PW_DOMAIN_BAD_CHAR;
		if (s[i] >= 0x80)
			nonascii = 1;
	}
	if (nonascii)
	{
		int			rc;

		/* ASCII outside LDH is never valid: refused as in ASCII names */
		for (size_t i = 0; i < len; i++)
			if (s[i] < 0x80 && s[i] != '.' && !IsLdh(AsciiLower(s[i])))
				return PW_DOMAIN_BAD_CHAR;
		memcpy(copy, in, len);
		copy[len] = '\0';
		rc = idn2_lookup_u8((const uint8_t *) copy, (uint8_t **) &mapped,
							IDN2_NONTRANSITIONAL);
		if (rc != IDN2_OK)
			return IdnStatus(rc);
		s = (const unsigned char *) mapped;
		len = strlen(mapped);
		/* one trailing full stop of any kind ends the name */
		if (!dotted && len > 0 && s[len - 1] == '.')
			len--;
	}
	st = NormalizeLabels(s, len, out);
	if (mapped)
		idn2_free(mapped);
	if (st != PW_DOMAIN_OK)
		out[0] = '\0';
	return st;
}

/* A short English description of a normalisation status. */
const char *
PwDomainStatusText(PwDomainStatus status)
{
	switch (status)
	{
		case PW_DOMAIN_OK:
			return "valid";
		case PW_DOMAIN_EMPTY:
			return "empty name";
		case PW_DOMAIN_TOO_LONG:
			return "name longer than 253 octets";
		case PW_DOMAIN_EMPTY_LABEL:
			return "empty label";
		case PW_DOMAIN_LABEL_TOO_LONG:
			return "label longer than 63 octets";
		case PW_DOMAIN_BAD_CHAR:
			return "character not allowed in a host name";
		case PW_DOMAIN_BAD_HYPHEN:
			return "label starts or ends with a hyphen";
		case PW_DOMAIN_SINGLE_LABEL:
			return "single-label name";
		case PW_DOMAIN_NUMERIC_TLD:
			return "all-numeric top-level label";
		case PW_DOMAIN_BAD_UTF8:
			return "invalid UTF-8";
		case PW_DOMAIN_BAD_IDN:
			return "not a valid internationalised name (IDNA2008)";
		case PW_DOMAIN_NOT_UNICODE:
			return "character without a Unicode equivalent in the database encoding";
		case PW_DOMAIN_NO_MEMORY:
			return "out of memory";
	}
	return "unknown";
}

/* qsort/bsearch order of suffix rules. */
static int
RuleCmp(const void *a, const void *b)
{
	return strcmp(((const PwSuffixRule *) a)->suffix,
				  ((const PwSuffixRule *) b)->suffix);
}

/* Sorts rules for PwSuffixMatch(). */
void
PwSuffixRulesSort(PwSuffixRule *rules, size_t n)
{
	if (n > 1)
		qsort(rules, n, sizeof(PwSuffixRule), RuleCmp);
}

/*
 * The label of the longest rule whose suffix equals host or ends it at a
 * label boundary, or NULL.  Rules must be sorted; host normalised.
 */
const char *
PwSuffixMatch(const PwSuffixRule *rules, size_t n, const char *host)
{
	const char *p = host;

	while (p != NULL && *p != '\0')
	{
		PwSuffixRule key = {p, NULL};
		const PwSuffixRule *hit;

		if (n > 0 &&
			(hit = bsearch(&key, rules, n, sizeof(PwSuffixRule), RuleCmp)) != NULL)
			return hit->label;
		p = strchr(p, '.');
		if (p)
			p++;
	}
	return NULL;
}

/*
 * The registrable domain of a normalised host under the ICANN section of
 * the Public Suffix List (a pointer into host), or NULL when the host is
 * itself a public suffix or no list could be loaded.  Names under unlisted
 * top-level labels follow the implicit "*" rule.
 */
const char *
PwRegistrableDomain(const char *host)
{
	const psl_ctx_t *psl = PslContext();
	const char *prev = NULL;
	const char *p = host;

	if (psl == NULL)
		return NULL;
	while (p != NULL && *p != '\0')
	{
		if (psl_is_public_suffix2(psl, p, PSL_TYPE_ICANN))
			return prev;
		prev = p;
		p = strchr(p, '.');
		if (p)
			p++;
	}
	return NULL;
}

/*
 * Writes the label of one normalised MX host to out (PW_NAME_BUF bytes):
 * the longest matching suffix rule's label, else "mx:" + registrable domain
 * (the host itself when it has none).
 */
void
PwClassifyHost(const PwSuffixRule *rules, size_t n, const char *host,
			   char *out)
{
	const char *label = PwSuffixMatch(rules, n, host);
	const char *reg;

	if (label != NULL)
	{
		strncpy(out, label, PW_NAME_BUF - 1);
		out[PW_NAME_BUF - 1] = '\0';
		return;
	}
	reg = PwRegistrableDomain(host);
	memcpy(out, "mx:", 3);
	strncpy(out + 3, reg ? reg : host, PW_NAME_BUF - 4);
	out[PW_NAME_BUF - 1] = '\0';
}

/*
 * Classifies the exchanges of a domain, in preference order.  Returns 1 with
 * the label in out, or 0 when the domain cannot receive mail: a null MX
 * (RFC 7505: the primary exchange is ".") or no syntactically valid
 * exchange.  The first valid exchange (the primary) decides.
 */
int
PwClassifyExchanges(const PwSuffixRule *rules, size_t n,
					const char *const *hosts, const size_t *lens,
					size_t nhosts, char *out)
{
	char		norm[PW_NAME_BUF];

	out[0] = '\0';
	if (nhosts == 0)
		return 0;
	if (lens[0] == 0 || (lens[0] == 1 && hosts[0][0] == '.'))
		return 0;
	for (size_t i = 0; i < nhosts; i++)
	{
		if (PwDomainNormalize(hosts[i], lens[i], norm) != PW_DOMAIN_OK)
			continue;
		PwClassifyHost(rules, n, norm, out);
		return 1;
	}
	return 0;
}
