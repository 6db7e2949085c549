/*-------------------------------------------------------------------------
 *
 * fuzz_classify.c
 *	  libFuzzer harness for MX host classification (src/classify_core.c):
 *	  suffix rules (sort + binary search), the Public Suffix List path
 *	  through libpsl, and MxClassifyExchanges() as the tagger calls it.
 *
 * Input format (newline-separated):
 *	  @suffix label		zero or more leading lines: suffix rules, as a user
 *						may store them in pw.mx_suffix_rules
 *	  host				then up to 32 MX exchange names in preference order
 *						(any bytes, NULs included: lengths are passed)
 *
 * The result is compared with a brute-force reference: the label of the
 * longest rule whose suffix equals the primary's normal form or ends it at a
 * label boundary; otherwise "mx:" followed by a registrable domain that is a
 * label-aligned suffix of the host (or the host itself).
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mx/classify_core.h"

#define MAX_RULES 64
#define MAX_HOSTS 32

/* Aborts with a message when a contract of the classifier is broken. */
static void
Check(int ok, const char *what)
{
	if (!ok)
	{
		fprintf(stderr, "fuzz_classify: contract broken: %s\n", what);
		abort();
	}
}

/* A NUL-terminated heap copy of n bytes. */
static char *
Dup(const uint8_t *p, size_t n)
{
	char	   *s = malloc(n + 1);

	if (s != NULL)
	{
		memcpy(s, p, n);
		s[n] = '\0';
	}
	return s;
}

/* Whether suffix equals host or ends it at a label boundary. */
static int
SuffixOf(const char *suffix, const char *host)
{
	size_t		sl = strlen(suffix);
	size_t		hl = strlen(host);

	if (sl == 0 || sl > hl)
		return 0;
	if (strcmp(host + hl - sl, suffix) != 0)
		return 0;
	return sl == hl || host[hl - sl - 1] == '.';
}

/* Whether the classifier's label is one a brute-force search accepts. */
static int
ReferenceAccepts(const MxSuffixRule *rules, size_t n, const char *host,
				 const char *got)
{
	size_t		best = 0;
	int			found = 0;

	for (size_t i = 0; i < n; i++)
		if (SuffixOf(rules[i].suffix, host) && strlen(rules[i].suffix) > best)
			best = strlen(rules[i].suffix);
	if (best > 0)
	{
		/* any rule with the longest matching suffix may have been chosen */
		for (size_t i = 0; i < n; i++)
			if (strlen(rules[i].suffix) == best && SuffixOf(rules[i].suffix, host) &&
				strncmp(rules[i].label, got, MX_NAME_BUF - 1) == 0)
				found = 1;
		return found;
	}
	if (strncmp(got, "mx:", 3) != 0)
		return 0;
	return SuffixOf(got + 3, host);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One fuzz iteration. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	MxSuffixRule rules[MAX_RULES];
	char	   *owned[MAX_RULES * 2];
	const char *hosts[MAX_HOSTS];
	size_t		lens[MAX_HOSTS];
	char	   *hostbuf[MAX_HOSTS];
	size_t		nrules = 0;
	size_t		nowned = 0;
	size_t		nhosts = 0;
	size_t		pos = 0;
	int			in_rules = 1;
	char		out[MX_NAME_BUF];
	int			ret;

	while (pos < size)
	{
		const uint8_t *nl = memchr(data + pos, '\n', size - pos);
		size_t		end = nl ? (size_t) (nl - data) : size;
		const uint8_t *line = data + pos;
		size_t		len = end - pos;

		pos = end + 1;
		if (in_rules && len > 0 && line[0] == '@' && nrules < MAX_RULES)
		{
			const uint8_t *sp = memchr(line + 1, ' ', len - 1);
			size_t		sl = sp ? (size_t) (sp - line - 1) : len - 1;
			char	   *suffix = Dup(line + 1, sl);
			char	   *label = sp ? Dup(sp + 1, len - 2 - sl) : Dup(line, 0);

			owned[nowned++] = suffix;
			owned[nowned++] = label;
			if (suffix == NULL || label == NULL)
				goto done;
			/* the table's text cannot hold NUL: C strings as in SPI_getvalue */
			rules[nrules].suffix = suffix;
			rules[nrules].label = label;
			nrules++;
			continue;
		}
		in_rules = 0;
		if (nhosts == MAX_HOSTS)
			break;
		/* an exact-size copy so that over-reads are caught */
		hostbuf[nhosts] = malloc(len ? len : 1);
		if (hostbuf[nhosts] == NULL)
			goto done;
		memcpy(hostbuf[nhosts], line, len);
		hosts[nhosts] = hostbuf[nhosts];
		lens[nhosts] = len;
		nhosts++;
	}

	MxSuffixRulesSort(rules, nrules);
	for (size_t i = 1; i < nrules; i++)
		Check(strcmp(rules[i - 1].suffix, rules[i].suffix) <= 0, "rules sorted");

	memset(out, 'X', sizeof(out));
	ret = MxClassifyExchanges(rules, nrules, hosts, lens, nhosts, out);
	Check(memchr(out, '\0', sizeof(out)) != NULL, "unterminated label");
	if (ret == 0)
		Check(out[0] == '\0', "label left when unclassified");
	else
	{
		char		norm[MX_NAME_BUF];
		size_t		i;

		Check(ret == 1, "return value");
		Check(nhosts > 0, "classified without hosts");
		Check(!(lens[0] == 1 && hosts[0][0] == '.'), "null MX classified");
		/* the first valid exchange decides */
		for (i = 0; i < nhosts; i++)
			if (MxDomainNormalize(hosts[i], lens[i], norm) == MX_DOMAIN_OK)
				break;
		Check(i < nhosts, "classified without a valid exchange");
		Check(ReferenceAccepts(rules, nrules, norm, out), "label differs from reference");
	}

	/* the PSL path on every valid exchange */
	for (size_t i = 0; i < nhosts; i++)
	{
		char		norm[MX_NAME_BUF];
		const char *reg;

		if (MxDomainNormalize(hosts[i], lens[i], norm) != MX_DOMAIN_OK)
			continue;
		reg = MxRegistrableDomain(norm);
		if (reg != NULL)
		{
			Check(reg >= norm && reg < norm + strlen(norm), "registrable domain outside host");
			Check(reg == norm || reg[-1] == '.', "registrable domain not at a label");
			Check(strchr(reg, '.') != NULL, "registrable domain of one label");
		}
	}

done:
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	for (size_t i = 0; i < nhosts; i++)
		free(hostbuf[i]);
	return 0;
}
