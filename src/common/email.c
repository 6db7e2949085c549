/*-------------------------------------------------------------------------
 *
 * email.c
 *	  Normalised addresses and their domains: pw.normalize_email() and
 *	  pw.email_domain().
 *
 *	  Both are defined by SQL expressions (lower(btrim(email)) and
 *	  nullif(rtrim(lower(btrim(split_part(email, '@', -1))), '.'), '')) and
 *	  give exactly their results, under the caller's collation.  They are
 *	  written in C because the tagger and the selection evaluate them for
 *	  every carrier: plain ASCII without capitals is its own lower case, so
 *	  only other strings pay for the collation's lower().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/formatting.h"

#include "common/pw_common.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_normalize_email);
PG_FUNCTION_INFO_V1(pw_email_domain);

/* Whether len bytes are their own lower() in any collation (ASCII, no capitals). */
static bool
EmailIsLower(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (IS_HIGHBIT_SET(s[i]) || (s[i] >= 'A' && s[i] <= 'Z'))
			return false;
	return true;
}

/* lower() of len bytes under a collation, palloc'd and NUL-terminated. */
static char *
EmailLower(const char *s, size_t len, Oid collid)
{
	if (EmailIsLower(s, len))
		return pnstrdup(s, len);
	return str_tolower(s, len, OidIsValid(collid) ? collid : DEFAULT_COLLATION_OID);
}

/* Narrows [*start, *end) by btrim()'s default: spaces only. */
static void
EmailTrimSpaces(const char **start, const char **end)
{
	while (*start < *end && **start == ' ')
		(*start)++;
	while (*end > *start && (*end)[-1] == ' ')
		(*end)--;
}

/* lower(btrim(email)) of len bytes, palloc'd. */
char *
PwNormalizeEmail(const char *email, size_t len, Oid collid)
{
	const char *start = email;
	const char *end = email + len;

	EmailTrimSpaces(&start, &end);
	return EmailLower(start, end - start, collid);
}

/*
 * lower(btrim(email)) of len bytes into buf (reset first); false when it is
 * empty.  Allocates nothing for plain ASCII without capitals, for loops over
 * many addresses.
 */
bool
PwNormalizeEmailInto(StringInfo buf, const char *email, size_t len, Oid collid)
{
	const char *start = email;
	const char *end = email + len;

	EmailTrimSpaces(&start, &end);
	resetStringInfo(buf);
	if (EmailIsLower(start, end - start))
		appendBinaryStringInfo(buf, start, end - start);
	else
	{
		char	   *lowered = EmailLower(start, end - start, collid);

		appendStringInfoString(buf, lowered);
		pfree(lowered);
	}
	return buf->len > 0;
}

/*
 * The domain of an address of len bytes as pw.email_domain() has it,
 * palloc'd; NULL when it is empty.
 */
char *
PwEmailDomain(const char *email, size_t len, Oid collid)
{
	const char *start = email;
	const char *end = email + len;
	char	   *domain;
	size_t		dlen;

	/* split_part(email, '@', -1): after the last '@', or all of it */
	for (const char *p = end; p > email; p--)
		if (p[-1] == '@')
		{
			start = p;
			break;
		}
	EmailTrimSpaces(&start, &end);
	domain = EmailLower(start, end - start, collid);
	dlen = strlen(domain);
	while (dlen > 0 && domain[dlen - 1] == '.')
		dlen--;
	if (dlen == 0)
	{
		pfree(domain);
		return NULL;
	}
	domain[dlen] = '\0';
	return domain;
}

/* pw.normalize_email(email text): lower(btrim(email)). */
Datum
pw_normalize_email(PG_FUNCTION_ARGS)
{
	text	   *email = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(cstring_to_text(PwNormalizeEmail(VARDATA_ANY(email),
													  VARSIZE_ANY_EXHDR(email),
													  PG_GET_COLLATION())));
}

/* pw.email_domain(email text): the address's domain, normalised, or NULL. */
Datum
pw_email_domain(PG_FUNCTION_ARGS)
{
	text	   *email = PG_GETARG_TEXT_PP(0);
	char	   *domain = PwEmailDomain(VARDATA_ANY(email), VARSIZE_ANY_EXHDR(email),
									   PG_GET_COLLATION());

	if (domain == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(domain));
}
