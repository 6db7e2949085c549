/*-------------------------------------------------------------------------
 *
 * fuzz_domain.c
 *	  libFuzzer harness for the domain-name validator and normaliser
 *	  (PwDomainNormalize in src/mx/classify_core.c: LDH rules, and for
 *	  names with non-ASCII characters IDNA2008 with the UTS #46 mapping
 *	  through libidn2).
 *
 * Checks, besides memory safety and leaks: a refused name leaves an empty
 * output; an accepted one is a well-formed LDH name of at most 253 octets
 * whose labels are 1..63 octets without edge hyphens, with at least two
 * labels and a non-numeric top label; normalising the output again gives
 * the same output (the normal form is a fixed point); and upper-casing the
 * input's ASCII letters changes nothing (the mapping folds case before any
 * rule looks at the name).
 *
 *-------------------------------------------------------------------------
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mx/classify_core.h"

/* Aborts with a message when a contract of the normaliser is broken. */
static void
Check(int ok, const char *what, const char *name)
{
	if (!ok)
	{
		fprintf(stderr, "fuzz_domain: contract broken: %s (output \"%s\")\n",
				what, name);
		abort();
	}
}

/* Verifies the shape of an accepted normal form. */
static void
CheckShape(const char *out)
{
	size_t		len = strlen(out);
	size_t		start = 0;
	int			labels = 0;
	int			all_digits = 1;

	Check(len >= 3 && len <= PW_DOMAIN_MAX, "length", out);
	for (size_t i = 0; i <= len; i++)
	{
		char		c = out[i];

		if (i == len || c == '.')
		{
			size_t		llen = i - start;

			Check(llen >= 1 && llen <= 63, "label length", out);
			Check(out[start] != '-' && out[i - 1] != '-', "edge hyphen", out);
			labels++;
			if (i == len)
				Check(!all_digits, "numeric top label", out);
			all_digits = 1;
			start = i + 1;
			continue;
		}
		Check((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-',
			  "character", out);
		if (c < '0' || c > '9')
			all_digits = 0;
	}
	Check(labels >= 2, "label count", out);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One fuzz iteration. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *in = malloc(size ? size : 1);
	char		out[PW_NAME_BUF];
	char		again[PW_NAME_BUF];
	PwDomainStatus st;
	const char *text;

	if (in == NULL)
		return 0;
	memcpy(in, data, size);
	memset(out, 'X', sizeof(out));
	st = PwDomainNormalize(in, size, out);
	text = PwDomainStatusText(st);
	Check(text != NULL && strcmp(text, "unknown") != 0, "status text", "");
	Check(memchr(out, '\0', sizeof(out)) != NULL, "unterminated output", "");
	/* the same name with its ASCII letters in upper case */
	for (size_t i = 0; i < size; i++)
		if (in[i] >= 'a' && in[i] <= 'z')
			in[i] = (char) (in[i] - 'a' + 'A');
	Check(PwDomainNormalize(in, size, again) == st && strcmp(out, again) == 0,
		  "case changes the result", out);
	if (st != PW_DOMAIN_OK)
		Check(out[0] == '\0', "output left on failure", out);
	else
	{
		CheckShape(out);
		Check(PwDomainNormalize(out, strlen(out), again) == PW_DOMAIN_OK,
			  "normal form refused", out);
		Check(strcmp(out, again) == 0, "normal form not a fixed point", out);
		/* a trailing dot is the same name */
		{
			char		dotted[PW_NAME_BUF + 1];
			size_t		n = strlen(out);

			memcpy(dotted, out, n);
			dotted[n] = '.';
			Check(PwDomainNormalize(dotted, n + 1, again) == PW_DOMAIN_OK &&
				  strcmp(out, again) == 0, "trailing dot", out);
		}
	}
	free(in);
	return 0;
}
