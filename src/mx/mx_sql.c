/*-------------------------------------------------------------------------
 *
 * mx_sql.c
 *	  SQL entry points of MX tagging: pw.mx_tag() runs a tagging run in the
 *	  calling backend and transaction; pw.resolve_mx() is a one-off look at
 *	  a domain's MX records.  (The classifier's SQL functions are in
 *	  classify.c, the background tagger's in worker.c.)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "mx.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_mx_tag);
PG_FUNCTION_INFO_V1(pw_resolve_mx);

/* Columns of pw.mx_tag()'s result */
enum
{
	MX_TAG_COL_LOOKED_UP,
	MX_TAG_COL_TAGGED,
	MX_TAG_COL_NONE,
	MX_TAG_COL_INVALID,
	MX_TAG_COL_FAILED,
	MX_TAG_COL_CARRIERS_UPDATED,
	MX_TAG_COL_SECONDS,
	MX_TAG_NCOLS
};

/* Columns of pw.resolve_mx()'s result */
enum
{
	RESOLVE_MX_COL_PREFERENCE,
	RESOLVE_MX_COL_EXCHANGE,
	RESOLVE_MX_NCOLS
};

/*
 * pw.mx_tag(max_domains int DEFAULT 20000): tags up to max_domains domains
 * in this backend and transaction; one row of counts.
 */
Datum
pw_mx_tag(PG_FUNCTION_ARGS)
{
	int			max_domains = PG_ARGISNULL(0) ? 20000 : PG_GETARG_INT32(0);
	MxTagCounts c;
	TupleDesc	tupdesc;
	Datum		values[MX_TAG_NCOLS];
	bool		nulls[MX_TAG_NCOLS] = {0};

	if (max_domains < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_domains must not be negative")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SPI_connect();
	MxTagRun(max_domains, false, &c);
	SPI_finish();

	values[MX_TAG_COL_LOOKED_UP] = Int64GetDatum(c.looked_up);
	values[MX_TAG_COL_TAGGED] = Int64GetDatum(c.tagged);
	values[MX_TAG_COL_NONE] = Int64GetDatum(c.none);
	values[MX_TAG_COL_INVALID] = Int64GetDatum(c.invalid);
	values[MX_TAG_COL_FAILED] = Int64GetDatum(c.failed);
	values[MX_TAG_COL_CARRIERS_UPDATED] = Int64GetDatum(c.carriers);
	values[MX_TAG_COL_SECONDS] = Float8GetDatum(c.seconds);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

/*
 * pw.resolve_mx(domain text): the domain's MX records, lowest preference
 * first; no rows for NXDOMAIN or no MX; an error when DNS fails.
 */
Datum
pw_resolve_mx(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *t = PG_GETARG_TEXT_PP(0);
	char		qname[MX_NAME_BUF];
	MxDomainStatus st;
	MxExchange *exchanges;
	int			n;

	st = MxDomainNormalizeDb(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), qname);
	if (st != MX_DOMAIN_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid domain name \"%s\": %s", text_to_cstring(t),
						MxDomainStatusText(st)),
				 errhint("A domain needs two or more labels of letters, digits and hyphens.")));

	InitMaterializedSRF(fcinfo, 0);
	n = MxLookupExchanges(qname, &exchanges);
	for (int i = 0; i < n; i++)
	{
		Datum		values[RESOLVE_MX_NCOLS];
		bool		nulls[RESOLVE_MX_NCOLS] = {0};

		values[RESOLVE_MX_COL_PREFERENCE] = Int32GetDatum(exchanges[i].preference);
		values[RESOLVE_MX_COL_EXCHANGE] = CStringGetTextDatum(exchanges[i].host);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_NULL();
}
