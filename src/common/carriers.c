/*-------------------------------------------------------------------------
 *
 * carriers.c
 *	  The carriers contract: resolve pw.carriers_config against the catalog
 *	  and refuse a relation or a column that is missing or has the wrong type.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "parser/parse_coerce.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"

#include "common/pw_common.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_carriers_check);

/* Registers nothing yet: the contract is configuration as data. */
void
PwCarriersInit(void)
{
}

/* Reads one text column of the single pw.carriers_config row. */
static char *
ConfigValue(HeapTuple tuple, TupleDesc desc, int attno)
{
	bool		isnull;

	(void) SPI_getbinval(tuple, desc, attno, &isnull);
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("pw.carriers_config has a NULL in column \"%s\"",
						SPI_fname(desc, attno))));
	return SPI_getvalue(tuple, desc, attno);
}

/* Whether a column type is acceptable where "wanted_type" is expected. */
static bool
TypeCompatible(Oid have, Oid wanted)
{
	if (have == wanted)
		return true;
	if (wanted == INT8OID)
		return have == INT4OID || have == INT2OID;
	if (wanted == TEXTOID)
		return have == VARCHAROID || have == BPCHAROID ||
			TypeCategory(have) == TYPCATEGORY_STRING;
	/* a send time is a point in time: timestamptz only */
	return false;
}

/*
 * Checks that the carriers relation has "column" of a type compatible with
 * "wanted_type", fills *att with its number, type and collation and returns
 * the quoted name.  "role" says what the column is for, in the error
 * message.
 */
static char *
ResolveColumn(PwCarriers *carriers, const char *column, const char *role,
			  Oid wanted_type, PwCarrierColumn *att)
{
	AttrNumber	attnum = get_attnum(carriers->relid, column);
	Oid			atttype;
	int32		typmod;
	Oid			collation;

	if (attnum == InvalidAttrNumber || attnum < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("carriers relation %s has no column \"%s\" (the %s column)",
						carriers->relation, column, role),
				 errhint("Add the column or name the right one in pw.carriers_config or pw.profiles.")));
	get_atttypetypmodcoll(carriers->relid, attnum, &atttype, &typmod, &collation);
	if (!TypeCompatible(atttype, wanted_type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of carriers relation %s has type %s, expected %s",
						column, carriers->relation, format_type_be(atttype),
						format_type_be(wanted_type)),
				 wanted_type == TIMESTAMPTZOID &&
				 (atttype == TIMESTAMPOID || atttype == DATEOID) ?
				 errhint("A send time is a point in time: convert the column with ALTER TABLE %s ALTER COLUMN %s TYPE timestamptz.",
						 carriers->relation, quote_identifier(column)) : 0));
	att->attnum = attnum;
	att->type = atttype;
	att->collation = collation;
	return pstrdup(quote_identifier(column));
}

/*
 * Checks a further column of the carriers relation (as ResolveColumn does)
 * and returns its quoted name.
 */
char *
PwCarriersCheckColumn(PwCarriers *carriers, const char *column,
					  const char *role, Oid wanted_type)
{
	PwCarrierColumn att;

	return ResolveColumn(carriers, column, role, wanted_type, &att);
}

/*
 * Loads pw.carriers_config and checks it against the catalog.  The caller
 * must be connected to SPI; results are palloc'd in the caller's context.
 */
void
PwCarriersLoad(PwCarriers *carriers)
{
	MemoryContext callerctx = CurrentMemoryContext;
	MemoryContext oldctx;
	HeapTuple	tuple;
	TupleDesc	desc;
	char	   *relation;
	char	   *cols[4];
	List	   *names;
	RangeVar   *rv;

	if (SPI_execute("SELECT relation, id_column, email_column, result_column, mx_column"
					" FROM pw.carriers_config", true, 2) != SPI_OK_SELECT)
		elog(ERROR, "could not read pw.carriers_config");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pw.carriers_config must hold exactly one row, it holds " UINT64_FORMAT,
						SPI_processed),
				 errhint("INSERT INTO pw.carriers_config DEFAULT VALUES restores the defaults.")));

	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	oldctx = MemoryContextSwitchTo(callerctx);
	relation = ConfigValue(tuple, desc, 1);
	for (int i = 0; i < 4; i++)
		cols[i] = ConfigValue(tuple, desc, i + 2);

	names = stringToQualifiedNameList(relation);
	if (list_length(names) < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("carriers relation \"%s\" is not schema-qualified", relation),
				 errhint("Name it as schema.table in pw.carriers_config.relation: it is never looked up through the search_path.")));
	rv = makeRangeVarFromNameList(names);
	carriers->relid = RangeVarGetRelid(rv, AccessShareLock, true);
	if (!OidIsValid(carriers->relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("carriers relation \"%s\" does not exist", relation),
				 errhint("Create it or set pw.carriers_config.relation to the table holding the carriers.")));
	if (get_rel_relkind(carriers->relid) != RELKIND_RELATION &&
		get_rel_relkind(carriers->relid) != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("carriers relation \"%s\" is not a table", relation)));
	carriers->relation = quote_qualified_identifier(get_namespace_name(get_rel_namespace(carriers->relid)),
													get_rel_name(carriers->relid));
	carriers->id_col = ResolveColumn(carriers, cols[0], "id", INT8OID,
									 &carriers->id_att);
	carriers->email_col = ResolveColumn(carriers, cols[1], "email", TEXTOID,
										&carriers->email_att);
	carriers->result_col = ResolveColumn(carriers, cols[2], "verification result",
										 TEXTOID, &carriers->result_att);
	carriers->mx_col = ResolveColumn(carriers, cols[3], "MX provider", TEXTOID,
									 &carriers->mx_att);
	MemoryContextSwitchTo(oldctx);
}

/*
 * pw.carriers_check(sent_column name DEFAULT NULL): the resolved carriers
 * contract, or an error saying what is missing.
 */
Datum
pw_carriers_check(PG_FUNCTION_ARGS)
{
	PwCarriers	carriers;
	TupleDesc	tupdesc;
	Datum		values[6];
	bool		nulls[6] = {0};
	char	   *sent = NULL;
	int			nestlevel;
	MemoryContext callerctx = CurrentMemoryContext;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	SPI_connect();
	nestlevel = PwSafeSearchPath();
	/* the results are used after SPI_finish(): not in SPI's context */
	MemoryContextSwitchTo(callerctx);
	PwCarriersLoad(&carriers);
	if (!PG_ARGISNULL(0))
		sent = PwCarriersCheckColumn(&carriers, NameStr(*PG_GETARG_NAME(0)),
									 "sent", TIMESTAMPTZOID);
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();

	values[0] = ObjectIdGetDatum(carriers.relid);
	values[1] = CStringGetTextDatum(carriers.id_col);
	values[2] = CStringGetTextDatum(carriers.email_col);
	values[3] = CStringGetTextDatum(carriers.result_col);
	values[4] = CStringGetTextDatum(carriers.mx_col);
	if (sent)
		values[5] = CStringGetTextDatum(sent);
	else
		nulls[5] = true;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
