/*-------------------------------------------------------------------------
 *
 * confirm.c
 *	  pw.confirm_deliveries(): deliveries that never bounced become
 *	  send_confirmed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"

#include "common/pw_common.h"
#include "common/runs.h"
#include "common/spi.h"
#include "maillog.h"

PG_FUNCTION_INFO_V1(pw_confirm_deliveries);

/* Result column of the confirmation: the carriers confirmed */
#define CONFIRMED_COUNT 1

/*
 * pw.confirm_deliveries(older_than interval): carriers whose address was
 * first delivered before now() - older_than and never bounced become
 * send_confirmed, unless hard_bounced or suppressed.
 */
Datum
pw_confirm_deliveries(PG_FUNCTION_ARGS)
{
	PwCarriers	carriers;
	StringInfoData sql;
	Oid			types[1] = {INTERVALOID};
	Datum		args[1];
	int64		changed;
	int			nestlevel;
	StringInfoData counts;

	args[0] = PG_GETARG_DATUM(0);
	PwRunStart(PW_RUN_CONFIRM, NULL);
	SPI_connect();
	nestlevel = PwSafeSearchPath();
	/*
	 * The extension, pw.deliveries, then the carriers write lock, as an
	 * ingest takes them (docs/internals.md, "Lock order").
	 */
	(void) PwLockExtension(false);
	PwCarriersLoad(&carriers);
	PwSpiRun("LOCK TABLE pw.deliveries IN ROW EXCLUSIVE MODE", SPI_OK_UTILITY);
	PwLockCarriersWrites(&carriers);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH c AS (UPDATE %s c SET %s = 'send_confirmed'"
					 "             FROM pw.deliveries d"
					 "            WHERE lower(btrim(c.%s)) = d.email"
					 "              AND d.first_sent_at <= now() - $1"
					 "              AND d.bounced_at IS NULL"
					 "              AND (d.failed_at IS NULL OR"
					 "                   (d.failed_at < d.last_sent_at AND d.last_sent_at <= now() - $1))"
					 "              AND c.%s IS DISTINCT FROM 'send_confirmed'"
					 "              AND c.%s IS DISTINCT FROM 'hard_bounced'"
					 "              AND NOT EXISTS (SELECT 1 FROM pw.suppressions s WHERE s.email = d.email)"
					 "            RETURNING d.email),"
					 " u AS (UPDATE pw.deliveries d SET confirmed_at = now()"
					 "        WHERE d.email IN (SELECT email FROM c) AND d.confirmed_at IS NULL)"
					 " SELECT count(*) FROM c",
					 carriers.relation, carriers.result_col, carriers.email_col,
					 carriers.result_col, carriers.result_col);
	PwSpiExecute(sql.data, 1, types, args, NULL, false, SPI_OK_SELECT);
	changed = PwSpiGetInt64(0, CONFIRMED_COUNT);
	PwRunCountsInit(&counts);
	PwRunCount(&counts, "confirmed", changed);
	PwRunCountSeconds(&counts, "older_than_seconds",
					  DatumGetFloat8(DirectFunctionCall2(interval_part,
														 CStringGetTextDatum("epoch"),
														 args[0])));
	(void) PwRunRecord(PW_RUN_CONFIRM, NULL, &counts);
	PwScopeEnd(nestlevel);
	SPI_finish();
	PG_RETURN_INT64(changed);
}
