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
#include "commands/extension.h"
#include "commands/trigger.h"
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
#include "common/spi.h"
#include "pw_deliverability.h"

PG_FUNCTION_INFO_V1(pw_carriers_check);
PG_FUNCTION_INFO_V1(pw_carriers_config_check);
PG_FUNCTION_INFO_V1(pw_profiles_sent_column_check);

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
 * Looks "column" up in the carriers relation: its attribute number (invalid
 * when there is no such column), type and collation.
 */
static AttrNumber
FindColumn(Oid relid, const char *column, Oid *type, Oid *collation)
{
	AttrNumber	attnum = get_attnum(relid, column);
	int32		typmod;

	if (attnum == InvalidAttrNumber || attnum < 0)
		return InvalidAttrNumber;
	get_atttypetypmodcoll(relid, attnum, type, &typmod, collation);
	return attnum;
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
	Oid			atttype = InvalidOid;
	Oid			collation = InvalidOid;
	AttrNumber	attnum = FindColumn(carriers->relid, column, &atttype, &collation);

	if (attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("carriers relation %s has no column \"%s\" (the %s column)",
						carriers->relation, column, role),
				 errhint("Add the column or name the right one in pw.carriers_config or pw.profiles.")));
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

/* The columns of pw.carriers_config, in the order of the PwCarriers fields */
static const char *const config_columns[5] = {
	"relation", "id_column", "email_column", "result_column", "mx_column"
};

/*
 * Reads the single pw.carriers_config row: the relation, then the id, email,
 * result and MX columns, palloc'd in the caller's context.  The caller must
 * be connected to SPI.
 */
static void
ReadConfig(char *values[5])
{
	MemoryContext callerctx = CurrentMemoryContext;
	MemoryContext oldctx;

	if (SPI_execute(psprintf("SELECT %s, %s, %s, %s, %s FROM pw.carriers_config",
							 config_columns[0], config_columns[1], config_columns[2],
							 config_columns[3], config_columns[4]),
					true, 2) != SPI_OK_SELECT)
		elog(ERROR, "could not read pw.carriers_config");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pw.carriers_config must hold exactly one row, it holds " UINT64_FORMAT,
						SPI_processed),
				 errhint("INSERT INTO pw.carriers_config DEFAULT VALUES restores the defaults.")));
	oldctx = MemoryContextSwitchTo(callerctx);
	for (int i = 0; i < 5; i++)
		values[i] = ConfigValue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1);
	MemoryContextSwitchTo(oldctx);
}

/*
 * Resolves the configured carriers relation (schema-qualified, a table) into
 * carriers->relid and carriers->relation.  A relation that does not exist
 * is an error unless missing_ok, when false is returned.
 */
static bool
ResolveRelation(PwCarriers *carriers, const char *relation, bool missing_ok)
{
	List	   *names = stringToQualifiedNameList(relation);
	char		relkind;

	if (list_length(names) < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("carriers relation \"%s\" is not schema-qualified", relation),
				 errhint("Name it as schema.table in pw.carriers_config.relation: it is never looked up through the search_path.")));
	carriers->relid = RangeVarGetRelid(makeRangeVarFromNameList(names), AccessShareLock, true);
	if (!OidIsValid(carriers->relid))
	{
		if (missing_ok)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("carriers relation \"%s\" does not exist", relation),
				 errhint("Create it or set pw.carriers_config.relation to the table holding the carriers.")));
	}
	relkind = get_rel_relkind(carriers->relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("carriers relation \"%s\" is not a table", relation)));
	carriers->relation = quote_qualified_identifier(get_namespace_name(get_rel_namespace(carriers->relid)),
													get_rel_name(carriers->relid));
	return true;
}

/* Checks a carriers contract (relation and columns) against the catalog. */
static void
ResolveContract(PwCarriers *carriers, char *config[5])
{
	ResolveRelation(carriers, config[0], false);
	carriers->id_col = ResolveColumn(carriers, config[1], "id", INT8OID,
									 &carriers->id_att);
	carriers->email_col = ResolveColumn(carriers, config[2], "email", TEXTOID,
										&carriers->email_att);
	carriers->result_col = ResolveColumn(carriers, config[3], "verification result",
										 TEXTOID, &carriers->result_att);
	carriers->mx_col = ResolveColumn(carriers, config[4], "MX provider", TEXTOID,
									 &carriers->mx_att);
}

/*
 * Loads pw.carriers_config and checks it against the catalog.  The caller
 * must be connected to SPI; results are palloc'd in the caller's context,
 * which is current again on return.
 */
void
PwCarriersLoad(PwCarriers *carriers)
{
	MemoryContext callerctx = CurrentMemoryContext;
	char	   *config[5];

	ReadConfig(config);
	MemoryContextSwitchTo(callerctx);
	ResolveContract(carriers, config);
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

/* Columns of the profiles query of WarnProfilesSentColumns() */
#define PROFILES_COL_NAME			1
#define PROFILES_COL_SENT_COLUMN	2

/*
 * Warns of each profile whose sent column the (just changed) carriers
 * relation lacks or holds with another type than timestamptz: the
 * selection of that profile fails until its sent_column is changed too.
 * Warnings, not errors, so that the relation and the sent columns can be
 * changed one after the other.
 */
static void
WarnProfilesSentColumns(PwCarriers *carriers)
{
	uint64		n = PwSpiExecute("SELECT name, sent_column::text FROM pw.profiles ORDER BY name",
								 0, NULL, NULL, NULL, true, SPI_OK_SELECT);

	for (uint64 i = 0; i < n; i++)
	{
		char	   *name = PwSpiGetTextNotNull(i, PROFILES_COL_NAME);
		char	   *column = PwSpiGetTextNotNull(i, PROFILES_COL_SENT_COLUMN);
		Oid			type = InvalidOid;
		Oid			collation;

		if (FindColumn(carriers->relid, column, &type, &collation) != InvalidAttrNumber &&
			TypeCompatible(type, TIMESTAMPTZOID))
			continue;
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("carriers relation %s has no timestamptz column \"%s\", the sent column of profile \"%s\"",
						carriers->relation, column, name),
				 errhint("Set pw.profiles.sent_column of the profile to a column of the new relation.")));
	}
}

/*
 * The new row of a row trigger on INSERT or UPDATE and (in *desc) its
 * descriptor, or an error if the function is not called as a trigger.
 */
static HeapTuple
TriggerNewRow(FunctionCallInfo fcinfo, const char *name, TupleDesc *desc)
{
	TriggerData *trigdata;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s() must be called as a trigger", name)));
	trigdata = (TriggerData *) fcinfo->context;
	*desc = trigdata->tg_relation->rd_att;
	return TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
}

/*
 * pw.carriers_config_check(): AFTER INSERT OR UPDATE trigger of
 * pw.carriers_config, the checks of pw.carriers_check() on the new row,
 * then warnings for profiles whose sent column the relation lacks.  Skipped
 * inside extension scripts (the shipped row names a relation the user
 * creates later); triggers do not fire with session_replication_role =
 * replica (pg_restore --disable-triggers disables them too).
 */
Datum
pw_carriers_config_check(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	HeapTuple	tuple = TriggerNewRow(fcinfo, "pw.carriers_config_check", &desc);
	char	   *config[5];
	PwCarriers	carriers;
	int			nestlevel;

	if (creating_extension)
		return PointerGetDatum(NULL);
	/* the new row itself: the statement's snapshot does not show it */
	for (int i = 0; i < 5; i++)
	{
		config[i] = SPI_getvalue(tuple, desc, SPI_fnumber(desc, config_columns[i]));
		if (config[i] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("pw.carriers_config has a NULL in column \"%s\"",
							config_columns[i])));
	}
	SPI_connect();
	nestlevel = PwSafeSearchPath();
	ResolveContract(&carriers, config);
	WarnProfilesSentColumns(&carriers);
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/*
 * pw.profiles_sent_column_check(): AFTER INSERT OR UPDATE OF sent_column
 * trigger of pw.profiles, the check of pw.carriers_check(sent_column) on
 * the new row's sent column.  When the configured carriers relation does
 * not exist (yet) the column cannot be checked: a WARNING says so.
 * Skipped like pw.carriers_config_check().
 */
Datum
pw_profiles_sent_column_check(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	HeapTuple	tuple = TriggerNewRow(fcinfo, "pw.profiles_sent_column_check", &desc);
	int			attno = SPI_fnumber(desc, "sent_column");
	char	   *sent;
	char	   *config[5];
	PwCarriers	carriers;
	int			nestlevel;

	if (creating_extension)
		return PointerGetDatum(NULL);
	if (attno <= 0)
		elog(ERROR, "pw.profiles has no column sent_column");
	sent = SPI_getvalue(tuple, desc, attno);
	SPI_connect();
	nestlevel = PwSafeSearchPath();
	ReadConfig(config);
	if (ResolveRelation(&carriers, config[0], true))
		PwCarriersCheckColumn(&carriers, sent, "sent", TIMESTAMPTZOID);
	else
		ereport(WARNING,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("sent column \"%s\" of profile \"%s\" not checked: carriers relation \"%s\" does not exist",
						sent, SPI_getvalue(tuple, desc, SPI_fnumber(desc, "name")), config[0]),
				 errhint("Create the carriers relation, then check the contract with SELECT * FROM pw.carriers_check('%s').",
						 sent)));
	AtEOXact_GUC(true, nestlevel);
	SPI_finish();
	return PointerGetDatum(NULL);
}
