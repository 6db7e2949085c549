/*-------------------------------------------------------------------------
 *
 * reply.c
 *	  Splits a bounce or deferral reason, as Postfix logs it or as a DSN's
 *	  Diagnostic-Code carries it, into what the rules match: the SMTP code,
 *	  the enhanced status of the reply, the stage of the conversation and
 *	  the remote server's text.
 *
 *	  host mx.example[192.0.2.1] said: 550 5.1.1 <a@example>: User unknown
 *	      (in reply to RCPT TO command)
 *	  host mx.example[192.0.2.1] refused to talk to me: 554 5.7.1 ...
 *	  smtp; 550 5.1.1 User unknown
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "verdict.h"

/* Whether s (of len bytes) starts with the ASCII prefix, ignoring case. */
static bool
StartsWithCI(const char *s, int len, const char *prefix)
{
	int			n = (int) strlen(prefix);

	return len >= n && pg_strncasecmp(s, prefix, n) == 0;
}

/* The first occurrence of needle in s (of len bytes), or NULL. */
static const char *
FindIn(const char *s, int len, const char *needle)
{
	int			n = (int) strlen(needle);

	for (int i = 0; i + n <= len; i++)
		if (s[i] == needle[0] && memcmp(s + i, needle, n) == 0)
			return s + i;
	return NULL;
}

/* The stage named by "(in reply to NAME command)". */
static VerdictStage
StageOfCommand(const char *name, int len)
{
	if (StartsWithCI(name, len, "RCPT"))
		return STAGE_RCPT;
	if (StartsWithCI(name, len, "MAIL"))
		return STAGE_MAIL;
	if (StartsWithCI(name, len, "end of DATA") || StartsWithCI(name, len, "DATA") ||
		StartsWithCI(name, len, "BDAT"))
		return STAGE_DATA;
	if (StartsWithCI(name, len, "HELO") || StartsWithCI(name, len, "EHLO") ||
		StartsWithCI(name, len, "LHLO") || StartsWithCI(name, len, "STARTTLS") ||
		StartsWithCI(name, len, "XFORWARD") || StartsWithCI(name, len, "XCLIENT"))
		return STAGE_HELO;
	return STAGE_NONE;
}

/* Length of an enhanced status (d.ddd.ddd) at s, or 0. */
static int
StatusLength(const char *s, int len)
{
	int			i = 0;

	if (len < 5 || s[0] < '2' || s[0] > '5' || s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++)
	{
		int			start = i;

		while (i < len && i - start < 3 && isdigit((unsigned char) s[i]))
			i++;
		if (i == start)
			return 0;
		if (part == 0)
		{
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && (isdigit((unsigned char) s[i]) || isalpha((unsigned char) s[i])))
		return 0;
	return i;
}

/* Splits a reply (of len bytes, need not end in NUL) into its parts. */
void
VerdictSplitReply(const char *reply, int len, VerdictReply *out)
{
	const char *p = reply;
	const char *end = reply + len;
	const char *q;

	memset(out, 0, sizeof(*out));
	while (end > p && isspace((unsigned char) end[-1]))
		end--;
	while (p < end && isspace((unsigned char) *p))
		p++;
	/* the stage, at the end: "(in reply to RCPT TO command)" */
	if (end - p > 9 && memcmp(end - 9, " command)", 9) == 0)
	{
		const char *last = NULL;

		/* the last "(in reply to ", searched from the end */
		for (q = end - 9 - 13; end - p >= 9 + 13 && q >= p; q--)
			if (*q == '(' && memcmp(q, "(in reply to ", 13) == 0)
			{
				last = q;
				break;
			}
		if (last != NULL)
		{
			const char *name = last + 13;

			out->stage = StageOfCommand(name, (int) (end - 9 - name));
			end = last;
			while (end > p && isspace((unsigned char) end[-1]))
				end--;
		}
	}
	/* the remote reply: after "host H[IP] said: " or "refused to talk to me: " */
	if (StartsWithCI(p, (int) (end - p), "host "))
	{
		if ((q = FindIn(p, (int) (end - p), "] said: ")) != NULL)
			p = q + 8;
		else if ((q = FindIn(p, (int) (end - p), " refused to talk to me: ")) != NULL)
		{
			p = q + 24;
			out->stage = STAGE_CONNECT;
		}
	}
	/* a DSN's Diagnostic-Code: "smtp; 550 ..." */
	if (StartsWithCI(p, (int) (end - p), "smtp;"))
		p += 5;
	else if (StartsWithCI(p, (int) (end - p), "x-postfix;"))
		p += 10;
	while (p < end && isspace((unsigned char) *p))
		p++;
	/* the SMTP code and the enhanced status that may follow it */
	if (end - p >= 3 && p[0] >= '2' && p[0] <= '5' &&
		isdigit((unsigned char) p[1]) && isdigit((unsigned char) p[2]) &&
		(end - p == 3 || p[3] == ' ' || p[3] == '-'))
	{
		const char *s = p + 3;
		int			n;

		out->code = p;
		while (s < end && (*s == ' ' || *s == '-'))
			s++;
		if ((n = StatusLength(s, (int) (end - s))) > 0)
		{
			out->status = s;
			out->status_len = n;
		}
	}
	out->text = p;
	out->text_len = (int) (end - p);
}

/* The name of a stage as pw.bounce_rules writes it (NULL for none). */
const char *
VerdictStageName(VerdictStage stage)
{
	switch (stage)
	{
		case STAGE_CONNECT:
			return "connect";
		case STAGE_HELO:
			return "helo";
		case STAGE_MAIL:
			return "mail";
		case STAGE_RCPT:
			return "rcpt";
		case STAGE_DATA:
			return "data";
		case STAGE_ANY:
			return "any";
		case STAGE_NONE:
			break;
	}
	return NULL;
}
