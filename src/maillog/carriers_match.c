/*-------------------------------------------------------------------------
 *
 * carriers_match.c
 *	  Which addresses of an ingested log are carriers: by probing the
 *	  writeback index (lower(btrim(email))) once per address, or by one
 *	  sequential scan of the carriers for many addresses; and
 *	  pw.create_writeback_index(), which creates that index.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

#include "common/spi.h"
#include "ingest_int.h"

PG_FUNCTION_INFO_V1(pw_create_writeback_index);

/*
 * The carriers are scanned instead of probed once per address when the
 * addresses are more than 1/SCAN_RATIO of the carriers (a probe costs
 * about as much as scanning that many rows).
 */
#define SCAN_RATIO 16

/* Result columns of the join of the addresses to the carriers */
#define JOIN_ADDRESS_INDEX 1
#define JOIN_MX 2
#define JOIN_NOT_HARD_BOUNCED 3

/* The expression of the writeback index: the carriers' normalised email. */
static char *
WritebackIndexExpr(const PwCarriers *carriers)
{
	return psprintf("lower(btrim(%s))", carriers->email_col);
}

/*
 * Whether the carriers have a valid index on lower(btrim(email)) to probe
 * (without one the planner is left to hash the carriers).
 */
static bool
HaveWritebackIndex(PwCarriers *carriers)
{
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2];

	values[0] = ObjectIdGetDatum(carriers->relid);
	values[1] = CStringGetTextDatum(WritebackIndexExpr(carriers));
	return PwSpiExecute("SELECT 1 FROM pg_catalog.pg_index i"
						" WHERE i.indrelid = $1 AND i.indisvalid AND i.indnatts = 1 AND i.indpred IS NULL"
						"   AND pg_catalog.pg_get_indexdef(i.indexrelid, 1, false) = $2",
						2, types, values, NULL, false, SPI_OK_SELECT) > 0;
}

/* Keeps mx in a->mx when it sorts after it in the collation mxcoll (max(mx)). */
static inline void
KeepGreatestMx(MaillogIngest *in, AddrAgg *a, Datum mx, Oid mxcoll)
{
	text	   *t = DatumGetTextPP(mx);

	if (a->mx == NULL ||
		varstr_cmp(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), a->mx, strlen(a->mx),
				   mxcoll) > 0)
		a->mx = MaillogIntern(in, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
}

/*
 * Finds the carriers of every address by a join (the addresses sorted, so
 * that the index is probed in its order): whether there is one, the
 * greatest mx, and whether one of them is not hard_bounced yet.
 */
static void
JoinCarriers(MaillogIngest *in, AddrAgg **sorted, PwCarriers *carriers, bool probe)
{
	PwColumn	addrs;
	PwColumn   *cols[1] = {&addrs};
	StringInfoData sql;
	uint64		n;
	Oid			mxcoll = carriers->mx_att.collation;
	MemoryContext old = MemoryContextSwitchTo(in->cxt);

	if (!OidIsValid(mxcoll))
		mxcoll = DEFAULT_COLLATION_OID;
	PwColumnInit(&addrs, TEXTOID);
	for (int i = 0; i < in->naddrs; i++)
		PwColumnAddCString(&addrs, sorted[i]->addr);
	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "SELECT a.i, c.%s, c.%s IS DISTINCT FROM 'hard_bounced'"
					 "  FROM unnest($1) WITH ORDINALITY AS a(addr, i)"
					 "  JOIN %s c ON lower(btrim(c.%s)) = a.addr",
					 carriers->mx_col, carriers->result_col, carriers->relation,
					 carriers->email_col);
	n = PwSpiExecuteColumns(sql.data, cols, 1, SPI_OK_SELECT,
							probe ? PW_PLAN_PROBE : 0);
	for (uint64 r = 0; r < n; r++)
	{
		int64		i = PwSpiGetInt64(r, JOIN_ADDRESS_INDEX);
		bool		isnull;
		Datum		mx = PwSpiGetDatum(r, JOIN_MX, InvalidOid, &isnull);
		AddrAgg    *a;

		if (i < 1 || i > in->naddrs)
			elog(ERROR, "pw.ingest_maillog: address " INT64_FORMAT " out of range", i);
		a = sorted[i - 1];
		a->in_carriers = true;
		if (!isnull)
			KeepGreatestMx(in, a, mx, mxcoll);
		if (PwSpiGetBool(r, JOIN_NOT_HARD_BOUNCED))
			a->to_bounce = true;
	}
	MemoryContextSwitchTo(old);
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Whether ScanCarriers() can read a carriers column itself: plain text or
 * varchar with a deterministic collation, readable by the current role
 * (table_select: with a table-wide privilege).
 */
static bool
ScanReadable(PwCarriers *carriers, const PwCarrierColumn *att, bool table_select)
{
	if (att->type != TEXTOID && att->type != VARCHAROID)
		return false;
	if (!OidIsValid(att->collation) || !get_collation_isdeterministic(att->collation))
		return false;
	if (!table_select &&
		pg_attribute_aclcheck(carriers->relid, att->attnum, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		return false;
	return true;
}

/*
 * Most carriers are not in the log: a bitmap of two bits per address (at
 * least 8 bits an address, small enough to stay in the CPU caches) answers
 * most of them without touching the hash table.  Returns the bitmap, its
 * size in bits in *nbits.
 */
static uint8 *
BuildAddressFilter(MaillogIngest *in, uint64 *nbits)
{
	uint64		size = 1024;
	uint8	   *filter;

	while (size < (uint64) in->naddrs * 8)
		size *= 2;
	filter = palloc0(size / 8);
	for (int i = 0; i < in->naddrs; i++)
	{
		uint32		h = hash_bytes((const unsigned char *) in->list[i]->addr,
								   strlen(in->list[i]->addr));
		uint64		b1 = h & (size - 1);
		uint64		b2 = murmurhash32(h) & (size - 1);

		filter[b1 / 8] |= 1 << (b1 % 8);
		filter[b2 / 8] |= 1 << (b2 % 8);
	}
	*nbits = size;
	return filter;
}

/* Whether an address of hash h may be in the filter (false: surely not). */
static inline bool
FilterMayHold(const uint8 *filter, uint64 nbits, uint32 h)
{
	uint64		b1 = h & (nbits - 1);
	uint64		b2 = murmurhash32(h) & (nbits - 1);

	return (filter[b1 / 8] & (1 << (b1 % 8))) != 0 &&
		(filter[b2 / 8] & (1 << (b2 % 8))) != 0;
}

/*
 * Takes a scanned carrier of an address of the log: its mx, and, when it
 * is not hard_bounced yet, its row version to mark if the address bounced.
 */
static inline void
NoteScannedCarrier(MaillogIngest *in, AddrAgg *a, TupleTableSlot *slot,
				   const PwCarrierColumn *mx, const PwCarrierColumn *result)
{
	bool		isnull;
	Datum		d;

	a->in_carriers = true;
	d = slot_getattr(slot, mx->attnum, &isnull);
	if (!isnull)
		KeepGreatestMx(in, a, d, mx->collation);
	d = slot_getattr(slot, result->attnum, &isnull);
	if (!isnull)
	{
		text	   *r = DatumGetTextPP(d);

		if (VARSIZE_ANY_EXHDR(r) == strlen("hard_bounced") &&
			memcmp(VARDATA_ANY(r), "hard_bounced", strlen("hard_bounced")) == 0)
			return;
	}
	a->to_bounce = true;
	if (a->bounce_count > 0)
	{
		if (in->nbtids == in->maxbtids)
		{
			in->maxbtids = Max(1024, in->maxbtids * 2);
			in->btids = in->btids == NULL ?
				palloc(in->maxbtids * sizeof(ItemPointerData)) :
				repalloc_huge(in->btids, in->maxbtids * sizeof(ItemPointerData));
		}
		in->btids[in->nbtids++] = slot->tts_tid;
	}
}

/*
 * Finds the carriers of every address by one sequential scan of the
 * carriers table, hashing lower(btrim(email)) into the addresses (lower()
 * only called when it could change something): cheaper than one index probe
 * per address when the addresses are many.  Does what the join of
 * JoinCarriers() does; returns false, having done nothing, where it could
 * not (not a plain table, row-level security, columns of other types or
 * nondeterministic collations, privileges short of SELECT on the columns).
 */
static bool
ScanCarriers(MaillogIngest *in, PwCarriers *carriers)
{
	const PwCarrierColumn *email = &carriers->email_att;
	const PwCarrierColumn *mx = &carriers->mx_att;
	const PwCarrierColumn *result = &carriers->result_att;
	bool		table_select;
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	StringInfoData key;
	uint64		n = 0;
	uint64		nbits;
	uint8	   *filter;
	MemoryContext old;

	if (get_rel_relkind(carriers->relid) != RELKIND_RELATION ||
		check_enable_rls(carriers->relid, InvalidOid, true) != RLS_NONE)
		return false;
	table_select = pg_class_aclcheck(carriers->relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK;
	if (!ScanReadable(carriers, email, table_select) ||
		!ScanReadable(carriers, mx, table_select) ||
		!ScanReadable(carriers, result, table_select))
		return false;

	old = MemoryContextSwitchTo(in->cxt);
	initStringInfo(&key);

	filter = BuildAddressFilter(in, &nbits);

	/* what a statement run through SPI now would see */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	snapshot = GetActiveSnapshot();
	rel = table_open(carriers->relid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;
		text	   *t;
		bool		nonempty;
		StrEntry   *e;
		uint32		h;

		if ((++n & 4095) == 0)
			CHECK_FOR_INTERRUPTS();
		d = slot_getattr(slot, email->attnum, &isnull);
		if (isnull)
			continue;
		t = (text *) PG_DETOAST_DATUM_PACKED(d);
		nonempty = PwNormalizeEmailInto(&key, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
										email->collation);
		if ((Pointer) t != DatumGetPointer(d))
			pfree(t);
		if (!nonempty)
			continue;
		h = hash_bytes((const unsigned char *) key.data, key.len);
		if (!FilterMayHold(filter, nbits, h))
			continue;
		e = strtab_lookup_hash(in->addrs, key.data, h);
		if (e == NULL)
			continue;

		NoteScannedCarrier(in, e->agg, slot, mx, result);
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	PopActiveSnapshot();
	pfree(key.data);
	pfree(filter);
	MemoryContextSwitchTo(old);
	return true;
}

/* The number of carriers the planner assumes (estimated from the pages if never analyzed). */
static double
CarriersReltuples(PwCarriers *carriers)
{
	Relation	rel = table_open(carriers->relid, AccessShareLock);
	double		reltuples = rel->rd_rel->reltuples;

	if (reltuples < 0)
		reltuples = (double) RelationGetNumberOfBlocks(rel) * 100;
	table_close(rel, NoLock);
	return reltuples;
}

/*
 * Which addresses are carriers: by probing the index once per address, or,
 * for many addresses (or without the index), by one scan of the carriers.
 * Returns whether they were scanned (then in->btids holds the row versions
 * of the bounced carriers to mark); *have_index says whether the carriers
 * have the writeback index.
 */
bool
MaillogMatchCarriers(MaillogIngest *in, AddrAgg **sorted, PwCarriers *carriers,
					 bool *have_index)
{
	double		reltuples = 0;
	bool		scanned = false;

	*have_index = HaveWritebackIndex(carriers);
	if (*have_index)
		reltuples = CarriersReltuples(carriers);
	if (!*have_index || (double) in->naddrs * SCAN_RATIO > reltuples)
		scanned = ScanCarriers(in, carriers);
	if (!scanned)
		JoinCarriers(in, sorted, carriers, *have_index);
	MaillogPhaseDone(in, scanned ? "carriers matched by a scan" : "carriers matched by index probes");
	return scanned;
}

/*
 * pw.create_writeback_index(): the index on the carriers' normalised email
 * (lower(btrim(email))) the writeback joins on, created if missing.
 */
Datum
pw_create_writeback_index(PG_FUNCTION_ARGS)
{
	PwCarriers	carriers;
	char	   *relname;
	char		idxname[NAMEDATALEN];
	char	   *sql;
	int			nestlevel;

	SPI_connect();
	nestlevel = PwSafeSearchPath();
	PwCarriersLoad(&carriers);
	relname = get_rel_name(carriers.relid);
	snprintf(idxname, sizeof(idxname), "%.40s_pw_email_norm_idx", relname);
	sql = psprintf("CREATE INDEX IF NOT EXISTS %s ON %s (%s)",
				   quote_identifier(idxname), carriers.relation,
				   WritebackIndexExpr(&carriers));
	PwSpiRun(sql, SPI_OK_UTILITY);
	PwScopeEnd(nestlevel);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(idxname));
}
