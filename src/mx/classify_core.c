/*-------------------------------------------------------------------------
 *
 * classify_core.c
 *	  Domain-name validation (LDH labels, IDN to punycode A-labels) and MX
 *	  host classification: suffix rules first, else "mx:" plus the host's
 *	  registrable domain under the ICANN section of the Public Suffix List.
 *
 *	  Plain C on purpose: no PostgreSQL headers, no allocation except the
 *	  process-wide libpsl context, so a fuzzer can drive it directly.
 *
 *-------------------------------------------------------------------------
 */
#include "classify_core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libpsl.h>

#ifndef PW_PSL_FILE
#define PW_PSL_FILE "/usr/share/publicsuffix/public_suffix_list.dat"
#endif

/* Longest input accepted before normalisation (bytes) */
#define PW_INPUT_MAX 1024
/* Most code points in one label before encoding */
#define PW_LABEL_CPS 256

/* Punycode parameters (RFC 3492, section 5) */
#define PUNY_BASE 36
#define PUNY_TMIN 1
#define PUNY_TMAX 26
#define PUNY_SKEW 38
#define PUNY_DAMP 700
#define PUNY_BIAS 72
#define PUNY_N 128

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

/* Bias adaptation of RFC 3492, section 6.1. */
static uint32_t
PunyAdapt(uint32_t delta, uint32_t numpoints, int firsttime)
{
	uint32_t	k = 0;

	delta = firsttime ? delta / PUNY_DAMP : delta / 2;
	delta += delta / numpoints;
	while (delta > ((PUNY_BASE - PUNY_TMIN) * PUNY_TMAX) / 2)
	{
		delta /= PUNY_BASE - PUNY_TMIN;
		k += PUNY_BASE;
	}
	return k + (((PUNY_BASE - PUNY_TMIN + 1) * delta) / (delta + PUNY_SKEW));
}

/* The basic code point of a punycode digit. */
static char
PunyDigit(uint32_t d)
{
	return d < 26 ? (char) ('a' + d) : (char) ('0' + d - 26);
}

/*
 * Encodes code points as punycode (RFC 3492, section 6.3) into out (size
 * outlen, NUL-terminated).  Returns the length, or -1 when it does not fit.
 */
static int
PunyEncode(const uint32_t *cps, size_t ncps, char *out, size_t outlen)
{
	uint32_t	n = PUNY_N;
	uint32_t	delta = 0;
	uint32_t	bias = PUNY_BIAS;
	size_t		h;
	size_t		b = 0;
	size_t		o = 0;

	for (size_t i = 0; i < ncps; i++)
		if (cps[i] < 0x80)
		{
			if (o + 1 >= outlen)
				return -1;
			out[o++] = (char) cps[i];
			b++;
		}
	h = b;
	if (b > 0)
	{
		if (o + 1 >= outlen)
			return -1;
		out[o++] = '-';
	}
	while (h < ncps)
	{
		uint32_t	m = UINT32_MAX;

		for (size_t i = 0; i < ncps; i++)
			if (cps[i] >= n && cps[i] < m)
				m = cps[i];
		if ((uint64_t) (m - n) * (h + 1) + delta > UINT32_MAX)
			return -1;
		delta += (m - n) * (uint32_t) (h + 1);
		n = m;
		for (size_t i = 0; i < ncps; i++)
		{
			if (cps[i] < n)
			{
				if (delta == UINT32_MAX)
					return -1;
				delta++;
			}
			if (cps[i] == n)
			{
				uint32_t	q = delta;

				for (uint32_t k = PUNY_BASE;; k += PUNY_BASE)
				{
					uint32_t	t = k <= bias ? PUNY_TMIN :
					k >= bias + PUNY_TMAX ? PUNY_TMAX : k - bias;

					if (q < t)
						break;
					if (o + 1 >= outlen)
						return -1;
					out[o++] = PunyDigit(t + (q - t) % (PUNY_BASE - t));
					q = (q - t) / (PUNY_BASE - t);
				}
				if (o + 1 >= outlen)
					return -1;
				out[o++] = PunyDigit(q);
				bias = PunyAdapt(delta, (uint32_t) (h + 1), h == b);
				delta = 0;
				h++;
			}
		}
		delta++;
		n++;
	}
	out[o] = '\0';
	return (int) o;
}

/*
 * Decodes UTF-8 into code points (cps may be NULL to only validate);
 * returns the count, or -1 on malformed UTF-8, overlong forms, surrogates
 * or more than maxcps code points.
 */
static int
Utf8Decode(const unsigned char *s, size_t len, uint32_t *cps, size_t maxcps)
{
	size_t		n = 0;
	size_t		i = 0;

	while (i < len)
	{
		uint32_t	c = s[i];
		int			extra;
		uint32_t	min;

		if (c < 0x80)
		{
			extra = 0;
			min = 0;
		}
		else if ((c & 0xE0) == 0xC0)
		{
			extra = 1;
			c &= 0x1F;
			min = 0x80;
		}
		else if ((c & 0xF0) == 0xE0)
		{
			extra = 2;
			c &= 0x0F;
			min = 0x800;
		}
		else if ((c & 0xF8) == 0xF0)
		{
			extra = 3;
			c &= 0x07;
			min = 0x10000;
		}
		else
			return -1;
		if (i + extra >= len)
			return -1;
		for (int k = 1; k <= extra; k++)
		{
			if ((s[i + k] & 0xC0) != 0x80)
				return -1;
			c = (c << 6) | (s[i + k] & 0x3F);
		}
		if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
			return -1;
		if (n >= maxcps)
			return -1;
		if (cps != NULL)
			cps[n] = c;
		n++;
		i += extra + 1;
	}
	return (int) n;
}

/* Whether c is a letter, digit or hyphen (ASCII, already lower case). */
static int
IsLdh(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/*
 * Normalises one label (lower case ASCII, or punycode for non-ASCII) and
 * appends it to out at *o.
 */
static MxDomainStatus
NormalizeLabel(const unsigned char *s, size_t len, char *out, size_t *o)
{
	int			ascii = 1;
	char		label[64];
	size_t		llen;

	if (len == 0)
		return MX_DOMAIN_EMPTY_LABEL;
	for (size_t i = 0; i < len; i++)
		if (s[i] >= 0x80)
			ascii = 0;
	if (ascii)
	{
		if (len > 63)
			return MX_DOMAIN_LABEL_TOO_LONG;
		for (size_t i = 0; i < len; i++)
		{
			unsigned char c = s[i];

			if (c >= 'A' && c <= 'Z')
				c = (unsigned char) (c - 'A' + 'a');
			if (!IsLdh(c))
				return MX_DOMAIN_BAD_CHAR;
			label[i] = (char) c;
		}
		llen = len;
	}
	else
	{
		uint32_t	cps[PW_LABEL_CPS];
		int			ncps = Utf8Decode(s, len, cps, PW_LABEL_CPS);
		int			plen;

		if (ncps < 0)
			return MX_DOMAIN_BAD_UTF8;
		for (int i = 0; i < ncps; i++)
		{
			if (cps[i] >= 'A' && cps[i] <= 'Z')
				cps[i] += 'a' - 'A';
			if (cps[i] < 0x80 && !IsLdh((unsigned char) cps[i]))
				return MX_DOMAIN_BAD_CHAR;
			/* C1 controls, specials and non-characters are never valid */
			if ((cps[i] >= 0x80 && cps[i] < 0xA0) || cps[i] == 0xFFFE ||
				cps[i] == 0xFFFF || cps[i] == 0xFEFF)
				return MX_DOMAIN_BAD_CHAR;
		}
		memcpy(label, "xn--", 4);
		plen = PunyEncode(cps, (size_t) ncps, label + 4, sizeof(label) - 4);
		if (plen < 0)
			return MX_DOMAIN_LABEL_TOO_LONG;
		llen = 4 + (size_t) plen;
	}
	if (label[0] == '-' || label[llen - 1] == '-')
		return MX_DOMAIN_BAD_HYPHEN;
	if (*o + (*o > 0 ? 1 : 0) + llen > MX_DOMAIN_MAX)
		return MX_DOMAIN_TOO_LONG;
	if (*o > 0)
		out[(*o)++] = '.';
	memcpy(out + *o, label, llen);
	*o += llen;
	out[*o] = '\0';
	return MX_DOMAIN_OK;
}

/*
 * Validates a domain or host name and writes its normal form to out (at
 * least MX_NAME_BUF bytes): lower case, no trailing dot, IDN labels as
 * punycode A-labels.  Requires two or more LDH labels of 1..63 octets, no
 * label starting or ending with a hyphen, at most 253 octets, and a top
 * label that is not all digits (so IP literals are refused).
 */
MxDomainStatus
MxDomainNormalize(const char *in, size_t len, char *out)
{
	const unsigned char *s = (const unsigned char *) in;
	char	   *lowered = NULL;
	char		copy[PW_INPUT_MAX + 1];
	size_t		o = 0;
	size_t		start = 0;
	int			labels = 0;
	int			nonascii = 0;
	MxDomainStatus st = MX_DOMAIN_OK;

	out[0] = '\0';
	if (len > 0 && s[len - 1] == '.')
		len--;
	if (len == 0)
		return MX_DOMAIN_EMPTY;
	if (len > PW_INPUT_MAX)
		return MX_DOMAIN_TOO_LONG;
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == '\0')
			return MX_DOMAIN_BAD_CHAR;
		if (s[i] >= 0x80)
			nonascii = 1;
	}
	if (nonascii)
	{
		/* Unicode lower-casing through libpsl, then our own encoder */
		memcpy(copy, in, len);
		copy[len] = '\0';
		if (Utf8Decode(s, len, NULL, PW_INPUT_MAX) < 0)
			return MX_DOMAIN_BAD_UTF8;
		if (psl_str_to_utf8lower(copy, "utf-8", NULL, &lowered) == PSL_SUCCESS &&
			lowered != NULL && strlen(lowered) <= PW_INPUT_MAX)
		{
			len = strlen(lowered);
			memcpy(copy, lowered, len + 1);
		}
		if (lowered)
			psl_free_string(lowered);
		s = (const unsigned char *) copy;
	}

	for (size_t i = 0; i <= len; i++)
	{
		if (i == len || s[i] == '.')
		{
			st = NormalizeLabel(s + start, i - start, out, &o);
			if (st != MX_DOMAIN_OK)
				break;
			labels++;
			start = i + 1;
		}
	}
	if (st == MX_DOMAIN_OK && labels < 2)
		st = MX_DOMAIN_SINGLE_LABEL;
	if (st == MX_DOMAIN_OK)
	{
		const char *tld = strrchr(out, '.') + 1;

		if (strspn(tld, "0123456789") == strlen(tld))
			st = MX_DOMAIN_NUMERIC_TLD;
	}
	if (st != MX_DOMAIN_OK)
		out[0] = '\0';
	return st;
}

/* A short English description of a normalisation status. */
const char *
MxDomainStatusText(MxDomainStatus status)
{
	switch (status)
	{
		case MX_DOMAIN_OK:
			return "valid";
		case MX_DOMAIN_EMPTY:
			return "empty name";
		case MX_DOMAIN_TOO_LONG:
			return "name longer than 253 octets";
		case MX_DOMAIN_EMPTY_LABEL:
			return "empty label";
		case MX_DOMAIN_LABEL_TOO_LONG:
			return "label longer than 63 octets";
		case MX_DOMAIN_BAD_CHAR:
			return "character not allowed in a host name";
		case MX_DOMAIN_BAD_HYPHEN:
			return "label starts or ends with a hyphen";
		case MX_DOMAIN_SINGLE_LABEL:
			return "single-label name";
		case MX_DOMAIN_NUMERIC_TLD:
			return "all-numeric top-level label";
		case MX_DOMAIN_BAD_UTF8:
			return "invalid UTF-8";
	}
	return "unknown";
}

/* qsort/bsearch order of suffix rules. */
static int
RuleCmp(const void *a, const void *b)
{
	return strcmp(((const MxSuffixRule *) a)->suffix,
				  ((const MxSuffixRule *) b)->suffix);
}

/* Sorts rules for MxSuffixMatch(). */
void
MxSuffixRulesSort(MxSuffixRule *rules, size_t n)
{
	if (n > 1)
		qsort(rules, n, sizeof(MxSuffixRule), RuleCmp);
}

/*
 * The label of the longest rule whose suffix equals host or ends it at a
 * label boundary, or NULL.  Rules must be sorted; host normalised.
 */
const char *
MxSuffixMatch(const MxSuffixRule *rules, size_t n, const char *host)
{
	const char *p = host;

	while (p != NULL && *p != '\0')
	{
		MxSuffixRule key = {p, NULL};
		const MxSuffixRule *hit;

		if (n > 0 &&
			(hit = bsearch(&key, rules, n, sizeof(MxSuffixRule), RuleCmp)) != NULL)
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
MxRegistrableDomain(const char *host)
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
 * Writes the label of one normalised MX host to out (MX_NAME_BUF bytes):
 * the longest matching suffix rule's label, else "mx:" + registrable domain
 * (the host itself when it has none).
 */
void
MxClassifyHost(const MxSuffixRule *rules, size_t n, const char *host,
			   char *out)
{
	const char *label = MxSuffixMatch(rules, n, host);
	const char *reg;

	if (label != NULL)
	{
		strncpy(out, label, MX_NAME_BUF - 1);
		out[MX_NAME_BUF - 1] = '\0';
		return;
	}
	reg = MxRegistrableDomain(host);
	memcpy(out, "mx:", 3);
	strncpy(out + 3, reg ? reg : host, MX_NAME_BUF - 4);
	out[MX_NAME_BUF - 1] = '\0';
}

/*
 * Classifies the exchanges of a domain, in preference order.  Returns 1 with
 * the label in out, or 0 when the domain cannot receive mail: a null MX
 * (RFC 7505: the primary exchange is ".") or no syntactically valid
 * exchange.  The first valid exchange (the primary) decides.
 */
int
MxClassifyExchanges(const MxSuffixRule *rules, size_t n,
					const char *const *hosts, const size_t *lens,
					size_t nhosts, char *out)
{
	char		norm[MX_NAME_BUF];

	out[0] = '\0';
	if (nhosts == 0)
		return 0;
	if (lens[0] == 0 || (lens[0] == 1 && hosts[0][0] == '.'))
		return 0;
	for (size_t i = 0; i < nhosts; i++)
	{
		if (MxDomainNormalize(hosts[i], lens[i], norm) != MX_DOMAIN_OK)
			continue;
		MxClassifyHost(rules, n, norm, out);
		return 1;
	}
	return 0;
}
