/*-------------------------------------------------------------------------
 *
 * pw_deliverability.c
 *	  Module entry point: every concern registers its GUCs, hooks and
 *	  workers from one XxxInit() called here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "pw_deliverability.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Registers every module's GUCs, hooks and background workers. */
void
_PG_init(void)
{
	PwLifecycleInit();
	PwProgressInit();
	PwCarriersInit();
	PwTokenInit();
	PwRunsInit();
	MxResolverInit();
	MxTagInit();
	MxWorkerInit();
	SelInit();
	VerdictInit();
	MaillogInit();
	MarkGUCPrefixReserved(PW_GUC_PREFIX);
}
