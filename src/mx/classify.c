/*-------------------------------------------------------------------------
 *
 * classify.c
 *	  SQL face of the classifier: pw.classify_mx(), pw.normalize_domain(),
 *	  pw.domain_problem(), pw.registrable_domain(), the loader of
 *	  pw.mx_suffix_rules shared with the tagger, and MxDomainNormalizeDb(),
 *	  the validator of names in the database encoding.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "classify_core.h"
#include "common/spi.h"
#include "mx.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_classify_mx);
PG_FUNCTION_INFO_V1(pw_normalize_domain);
PG_FUNCTION_INFO_V1(pw_domain_problem);
PG_FUNCTION_INFO_V1(pw_registrable_domain);

/* Suffix rules cached in fn_extra for the duration of one statement */
typedef struct RulesCache
{
	MxSuffixRule *rules;
	size_t		nrules;
} RulesCache;

/* Columns of the suffix-rules query */
#define RULES_COL_SUFFIX	1
#define RULES_COL_LABEL		2

/*
 * A name of *len bytes in the database encoding as UTF-8: itself in a UTF-8
 * database or when it is ASCII, else converted (palloc'd; *len updated).
 * NULL when a character has no Unicode equivalent, or in a SQL_ASCII
 * database, when the bytes are not UTF-8.
 */
static const char *
NameToUtf8(const char *name, size_t *len)
{
	static Oid	proc = InvalidOid;
	int			enc = GetDatabaseEncoding();
	unsigned char *buf;
	size_t		size;
	bool		ascii = true;

	if (enc == PG_UTF8)
		return name;
	for (size_t i = 0; i < *len && ascii; i++)
		ascii = !IS_HIGHBIT_SET(name[i]);
	/* too long to be valid anyway: MxDomainNormalize() refuses it as it is */
	if (ascii || *len > PW_INPUT_MAX + 1)
		return name;
	if (enc == PG_SQL_ASCII)
		return pg_verify_mbstr(PG_UTF8, name, (int) *len, true) ? name : NULL;
	if (!OidIsValid(proc))
		proc = FindDefaultConversionProc(enc, PG_UTF8);
	if (!OidIsValid(proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("default conversion function for encoding \"%s\" to \"%s\" does not exist",
						GetDatabaseEncodingName(), pg_encoding_to_char(PG_UTF8)),
				 errhint("Domain names are converted to UTF-8 for IDNA.")));
	size = (*len + 1) * MAX_CONVERSION_GROWTH + 1;
	buf = palloc(size);
	if (pg_do_encoding_conversion_buf(proc, enc, PG_UTF8,
									  (unsigned char *) unconstify(char *, name),
									  (int) *len, buf, (int) size, true) < (int) *len)
	{
		pfree(buf);
		return NULL;
	}
	*len = strlen((char *) buf);
	return (const char *) buf;
}

/*
 * MxDomainNormalize() of a name in the database encoding (converted to
 * UTF-8 for IDNA first); MX_DOMAIN_NOT_UNICODE when it cannot be.  Errors
 * out when libidn2 runs out of memory.
 */
MxDomainStatus
MxDomainNormalizeDb(const char *name, size_t len, char *out)
{
	const char *utf8 = NameToUtf8(name, &len);
	MxDomainStatus st;

	if (utf8 == NULL)
	{
		out[0] = '\0';
		return MX_DOMAIN_NOT_UNICODE;
	}
	st = MxDomainNormalize(utf8, len, out);
	if (utf8 != name)
		pfree(unconstify(char *, utf8));
	if (st == MX_DOMAIN_NO_MEMORY)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("libidn2 could not allocate while normalising a domain name.")));
	return st;
}

/*
 * Reads pw.mx_suffix_rules into cxt, sorted for MxSuffixMatch().  Connects
 * to SPI itself (nested connections are fine).
 */
void
MxSuffixRulesLoad(MemoryContext cxt, MxSuffixRule **rules, size_t *nrules)
{
	MxSuffixRule *r;
	uint64		n;

	SPI_connect();
	n = PwSpiExecute("SELECT suffix, label FROM pw.mx_suffix_rules",
					 0, NULL, NULL, NULL, true, SPI_OK_SELECT);
	r = MemoryContextAllocZero(cxt, sizeof(MxSuffixRule) * (n + 1));
	for (uint64 i = 0; i < n; i++)
	{
		r[i].suffix = MemoryContextStrdup(cxt, PwSpiGetTextNotNull(i, RULES_COL_SUFFIX));
		r[i].label = MemoryContextStrdup(cxt, PwSpiGetTextNotNull(i, RULES_COL_LABEL));
	}
	SPI_finish();
	MxSuffixRulesSort(r, n);
	*rules = r;
	*nrules = n;
}

/*
 * pw.classify_mx(exchanges text[]): the operator label of a domain whose
 * MX hosts are given in preference order; 'none' for a null MX or when no
 * exchange is a valid host name; NULL for an empty array.
 */
Datum
pw_classify_mx(PG_FUNCTION_ARGS)
{
	ArrayType  *arr = PG_GETARG_ARRAYTYPE_P(0);
	RulesCache *cache = (RulesCache *) fcinfo->flinfo->fn_extra;
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	const char **hosts;
	size_t	   *lens;
	size_t		nhosts = 0;
	char		label[MX_NAME_BUF];

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("exchanges must be a one-dimensional array")));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nelems);
	if (nelems == 0)
		PG_RETURN_NULL();

	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(RulesCache));
		MxSuffixRulesLoad(fcinfo->flinfo->fn_mcxt, &cache->rules, &cache->nrules);
		fcinfo->flinfo->fn_extra = cache;
	}

	hosts = palloc(sizeof(char *) * nelems);
	lens = palloc(sizeof(size_t) * nelems);
	for (int i = 0; i < nelems; i++)
	{
		text	   *t;

		/* a NULL element is no host at all: skipped */
		if (nulls[i])
			continue;
		t = DatumGetTextPP(elems[i]);
		lens[nhosts] = VARSIZE_ANY_EXHDR(t);
		hosts[nhosts] = NameToUtf8(VARDATA_ANY(t), &lens[nhosts]);
		/* nor is one that cannot be converted to Unicode */
		if (hosts[nhosts] != NULL)
			nhosts++;
	}
	if (!MxClassifyExchanges(cache->rules, cache->nrules, hosts, lens, nhosts, label))
		PG_RETURN_TEXT_P(cstring_to_text("none"));
	PG_RETURN_TEXT_P(cstring_to_text(label));
}

/* pw.normalize_domain(text): the normal form of a host name, NULL if invalid. */
Datum
pw_normalize_domain(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	char		out[MX_NAME_BUF];

	if (MxDomainNormalizeDb(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), out) != MX_DOMAIN_OK)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/* pw.domain_problem(text): why a name is not a valid host name, NULL if it is. */
Datum
pw_domain_problem(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	char		out[MX_NAME_BUF];
	MxDomainStatus st = MxDomainNormalizeDb(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), out);

	if (st == MX_DOMAIN_OK)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(MxDomainStatusText(st)));
}

/*
 * pw.registrable_domain(host text): the registrable domain of a host under
 * the ICANN section of the Public Suffix List; NULL for an invalid name or
 * a public suffix.
 */
Datum
pw_registrable_domain(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	char		out[MX_NAME_BUF];
	const char *reg;

	if (MxDomainNormalizeDb(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), out) != MX_DOMAIN_OK)
		PG_RETURN_NULL();
	reg = MxRegistrableDomain(out);
	if (reg == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(reg));
}
