/*-------------------------------------------------------------------------
 *
 * classify.c
 *	  SQL face of the classifier: pw.classify_mx(), pw.normalize_domain(),
 *	  pw.domain_problem(), pw.registrable_domain(), and the loader of
 *	  pw.mx_suffix_rules shared with the tagger.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "classify_core.h"
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

/* A text column of an SPI result row that the table declares NOT NULL. */
static char *
RuleColumn(HeapTuple tup, TupleDesc desc, int col)
{
	char	   *value = SPI_getvalue(tup, desc, col);

	if (value == NULL)
		elog(ERROR, "pw.mx_suffix_rules has a NULL %s", SPI_fname(desc, col));
	return value;
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
	if (SPI_execute("SELECT suffix, label FROM pw.mx_suffix_rules", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pw.mx_suffix_rules");
	n = SPI_processed;
	r = MemoryContextAllocZero(cxt, sizeof(MxSuffixRule) * (n + 1));
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		r[i].suffix = MemoryContextStrdup(cxt, RuleColumn(tup, desc, RULES_COL_SUFFIX));
		r[i].label = MemoryContextStrdup(cxt, RuleColumn(tup, desc, RULES_COL_LABEL));
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
		/* a NULL element is no host at all: skipped */
		if (nulls[i])
			continue;
		hosts[nhosts] = VARDATA_ANY(DatumGetTextPP(elems[i]));
		lens[nhosts++] = VARSIZE_ANY_EXHDR(DatumGetTextPP(elems[i]));
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

	if (MxDomainNormalize(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), out) != MX_DOMAIN_OK)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(out));
}

/* pw.domain_problem(text): why a name is not a valid host name, NULL if it is. */
Datum
pw_domain_problem(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);
	char		out[MX_NAME_BUF];
	MxDomainStatus st = MxDomainNormalize(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), out);

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

	if (MxDomainNormalize(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), out) != MX_DOMAIN_OK)
		PG_RETURN_NULL();
	reg = MxRegistrableDomain(out);
	if (reg == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(reg));
}
