/*-------------------------------------------------------------------------
 *
 * search_path.c
 *	  A fixed search_path for the SPI queries of the extension's C functions,
 *	  so that a caller's search_path cannot substitute functions, operators
 *	  or tables for the built-in ones those queries name without a schema.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pw_common.h"
#include "common/spi.h"
#include "pw_deliverability.h"

/*
 * Sets search_path to "pg_catalog, pg_temp" until AtEOXact_GUC(true, level)
 * is called with the returned level (or the (sub)transaction aborts).
 */
int
PwSafeSearchPath(void)
{
	int			level = PwScopeBegin();

	PwScopeSet("search_path", "pg_catalog, pg_temp");
	return level;
}
