/*
 * verdict_engines.c: the bounce rules of pw.bounce_rules matched by two
 * regex engines outside PostgreSQL, on the same replies, to choose the
 * engine by measurement (bench/verdict_bench.sh).
 *
 *   verdict_engines RULES.tsv REPLIES.tsv
 *
 * RULES.tsv: status_pattern, code_pattern, reply_pattern, stage, category
 * (in rule order, \N for NULL); REPLIES.tsv: dsn, code, stage, text (the
 * parts pw.bounce_reply_parts() gives).  Prints replies/s of
 *   - PCRE2 with JIT: each rule's patterns tried in order, first match wins
 *   - Hyperscan: every pattern of a part in one database, one scan a part,
 *     then the first rule whose parts all matched
 * and how many replies the two engines classified alike.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <hs/hs.h>
#include <pcre2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_RULES 1024

typedef struct Rule
{
	char	   *pat[3];			/* status, code, reply; NULL if none */
	char	   *stage;
	char	   *category;
	pcre2_code *re[3];
} Rule;

typedef struct Reply
{
	char	   *part[3];		/* dsn, code, text */
	size_t		len[3];
	char	   *stage;
} Reply;

static Rule rules[MAX_RULES];
static int nrules;
static Reply *replies;
static long nreplies;

/* A field of COPY's text format: NULL for \N, backslash escapes undone. */
static char *
Field(char *s)
{
	char	   *out,
			   *o;

	if (strcmp(s, "\\N") == 0)
		return NULL;
	out = o = malloc(strlen(s) + 1);
	for (; *s; s++)
	{
		if (*s == '\\' && s[1])
		{
			s++;
			*o++ = *s == 't' ? '\t' : *s == 'n' ? '\n' : *s == 'r' ? '\r' : *s;
		}
		else
			*o++ = *s;
	}
	*o = '\0';
	return out;
}

/* Splits a line into n tab-separated fields in place. */
static int
Split(char *line, char **f, int n)
{
	int			k = 0;

	line[strcspn(line, "\n")] = '\0';
	f[k++] = line;
	for (char *p = line; *p && k < n; p++)
		if (*p == '\t')
		{
			*p = '\0';
			f[k++] = p + 1;
		}
	return k;
}

/* Reads both files. */
static void
Load(const char *rules_path, const char *replies_path)
{
	FILE	   *f = fopen(rules_path, "r");
	char	   *line = NULL;
	size_t		cap = 0;
	long		max = 1024;

	if (!f)
		exit(1);
	while (getline(&line, &cap, f) > 0 && nrules < MAX_RULES)
	{
		char	   *x[5];

		if (Split(line, x, 5) != 5)
			continue;
		for (int i = 0; i < 3; i++)
			rules[nrules].pat[i] = Field(x[i]);
		rules[nrules].stage = strdup(x[3]);
		rules[nrules].category = strdup(x[4]);
		nrules++;
	}
	fclose(f);
	f = fopen(replies_path, "r");
	if (!f)
		exit(1);
	replies = malloc(max * sizeof(Reply));
	while (getline(&line, &cap, f) > 0)
	{
		char	   *x[4];
		Reply	   *r;

		if (Split(line, x, 4) != 4)
			continue;
		if (nreplies == max)
			replies = realloc(replies, (max *= 2) * sizeof(Reply));
		r = &replies[nreplies++];
		r->part[0] = Field(x[0]);
		r->part[1] = Field(x[1]);
		r->stage = Field(x[2]);
		r->part[2] = Field(x[3]);
		for (int i = 0; i < 3; i++)
			r->len[i] = r->part[i] ? strlen(r->part[i]) : 0;
	}
	fclose(f);
	free(line);
}

/* Whether a rule's stage admits a reply's. */
static int
StageOk(const Rule *rule, const Reply *r)
{
	return strcmp(rule->stage, "any") == 0 || (r->stage && strcmp(rule->stage, r->stage) == 0);
}

/* Seconds on the monotonic clock. */
static double
Now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* PCRE2 with JIT: rules tried in order. */
static const char *
ClassifyPcre(const Reply *r, pcre2_match_data *md)
{
	for (int i = 0; i < nrules; i++)
	{
		int			ok = StageOk(&rules[i], r);

		for (int p = 0; ok && p < 3; p++)
			if (rules[i].re[p])
				ok = r->part[p] &&
					pcre2_jit_match(rules[i].re[p], (PCRE2_SPTR) r->part[p], r->len[p], 0, 0, md, NULL) >= 0;
		if (ok)
			return rules[i].category;
	}
	return "other";
}

static hs_database_t *hdb[3];
static hs_scratch_t *scratch;

/* Sets a rule's bit. */
static int
OnMatch(unsigned int id, unsigned long long from, unsigned long long to, unsigned int flags, void *ctx)
{
	((uint64_t *) ctx)[id / 64] |= UINT64_C(1) << (id % 64);
	return 0;
}

/* Hyperscan: one scan a part, then the first rule whose parts matched. */
static const char *
ClassifyHs(const Reply *r)
{
	uint64_t	bits[3][MAX_RULES / 64];

	memset(bits, 0, sizeof(bits));
	for (int p = 0; p < 3; p++)
		if (hdb[p] && r->part[p])
			hs_scan(hdb[p], r->part[p], r->len[p], 0, scratch, OnMatch, bits[p]);
	for (int i = 0; i < nrules; i++)
	{
		int			ok = StageOk(&rules[i], r);

		for (int p = 0; ok && p < 3; p++)
			if (rules[i].pat[p])
				ok = (bits[p][i / 64] >> (i % 64)) & 1;
		if (ok)
			return rules[i].category;
	}
	return "other";
}

/* Compiles every rule for both engines. */
static void
Compile(void)
{
	for (int p = 0; p < 3; p++)
	{
		const char *exprs[MAX_RULES];
		unsigned int ids[MAX_RULES],
					flags[MAX_RULES];
		int			n = 0;
		hs_compile_error_t *err;

		for (int i = 0; i < nrules; i++)
		{
			char	   *e;
			int			errcode;
			PCRE2_SIZE off;

			if (!rules[i].pat[p])
				continue;
			e = malloc(strlen(rules[i].pat[p]) + 16);
			sprintf(e, p < 2 ? "^(?:%s)$" : "%s", rules[i].pat[p]);
			rules[i].re[p] = pcre2_compile((PCRE2_SPTR) e, PCRE2_ZERO_TERMINATED, PCRE2_CASELESS,
										   &errcode, &off, NULL);
			if (!rules[i].re[p] || pcre2_jit_compile(rules[i].re[p], PCRE2_JIT_COMPLETE) != 0)
			{
				fprintf(stderr, "pcre2 cannot compile %s\n", e);
				exit(1);
			}
			exprs[n] = e;
			ids[n] = i;
			flags[n++] = HS_FLAG_CASELESS | HS_FLAG_SINGLEMATCH;
		}
		if (n > 0 && (hs_compile_multi(exprs, flags, ids, n, HS_MODE_BLOCK, NULL, &hdb[p], &err) != HS_SUCCESS ||
					  hs_alloc_scratch(hdb[p], &scratch) != HS_SUCCESS))
		{
			fprintf(stderr, "hyperscan cannot compile part %d\n", p);
			exit(1);
		}
	}
}

int
main(int argc, char **argv)
{
	pcre2_match_data *md;
	const char **a,
			  **b;
	long		same = 0;
	double		t0,
				t_pcre,
				t_hs;

	if (argc != 3)
	{
		fprintf(stderr, "usage: %s RULES.tsv REPLIES.tsv\n", argv[0]);
		return 2;
	}
	Load(argv[1], argv[2]);
	Compile();
	md = pcre2_match_data_create(4, NULL);
	a = malloc(nreplies * sizeof(char *));
	b = malloc(nreplies * sizeof(char *));
	t0 = Now();
	for (long i = 0; i < nreplies; i++)
		a[i] = ClassifyPcre(&replies[i], md);
	t_pcre = Now() - t0;
	t0 = Now();
	for (long i = 0; i < nreplies; i++)
		b[i] = ClassifyHs(&replies[i]);
	t_hs = Now() - t0;
	for (long i = 0; i < nreplies; i++)
		same += strcmp(a[i], b[i]) == 0;
	printf("rules %d, replies %ld\n", nrules, nreplies);
	printf("%-28s %10.0f replies/s\n", "PCRE2 JIT, rule by rule", nreplies / t_pcre);
	printf("%-28s %10.0f replies/s\n", "Hyperscan, one scan a part", nreplies / t_hs);
	printf("classified alike: %ld of %ld\n", same, nreplies);
	return 0;
}
