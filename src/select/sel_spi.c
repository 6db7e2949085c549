/*-------------------------------------------------------------------------
 *
 * sel_spi.c
 *	  SPI execution with a checked result code, and typed getters of
 *	  SPI_tuptable's columns with NULL checks, for the selection.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"

#include "select/select.h"

/*
 * Runs a query through SPI, failing on anything but the expected result;
 * the caller's memory context is current again afterwards (SPI leaves its
 * procedure context current).  Returns SPI_processed.
 */
uint64
SelSpiExecute(const char *sql, int nargs, const Oid *types, const Datum *values,
			  bool read_only, int expected)
{
	MemoryContext callercxt = CurrentMemoryContext;
	int			rc;

	if (nargs > 0)
		rc = SPI_execute_with_args(sql, nargs, (Oid *) types, (Datum *) values,
								   NULL, read_only, 0);
	else
		rc = SPI_execute(sql, read_only, 0);
	if (rc != expected)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("pw selection: query failed (%s): %s",
						SPI_result_code_string(rc), sql)));
	MemoryContextSwitchTo(callercxt);
	return SPI_processed;
}

/* Column col of row row of SPI_tuptable, failing on a NULL. */
Datum
SelSpiGetDatumNotNull(uint64 row, int col)
{
	bool		isnull;
	Datum		d;

	Assert(SPI_tuptable != NULL && row < SPI_processed);
	d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("pw selection: unexpected NULL in column \"%s\" of row " UINT64_FORMAT,
						SPI_fname(SPI_tuptable->tupdesc, col), row + 1)));
	return d;
}

/* An int4 column, not NULL. */
int32
SelSpiGetInt32(uint64 row, int col)
{
	return DatumGetInt32(SelSpiGetDatumNotNull(row, col));
}

/* An int8 column, not NULL. */
int64
SelSpiGetInt64(uint64 row, int col)
{
	return DatumGetInt64(SelSpiGetDatumNotNull(row, col));
}

/* A float8 column, not NULL. */
double
SelSpiGetFloat8(uint64 row, int col)
{
	return DatumGetFloat8(SelSpiGetDatumNotNull(row, col));
}

/* A boolean column, not NULL. */
bool
SelSpiGetBool(uint64 row, int col)
{
	return DatumGetBool(SelSpiGetDatumNotNull(row, col));
}

/* A column as text (palloc'd in the current context), or NULL. */
char *
SelSpiGetText(uint64 row, int col)
{
	Assert(SPI_tuptable != NULL && row < SPI_processed);
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/* A column as text, failing on a NULL. */
char *
SelSpiGetTextNotNull(uint64 row, int col)
{
	char	   *s = SelSpiGetText(row, col);

	if (s == NULL)
		(void) SelSpiGetDatumNotNull(row, col);
	return s;
}
