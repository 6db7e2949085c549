/*-------------------------------------------------------------------------
 *
 * resolver.c
 *	  An asynchronous DNS resolver on c-ares 1.18, driven by PostgreSQL's
 *	  wait machinery: a WaitEventSet over c-ares' sockets, the process latch
 *	  and postmaster death, with c-ares' next timeout as the wait timeout, so
 *	  that cancel, SIGTERM and postmaster death interrupt a batch promptly.
 *
 *	  Callbacks given to MxResolverQuery() should only record answers: new
 *	  queries are issued by the caller between MxResolverStep() calls, which
 *	  bounds the work done inside one ares_process_fd() call by the number of
 *	  queries in flight.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/nameser.h>

#include <ares.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "mx.h"
#include "pw_deliverability.h"

/* Socket receive buffer asked of the kernel (bytes) */
#define DNS_RCVBUF (4 * 1024 * 1024)

static char *dns_servers = NULL;
static int	dns_concurrency = 200;
static int	dns_timeout_ms = 500;
static int	dns_tries = 3;
static int	dns_max_qps = 0;
static int	dns_timeout_retries = 1;

/* One socket c-ares asked us to watch */
typedef struct DnsSocket
{
	ares_socket_t fd;
	bool		readable;
	bool		writable;
} DnsSocket;

/*
 * The resolver.  Deleting its memory context (also on error) destroys the
 * channel and frees the wait set.
 */
struct MxResolver
{
	MemoryContext cxt;
	ares_channel channel;
	bool		have_channel;
	bool		destroying;		/* callbacks must do nothing */
	WaitEventSet *wes;
	bool		wes_dirty;
	int			nsocks;
	int			maxsocks;
	DnsSocket  *socks;
	int			inflight;
	int			concurrency;
	int			max_qps;
	double		tokens;
	TimestampTz last_refill;
	uint64		sent;
};

/* A query in flight: the caller's callback and the resolver it counts in */
typedef struct DnsQuery
{
	MxResolver *res;
	MxDnsCallback cb;
	void	   *arg;
} DnsQuery;

/* Checks a dns_servers value: a comma-separated list of host[:port]. */
static bool
CheckDnsServers(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;

	if (p == NULL)
		return true;
	for (; *p; p++)
	{
		if (!(isalnum((unsigned char) *p) || strchr(".:,[]-_ ", *p) != NULL))
		{
			GUC_check_errdetail("Expected a comma-separated list of host:port, e.g. 127.0.0.1:5353.");
			return false;
		}
	}
	return true;
}

/* Defines the resolver GUCs. */
void
MxResolverInit(void)
{
	DefineCustomStringVariable(PW_GUC_PREFIX ".dns_servers",
							   "DNS servers for MX tagging (host:port,...); empty means the system resolv.conf.",
							   NULL, &dns_servers, "",
							   PGC_SUSET, 0, CheckDnsServers, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".dns_concurrency",
							"Most DNS queries in flight at once.",
							NULL, &dns_concurrency, 200, 1, 5000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".dns_timeout_ms",
							"Timeout of one DNS query attempt.",
							NULL, &dns_timeout_ms, 500, 10, 60000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".dns_tries",
							"Attempts per DNS query (per server) before giving up.",
							NULL, &dns_tries, 3, 1, 20,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".dns_max_qps",
							"Most DNS queries sent per second (0: no limit).",
							NULL, &dns_max_qps, 0, 0, 10000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".dns_timeout_retries",
							"Times a lookup that timed out is queried again, after the rest of its batch, before it is recorded failed.",
							"Each time with dns_tries attempts; other DNS errors are recorded at once.",
							&dns_timeout_retries, 1, 0, 10,
							PGC_SUSET, 0, NULL, NULL, NULL);
}

/* The dns_timeout_retries setting. */
int
MxResolverTimeoutRetries(void)
{
	return dns_timeout_retries;
}

/* c-ares' socket-state callback: remember which sockets to watch. */
static void
TrackSocketState(void *data, ares_socket_t fd, int readable, int writable)
{
	MxResolver *res = (MxResolver *) data;
	int			i;

	for (i = 0; i < res->nsocks; i++)
		if (res->socks[i].fd == fd)
			break;
	if (!readable && !writable)
	{
		if (i < res->nsocks)
		{
			res->socks[i] = res->socks[res->nsocks - 1];
			res->nsocks--;
			res->wes_dirty = true;
		}
		return;
	}
	if (i == res->nsocks)
	{
		if (res->nsocks == res->maxsocks)
		{
			/* only reached outside error paths: repalloc may not fail here */
			int			newmax = res->maxsocks * 2;
			DnsSocket *n = MemoryContextAllocExtended(res->cxt, sizeof(DnsSocket) * newmax,
														MCXT_ALLOC_NO_OOM);

			if (n == NULL)
				return;
			memcpy(n, res->socks, sizeof(DnsSocket) * res->nsocks);
			res->socks = n;
			res->maxsocks = newmax;
		}
		res->socks[i].fd = fd;
		res->nsocks++;
	}
	else if (res->socks[i].readable == (readable != 0) &&
			 res->socks[i].writable == (writable != 0))
		return;
	res->socks[i].readable = readable != 0;
	res->socks[i].writable = writable != 0;
	res->wes_dirty = true;
}

/* Destroys the channel and frees the wait set; safe to call twice. */
static void
DestroyChannel(void *arg)
{
	MxResolver *res = (MxResolver *) arg;

	res->destroying = true;
	if (res->have_channel)
	{
		res->have_channel = false;
		ares_destroy(res->channel);
	}
	if (res->wes != NULL)
	{
		FreeWaitEventSet(res->wes);
		res->wes = NULL;
	}
}

/*
 * Creates a resolver configured from the GUCs, in a new memory context
 * under parent.
 */
MxResolver *
MxResolverCreate(MemoryContext parent)
{
	static bool library_ready = false;
	MemoryContext cxt;
	MxResolver *res;
	MemoryContextCallback *cb;
	struct ares_options opts;
	int			mask;
	int			rc;
	bool		servers = dns_servers != NULL && dns_servers[0] != '\0';

	if (!library_ready)
	{
		rc = ares_library_init(ARES_LIB_INIT_ALL);
		if (rc != ARES_SUCCESS)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialise c-ares: %s", ares_strerror(rc))));
		library_ready = true;
	}

	cxt = AllocSetContextCreate(parent, "pw resolver", ALLOCSET_DEFAULT_SIZES);
	res = MemoryContextAllocZero(cxt, sizeof(MxResolver));
	res->cxt = cxt;
	res->maxsocks = 8;
	res->socks = MemoryContextAllocZero(cxt, sizeof(DnsSocket) * res->maxsocks);
	res->concurrency = dns_concurrency;
	res->max_qps = dns_max_qps;
	res->tokens = 1;
	res->last_refill = GetCurrentTimestamp();
	cb = MemoryContextAllocZero(cxt, sizeof(MemoryContextCallback));
	cb->func = DestroyChannel;
	cb->arg = res;
	MemoryContextRegisterResetCallback(cxt, cb);

	memset(&opts, 0, sizeof(opts));
	mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
		ARES_OPT_SOCK_RCVBUF | ARES_OPT_FLAGS;

	/*
	 * SERVFAIL and REFUSED come back to us as such (the tagger retries them
	 * later with backoff) instead of being retried at once by c-ares.
	 */
	opts.flags = ARES_FLAG_NOCHECKRESP;
	opts.sock_state_cb = TrackSocketState;
	opts.sock_state_cb_data = res;
	opts.timeout = dns_timeout_ms;
	opts.tries = dns_tries;
	opts.socket_receive_buffer_size = DNS_RCVBUF;
	if (servers)
	{
		/* configured servers only: never read the system's resolv.conf */
		mask |= ARES_OPT_RESOLVCONF;
		opts.resolvconf_path = "/dev/null";
	}
	rc = ares_init_options(&res->channel, &opts, mask);
	if (rc != ARES_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not create a DNS channel: %s", ares_strerror(rc))));
	res->have_channel = true;
	if (servers)
	{
		rc = ares_set_servers_ports_csv(res->channel, dns_servers);
		if (rc != ARES_SUCCESS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid " PW_GUC_PREFIX ".dns_servers \"%s\": %s",
							dns_servers, ares_strerror(rc)),
					 errhint("Use a comma-separated list of IP:port, e.g. 127.0.0.1:5353.")));
	}
	return res;
}

/* Destroys a resolver and its memory. */
void
MxResolverDestroy(MxResolver *res)
{
	MemoryContextDelete(res->cxt);
}

/* Adds tokens to the rate limiter for the time elapsed. */
static void
RefillRateTokens(MxResolver *res)
{
	TimestampTz now;
	long		secs;
	int			usecs;

	if (res->max_qps <= 0)
		return;
	now = GetCurrentTimestamp();
	TimestampDifference(res->last_refill, now, &secs, &usecs);
	res->tokens += (secs + usecs / 1e6) * res->max_qps;
	/* at most a tenth of a second's worth (and one query) of burst */
	res->tokens = Min(res->tokens, Max(1.0, res->max_qps / 10.0));
	res->last_refill = now;
}

/* Whether another query may be sent now (concurrency and rate limits). */
bool
MxResolverCanSend(MxResolver *res)
{
	if (res->inflight >= res->concurrency)
		return false;
	if (res->max_qps > 0)
	{
		if (res->tokens < 1)
			RefillRateTokens(res);
		if (res->tokens < 1)
			return false;
	}
	return true;
}

/* Whether no query is in flight. */
bool
MxResolverIdle(MxResolver *res)
{
	return res->inflight == 0;
}

/* c-ares' completion callback: forwards to the caller's. */
static void
ForwardAnswer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	DnsQuery *q = (DnsQuery *) arg;
	MxResolver *res = q->res;

	if (res->destroying)
		return;
	res->inflight--;
	q->cb(q->arg, status, status == ARES_SUCCESS ? abuf : NULL,
		  status == ARES_SUCCESS ? alen : 0);
	pfree(q);
}

/* Sends one query (class IN); cb is called from a later MxResolverStep(). */
void
MxResolverQuery(MxResolver *res, const char *name, int type,
				MxDnsCallback cb, void *arg)
{
	DnsQuery *q = MemoryContextAlloc(res->cxt, sizeof(DnsQuery));

	q->res = res;
	q->cb = cb;
	q->arg = arg;
	res->inflight++;
	res->sent++;
	if (res->max_qps > 0)
		res->tokens -= 1;
	ares_query(res->channel, name, ns_c_in, type, ForwardAnswer, q);
}

/* Rebuilds the wait set after c-ares opened or closed sockets. */
static void
RebuildWaitSet(MxResolver *res)
{
	if (res->wes != NULL)
	{
		FreeWaitEventSet(res->wes);
		res->wes = NULL;
	}
	res->wes = CreateWaitEventSet(res->cxt, res->nsocks + 2);
	AddWaitEventToSet(res->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(res->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < res->nsocks; i++)
	{
		uint32		ev = 0;

		if (res->socks[i].readable)
			ev |= WL_SOCKET_READABLE;
		if (res->socks[i].writable)
			ev |= WL_SOCKET_WRITEABLE;
		AddWaitEventToSet(res->wes, ev, res->socks[i].fd, NULL,
						  (void *) (intptr_t) i);
	}
	res->wes_dirty = false;
}

/*
 * Waits once for c-ares' sockets, its next timeout, the latch or (when
 * want_send and the rate limiter holds back) the next token, then lets
 * c-ares process what happened.  Honours interrupts.
 */
void
MxResolverStep(MxResolver *res, bool want_send)
{
	struct timeval maxtv = {1, 0};
	struct timeval tv;
	struct timeval *tvp;
	long		timeout;
	WaitEvent	events[16];
	int			nev;
	bool		handled = false;

	CHECK_FOR_INTERRUPTS();
	if (res->wes == NULL || res->wes_dirty)
		RebuildWaitSet(res);

	tvp = ares_timeout(res->channel, &maxtv, &tv);
	timeout = tvp->tv_sec * 1000L + (tvp->tv_usec + 999) / 1000;
	if (want_send && res->max_qps > 0 && res->inflight < res->concurrency)
	{
		long		wait_ms = (long) ((1 - res->tokens) * 1000.0 / res->max_qps) + 1;

		timeout = Min(timeout, Max(wait_ms, 1));
	}
	if (res->inflight == 0 && !want_send)
		timeout = 0;

	nev = WaitEventSetWait(res->wes, timeout, events, lengthof(events),
						   PG_WAIT_EXTENSION);
	for (int i = 0; i < nev; i++)
	{
		WaitEvent  *ev = &events[i];

		if (ev->events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		else if (ev->events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
		{
			ares_socket_t fd = ev->fd;

			ares_process_fd(res->channel,
							(ev->events & WL_SOCKET_READABLE) ? fd : ARES_SOCKET_BAD,
							(ev->events & WL_SOCKET_WRITEABLE) ? fd : ARES_SOCKET_BAD);
			handled = true;
			/* the callbacks may have opened or closed sockets */
			if (res->wes_dirty)
				break;
		}
	}
	/* expire timed-out queries */
	if (!handled)
		ares_process_fd(res->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	CHECK_FOR_INTERRUPTS();
}

/* A short description of a c-ares status for last_error. */
const char *
MxDnsStatusText(int status)
{
	switch (status)
	{
		case ARES_ESERVFAIL:
			return "SERVFAIL";
		case ARES_EREFUSED:
			return "REFUSED";
		case ARES_ETIMEOUT:
			return "timeout";
		case ARES_ECONNREFUSED:
			return "connection refused";
		case ARES_ENOTFOUND:
			return "NXDOMAIN";
		case ARES_ENODATA:
			return "no data";
		case ARES_EFORMERR:
			return "FORMERR";
		case ARES_ENOTIMP:
			return "NOTIMP";
		case ARES_EBADRESP:
			return "bad response";
		default:
			return ares_strerror(status);
	}
}
