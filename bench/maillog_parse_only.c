/*
 * maillog_parse_only.c
 *	  The mail-log parser alone, without PostgreSQL: reads a file into
 *	  memory, splits it into lines and parses each with MaillogParseLine(),
 *	  RUNS times; prints the best time.  bench/maillog_bench.sh builds and
 *	  runs it to show how much of pw.read_maillog() is the parser.
 *
 *	  maillog_parse_only FILE [RUNS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "maillog/maillog_parse.h"

/* Seconds since an arbitrary start. */
static double
Now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	FILE	   *f;
	long		size;
	char	   *buf;
	int			runs = argc > 2 ? atoi(argv[2]) : 10;
	double		best = -1;
	long		lines = 0,
				events = 0;

	if (argc < 2 || (f = fopen(argv[1], "rb")) == NULL)
	{
		fprintf(stderr, "usage: %s FILE [RUNS]\n", argv[0]);
		return 1;
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc(size > 0 ? size : 1);
	if (buf == NULL || fread(buf, 1, size, f) != (size_t) size)
	{
		fprintf(stderr, "could not read %s\n", argv[1]);
		return 1;
	}
	fclose(f);

	for (int run = 0; run < runs; run++)
	{
		double		start = Now();
		double		took;
		MaillogRecord rec;

		lines = events = 0;
		for (char *p = buf, *end = buf + size; p < end;)
		{
			char	   *nl = memchr(p, '\n', end - p);

			if (nl == NULL)
				break;
			if (MaillogParseLine(p, nl - p, &rec) == MAILLOG_EVENT)
				events++;
			lines++;
			p = nl + 1;
		}
		took = Now() - start;
		if (best < 0 || took < best)
			best = took;
	}
	/* seconds, lines, events: the script formats them */
	printf("%.6f %ld %ld\n", best, lines, events);
	free(buf);
	return 0;
}
