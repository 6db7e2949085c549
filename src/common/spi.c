/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  SPI helpers shared by the subsystems (see spi.h): checked statements,
 *	  typed getters, array parameters, ephemeral named relations and scopes
 *	  of planner settings.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/queryenvironment.h"
#include "utils/timestamp.h"

#include "common/spi.h"

/*
 * Runs a statement, failing unless its result code is "expected"; the
 * caller's memory context is current again afterwards (SPI leaves its
 * procedure context current).
 */
uint64
PwSpiExecute(const char *sql, int nargs, const Oid *types, const Datum *values,
			 const char *nulls, bool read_only, int expected)
{
	MemoryContext callerctx = CurrentMemoryContext;
	int			rc;

	if (nargs > 0)
		rc = SPI_execute_with_args(sql, nargs, (Oid *) types, (Datum *) values,
								   nulls, read_only, 0);
	else
		rc = SPI_execute(sql, read_only, 0);
	if (rc != expected)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("statement failed (%s, expected %s): %s",
						SPI_result_code_string(rc),
						SPI_result_code_string(expected), sql)));
	MemoryContextSwitchTo(callerctx);
	return SPI_processed;
}

/* Runs a statement without parameters, failing unless it returns "expected". */
uint64
PwSpiRun(const char *sql, int expected)
{
	return PwSpiExecute(sql, 0, NULL, NULL, NULL, false, expected);
}

/* Whether a column of type "have" can be read as "wanted". */
static bool
SpiTypeReadableAs(Oid have, Oid wanted)
{
	if (have == wanted)
		return true;
	have = getBaseType(have);
	if (have == wanted)
		return true;
	return wanted == TEXTOID && (have == VARCHAROID || have == BPCHAROID);
}

/*
 * The datum in column col of row row of SPI_tuptable, checked to be of type
 * "type" (InvalidOid: any type).
 */
Datum
PwSpiGetDatum(uint64 row, int col, Oid type, bool *isnull)
{
	TupleDesc	desc;

	if (SPI_tuptable == NULL || row >= SPI_processed)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("row " UINT64_FORMAT " of a result of " UINT64_FORMAT " rows was read",
						row, SPI_tuptable == NULL ? (uint64) 0 : SPI_processed)));
	desc = SPI_tuptable->tupdesc;
	if (col < 1 || col > desc->natts)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("column %d of a result of %d columns was read", col, desc->natts)));
	if (OidIsValid(type) && !SpiTypeReadableAs(TupleDescAttr(desc, col - 1)->atttypid, type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of the result has type %s, expected %s",
						NameStr(TupleDescAttr(desc, col - 1)->attname),
						format_type_be(TupleDescAttr(desc, col - 1)->atttypid),
						format_type_be(type))));
	return SPI_getbinval(SPI_tuptable->vals[row], desc, col, isnull);
}

/* The datum of a column that must not be NULL. */
static Datum
SpiGetNotNull(uint64 row, int col, Oid type)
{
	bool		isnull;
	Datum		d = PwSpiGetDatum(row, col, type, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("unexpected NULL in column \"%s\" of row " UINT64_FORMAT " of the result",
						NameStr(TupleDescAttr(SPI_tuptable->tupdesc, col - 1)->attname),
						row + 1)));
	return d;
}

/* Whether column col of row row is NULL. */
bool
PwSpiIsNull(uint64 row, int col)
{
	bool		isnull;

	(void) PwSpiGetDatum(row, col, InvalidOid, &isnull);
	return isnull;
}

/* An int4 column, not NULL. */
int32
PwSpiGetInt32(uint64 row, int col)
{
	return DatumGetInt32(SpiGetNotNull(row, col, INT4OID));
}

/* An int8 column, not NULL. */
int64
PwSpiGetInt64(uint64 row, int col)
{
	return DatumGetInt64(SpiGetNotNull(row, col, INT8OID));
}

/* An int8 column, if_null when NULL. */
int64
PwSpiGetInt64Or(uint64 row, int col, int64 if_null)
{
	bool		isnull;
	Datum		d = PwSpiGetDatum(row, col, INT8OID, &isnull);

	return isnull ? if_null : DatumGetInt64(d);
}

/* A float8 column, not NULL. */
double
PwSpiGetFloat8(uint64 row, int col)
{
	return DatumGetFloat8(SpiGetNotNull(row, col, FLOAT8OID));
}

/* A bool column, not NULL. */
bool
PwSpiGetBool(uint64 row, int col)
{
	return DatumGetBool(SpiGetNotNull(row, col, BOOLOID));
}

/* An oid column, not NULL. */
Oid
PwSpiGetOid(uint64 row, int col)
{
	return DatumGetObjectId(SpiGetNotNull(row, col, OIDOID));
}

/* A timestamptz column, not NULL. */
TimestampTz
PwSpiGetTimestampTz(uint64 row, int col)
{
	return DatumGetTimestampTz(SpiGetNotNull(row, col, TIMESTAMPTZOID));
}

/*
 * A column as a string (text directly, other types through their output
 * function), palloc'd in the current context; NULL when NULL.
 */
char *
PwSpiGetText(uint64 row, int col)
{
	bool		isnull;
	Datum		d = PwSpiGetDatum(row, col, InvalidOid, &isnull);

	if (isnull)
		return NULL;
	if (SpiTypeReadableAs(SPI_gettypeid(SPI_tuptable->tupdesc, col), TEXTOID))
		return TextDatumGetCString(d);
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/* A column as a string, not NULL. */
char *
PwSpiGetTextNotNull(uint64 row, int col)
{
	(void) SpiGetNotNull(row, col, InvalidOid);
	return PwSpiGetText(row, col);
}

/*
 * Opens a scope of settings: those set by PwScopeSet() hold until
 * PwScopeEnd() with the returned level (or the (sub)transaction aborts).
 */
int
PwScopeBegin(void)
{
	return NewGUCNestLevel();
}

/* Sets a setting for the current scope. */
void
PwScopeSet(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/* Closes a scope of settings, restoring what they were before it. */
void
PwScopeEnd(int level)
{
	AtEOXact_GUC(true, level);
}

/* Opens a scope with the planner settings of plan_flags (PW_PLAN_...). */
int
PwPlannerScopeBegin(int plan_flags)
{
	int			level = PwScopeBegin();

	if (plan_flags & PW_PLAN_NO_HASHJOIN)
		PwScopeSet("enable_hashjoin", "off");
	if (plan_flags & PW_PLAN_NO_MERGEJOIN)
		PwScopeSet("enable_mergejoin", "off");
	if (plan_flags & PW_PLAN_NO_SORT)
		PwScopeSet("enable_sort", "off");
	if (plan_flags & PW_PLAN_NO_PARALLEL)
		PwScopeSet("max_parallel_workers_per_gather", "0");
	if (plan_flags & PW_PLAN_NO_JIT)
		PwScopeSet("jit", "off");
	return level;
}

/* Starts an empty column of element type "type" (in the current context). */
void
PwColumnInit(PwColumn *col, Oid type)
{
	col->type = type;
	col->n = 0;
	col->size = 256;
	col->values = palloc(col->size * sizeof(Datum));
	col->nulls = palloc(col->size * sizeof(bool));
}

/* Empties a column, keeping its space. */
void
PwColumnReset(PwColumn *col)
{
	col->n = 0;
}

/* Appends a value (or a NULL) to a column. */
void
PwColumnAdd(PwColumn *col, Datum value, bool isnull)
{
	if (col->n == col->size)
	{
		col->size *= 2;
		col->values = repalloc_huge(col->values, col->size * sizeof(Datum));
		col->nulls = repalloc_huge(col->nulls, col->size * sizeof(bool));
	}
	col->values[col->n] = value;
	col->nulls[col->n] = isnull;
	col->n++;
}

/* Appends a text value of len bytes, NULL when s is. */
void
PwColumnAddText(PwColumn *col, const char *s, size_t len)
{
	if (s == NULL)
		PwColumnAdd(col, (Datum) 0, true);
	else
		PwColumnAdd(col, PointerGetDatum(cstring_to_text_with_len(s, (int) len)), false);
}

/* Appends a NUL-terminated string, NULL when s is. */
void
PwColumnAddCString(PwColumn *col, const char *s)
{
	PwColumnAddText(col, s, s ? strlen(s) : 0);
}

/* The column as a one-dimensional array datum. */
Datum
PwColumnArray(PwColumn *col)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1];
	int			lbs[1] = {1};

	get_typlenbyvalalign(col->type, &typlen, &typbyval, &typalign);
	dims[0] = col->n;
	return PointerGetDatum(construct_md_array(col->values, col->nulls, 1, dims, lbs,
											  col->type, typlen, typbyval, typalign));
}

/* Runs a statement with the columns as its array parameters $1... */
uint64
PwSpiExecuteColumns(const char *sql, PwColumn **cols, int ncols, int expected,
					int plan_flags)
{
	Oid		   *types = palloc(ncols * sizeof(Oid));
	Datum	   *values = palloc(ncols * sizeof(Datum));
	int			level = 0;
	uint64		n;

	for (int i = 0; i < ncols; i++)
	{
		types[i] = get_array_type(cols[i]->type);
		values[i] = PwColumnArray(cols[i]);
	}
	if (plan_flags != 0)
		level = PwPlannerScopeBegin(plan_flags);
	n = PwSpiExecute(sql, ncols, types, values, NULL, false, expected);
	if (plan_flags != 0)
		PwScopeEnd(level);
	for (int i = 0; i < ncols; i++)
		pfree(DatumGetPointer(values[i]));
	pfree(types);
	pfree(values);
	return n;
}

/* Starts an empty relation of rows (in the current memory context). */
void
PwEphemeralRelInit(PwEphemeralRel *rel, const char *name, int ncols,
				   const char *const *colnames, const Oid *types)
{
	rel->name = name;
	rel->desc = CreateTemplateTupleDesc(ncols);
	for (int i = 0; i < ncols; i++)
		TupleDescInitEntry(rel->desc, (AttrNumber) (i + 1), colnames[i], types[i], -1, 0);
	/* a batch operation: maintenance_work_mem before spilling to disk */
	rel->ts = tuplestore_begin_heap(false, false, Max(work_mem, maintenance_work_mem));
	rel->n = 0;
}

/* Appends a row (whose values are copied). */
void
PwEphemeralRelAdd(PwEphemeralRel *rel, Datum *values, bool *nulls)
{
	tuplestore_putvalues(rel->ts, rel->desc, values, nulls);
	rel->n++;
}

/* Makes the rows visible, by the relation's name, to statements run through SPI. */
void
PwEphemeralRelRegister(PwEphemeralRel *rel)
{
	EphemeralNamedRelation enr = palloc0(sizeof(EphemeralNamedRelationData));

	enr->md.name = pstrdup(rel->name);
	enr->md.reliddesc = InvalidOid;
	enr->md.tupdesc = rel->desc;
	enr->md.enrtype = ENR_NAMED_TUPLESTORE;
	enr->md.enrtuples = (double) rel->n;
	enr->reldata = rel->ts;
	if (SPI_register_relation(enr) != SPI_OK_REL_REGISTER)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not register the ephemeral relation \"%s\"", rel->name)));
}

/* Hides the relation from SPI again and frees its rows. */
void
PwEphemeralRelDrop(PwEphemeralRel *rel)
{
	if (SPI_unregister_relation(rel->name) != SPI_OK_REL_UNREGISTER)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not unregister the ephemeral relation \"%s\"", rel->name)));
	tuplestore_end(rel->ts);
}

/* A text datum of s built in buf, valid until buf is used again. */
Datum
PwTextDatumInBuffer(StringInfo buf, const char *s)
{
	int			len = (int) strlen(s);

	resetStringInfo(buf);
	enlargeStringInfo(buf, VARHDRSZ + len);
	SET_VARSIZE(buf->data, VARHDRSZ + len);
	memcpy(buf->data + VARHDRSZ, s, len);
	return PointerGetDatum(buf->data);
}
