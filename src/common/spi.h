/*-------------------------------------------------------------------------
 *
 * spi.h
 *	  SPI helpers shared by the subsystems: statements run with a checked
 *	  result code, typed getters of result columns (by column number
 *	  constants, NULLs checked), parameters collected as arrays, rows handed
 *	  to statements as ephemeral named relations, and a scope of planner
 *	  settings set around statements.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_SPI_H
#define PW_SPI_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/tuplestore.h"

/*
 * Runs a statement through SPI with nargs parameters (types, values, and
 * nulls as SPI_execute_with_args takes them: NULL for none) and fails
 * unless the result code is "expected".  Returns SPI_processed, with the
 * caller's memory context current again.
 */
extern uint64 PwSpiExecute(const char *sql, int nargs, const Oid *types,
						   const Datum *values, const char *nulls,
						   bool read_only, int expected);
/* PwSpiExecute() without parameters, not read-only. */
extern uint64 PwSpiRun(const char *sql, int expected);

/*
 * Typed getters of column "col" (1-based, a named constant of the caller)
 * of row "row" of SPI_tuptable.  They check the row and the column's type
 * and fail with a clear error on a NULL; the ...Or variants return
 * "if_null" instead.  PwSpiGetText() pallocs in the current context and
 * returns NULL on a NULL.
 */
extern bool PwSpiIsNull(uint64 row, int col);
extern int32 PwSpiGetInt32(uint64 row, int col);
extern int64 PwSpiGetInt64(uint64 row, int col);
extern int64 PwSpiGetInt64Or(uint64 row, int col, int64 if_null);
extern double PwSpiGetFloat8(uint64 row, int col);
extern bool PwSpiGetBool(uint64 row, int col);
extern Oid	PwSpiGetOid(uint64 row, int col);
extern char *PwSpiGetText(uint64 row, int col);
extern char *PwSpiGetTextNotNull(uint64 row, int col);
extern TimestampTz PwSpiGetTimestampTz(uint64 row, int col);
extern Datum PwSpiGetDatum(uint64 row, int col, Oid type, bool *isnull);

/*
 * Planner settings set for the statements of a scope and reset at its end
 * (or when the (sub)transaction aborts).
 */
#define PW_PLAN_NO_HASHJOIN		0x01
#define PW_PLAN_NO_MERGEJOIN	0x02
#define PW_PLAN_NO_SORT			0x04
#define PW_PLAN_NO_PARALLEL		0x08
#define PW_PLAN_NO_JIT			0x10
/* joins that probe an index (or row versions): no hashing, no sorting */
#define PW_PLAN_PROBE			(PW_PLAN_NO_HASHJOIN | PW_PLAN_NO_MERGEJOIN)

extern int	PwScopeBegin(void);
extern void PwScopeSet(const char *name, const char *value);
extern void PwScopeEnd(int level);
extern int	PwPlannerScopeBegin(int plan_flags);

/* The values of one array parameter, collected row by row. */
typedef struct PwColumn
{
	Oid			type;			/* of the elements */
	int			n;
	int			size;
	Datum	   *values;
	bool	   *nulls;
} PwColumn;

extern void PwColumnInit(PwColumn *col, Oid type);
extern void PwColumnReset(PwColumn *col);
extern void PwColumnAdd(PwColumn *col, Datum value, bool isnull);
extern void PwColumnAddText(PwColumn *col, const char *s, size_t len);
extern void PwColumnAddCString(PwColumn *col, const char *s);
extern Datum PwColumnArray(PwColumn *col);

/*
 * Runs a statement whose parameters $1.. are the given columns as arrays,
 * with the planner settings plan_flags (0 for none).  Returns
 * SPI_processed.
 */
extern uint64 PwSpiExecuteColumns(const char *sql, PwColumn **cols, int ncols,
								  int expected, int plan_flags);

/*
 * Rows handed to the statements run through SPI as an ephemeral named
 * relation (as a trigger's transition table is): no array to build and
 * unnest.
 */
typedef struct PwEphemeralRel
{
	const char *name;
	TupleDesc	desc;
	Tuplestorestate *ts;
	int64		n;
} PwEphemeralRel;

extern void PwEphemeralRelInit(PwEphemeralRel *rel, const char *name, int ncols,
							   const char *const *colnames, const Oid *types);
extern void PwEphemeralRelAdd(PwEphemeralRel *rel, Datum *values, bool *nulls);
extern void PwEphemeralRelRegister(PwEphemeralRel *rel);
extern void PwEphemeralRelDrop(PwEphemeralRel *rel);

/*
 * A text datum of a string built in buf (grown as needed): valid until buf
 * is used again; no palloc per value.
 */
extern Datum PwTextDatumInBuffer(StringInfo buf, const char *s);

#endif							/* PW_SPI_H */
