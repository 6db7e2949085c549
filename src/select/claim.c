/*-------------------------------------------------------------------------
 *
 * claim.c
 *	  Claiming a selection: the claim lock that serialises claimers of one
 *	  sent column, the row locks taken batch by batch, and the final marking
 *	  of the claimed rows as sent.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"

#include "common/pw_common.h"
#include "common/runs.h"
#include "common/spi.h"
#include "select/select.h"

/* locktag_field4 of the claim lock: keeps it apart from SQL advisory locks */
#define SEL_CLAIM_LOCK_SPACE 0x7077

/* The single column of the row-lock query: the ids locked */
#define LOCKED_COL_ID 1

/*
 * Claim calls of one sent column are serialised by a transaction-level lock
 * on (relation, sent column), so that concurrent claimers count each other's
 * claims against today's caps.  That needs a fresh snapshot per query:
 * READ COMMITTED only.
 */
void
SelClaimLock(SelState *st)
{
	LOCKTAG		tag;
	AttrNumber	attnum;

	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("claiming carriers requires the READ COMMITTED isolation level"),
				 errhint("Claim in a READ COMMITTED transaction, or select with claim => false.")));
	attnum = get_attnum(st->carriers.relid, st->sent_col_raw);
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, st->carriers.relid,
						 (uint32) attnum, SEL_CLAIM_LOCK_SPACE);
	PwLockAcquireSaying(&tag, ExclusiveLock, "the claim lock of this sent column");
}

/* The ids of rows[from..from + n) that are not dropped, as an int8[] datum. */
static Datum
SelRowIdArray(SelState *st, int64 from, int64 n, int *nids)
{
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	int			k = 0;
	Datum		arr;

	for (int64 i = from; i < from + n; i++)
		if (!st->rows[i].dropped)
			ids[k++] = Int64GetDatum(st->rows[i].id);
	arr = PointerGetDatum(construct_array(ids, k, INT8OID, 8,
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	pfree(ids);
	*nids = k;
	return arr;
}

/* Drops the rows of rows[from..nrows) whose id is not in the locked result. */
static void
SelDropUnlocked(SelState *st, int64 from, uint64 nlocked)
{
	HTAB	   *locked;
	HASHCTL		ctl;

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64);
	ctl.hcxt = CurrentMemoryContext;
	locked = hash_create("pw claimed ids", Max(st->nrows - from, 16), &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (uint64 i = 0; i < nlocked; i++)
	{
		int64		id = PwSpiGetInt64(i, LOCKED_COL_ID);

		(void) hash_search(locked, &id, HASH_ENTER, NULL);
	}
	for (int64 i = from; i < st->nrows; i++)
	{
		SelRow	   *r = &st->rows[i];

		if (hash_search(locked, &r->id, HASH_FIND, NULL) == NULL)
		{
			r->dropped = true;
			r->bucket->taken--;
			st->ntaken--;
		}
	}
	hash_destroy(locked);
}

/*
 * Claim: locks rows[from..nrows) with FOR UPDATE SKIP LOCKED, re-checking
 * that they are still unsent; a row another session holds (or has sent
 * meanwhile) is dropped and gives its bucket's allowance back.
 */
void
SelLockPending(SelState *st, int64 from)
{
	PwCarriers *c = &st->carriers;
	StringInfoData sql;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];
	int			nids;
	uint64		nlocked;
	int64		n = st->nrows - from;

	if (n <= 0)
		return;
	values[0] = SelRowIdArray(st, from, n, &nids);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT c.%s::int8 FROM %s c"
					 " WHERE c.%s = ANY ($1) AND c.%s IS NULL AND c.%s IN (%s)"
					 "   FOR UPDATE OF c SKIP LOCKED",
					 c->id_col, c->relation, c->id_col, st->sent_col,
					 c->result_col, st->pool_sql);
	nlocked = PwSpiExecute(sql.data, 1, types, values, NULL, st->read_only,
						   SPI_OK_SELECT);
	if (nlocked != (uint64) nids)
		SelDropUnlocked(st, from, nlocked);
	SPI_freetuptable(SPI_tuptable);
	pfree(sql.data);
}

/*
 * Marks the claimed rows sent (the profile's sent column = now()) and
 * records them as the claim run's carriers.
 */
void
SelMarkSent(SelState *st)
{
	PwCarriers *c = &st->carriers;
	StringInfoData sql;
	Oid			types[1] = {INT8ARRAYOID};
	Datum		values[1];
	int			nids;

	if (st->ntaken == 0)
		return;
	values[0] = SelRowIdArray(st, 0, st->nrows, &nids);
	initStringInfo(&sql);
	appendStringInfo(&sql, "UPDATE %s c SET %s = now() WHERE c.%s = ANY ($1)",
					 c->relation, st->sent_col, c->id_col);
	(void) PwSpiExecute(sql.data, 1, types, values, NULL, st->read_only,
						SPI_OK_UPDATE);
	if (st->run_id != 0)
		PwRunAddCarriers(st->run_id, values[0]);
	pfree(sql.data);
}
