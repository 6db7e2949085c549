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

#include <arpa/inet.h>
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

/* Longest dns_servers entry: "[" IPv6 "]:" port */
#define DNS_ENTRY_MAX (INET6_ADDRSTRLEN + 8)

/*
 * Parses one dns_servers entry (IPv4, IPv4:port, IPv6, [IPv6] or
 * [IPv6]:port) into *node; on failure returns false with the reason in
 * errbuf.
 */
static bool
ParseDnsServer(const char *entry, size_t len, struct ares_addr_port_node *node,
			   char *errbuf, size_t errlen)
{
	char		buf[DNS_ENTRY_MAX + 1];
	char	   *host = buf;
	char	   *port = NULL;
	char	   *colon;

	if (len == 0)
	{
		snprintf(errbuf, errlen, "An entry is empty.");
		return false;
	}
	if (len > DNS_ENTRY_MAX)
	{
		snprintf(errbuf, errlen, "Entry \"%.*s...\" is too long for an address and port.",
				 DNS_ENTRY_MAX, entry);
		return false;
	}
	memcpy(buf, entry, len);
	buf[len] = '\0';
	if (buf[0] == '[')
	{
		char	   *close = strchr(buf, ']');

		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
		{
			snprintf(errbuf, errlen, "Entry \"%s\" is not [IPv6] or [IPv6]:port.", buf);
			return false;
		}
		*close = '\0';
		host = buf + 1;
		if (close[1] == ':')
			port = close + 2;
	}
	else if ((colon = strchr(buf, ':')) != NULL && strchr(colon + 1, ':') == NULL)
	{
		/* one colon: IPv4:port (a bare IPv6 address has several) */
		*colon = '\0';
		port = colon + 1;
	}
	memset(node, 0, sizeof(*node));
	if (inet_pton(AF_INET, host, &node->addr.addr4) == 1)
		node->family = AF_INET;
	else if (inet_pton(AF_INET6, host, &node->addr.addr6) == 1)
		node->family = AF_INET6;
	else
	{
		snprintf(errbuf, errlen, "\"%s\" is not a numeric IPv4 or IPv6 address (host names cannot be used).",
				 host);
		return false;
	}
	if (port != NULL)
	{
		char	   *end;
		long		p;

		errno = 0;
		p = strtol(port, &end, 10);
		if (port[0] < '0' || port[0] > '9' || *end != '\0' || errno != 0 ||
			p < 1 || p > 65535)
		{
			snprintf(errbuf, errlen, "Port \"%s\" of \"%s\" is not a number from 1 to 65535.",
					 port, host);
			return false;
		}
		node->udp_port = node->tcp_port = (int) p;
	}
	return true;
}

/*
 * Parses a dns_servers value, a comma-separated list of entries (spaces
 * around them are ignored), into a list of c-ares servers palloc'd in the
 * current memory context (*servers may be NULL to only check).  On failure
 * returns false with the reason in errbuf.  The one rule of the setting:
 * its check hook and MxResolverCreate() both use it.
 */
static bool
ParseDnsServers(const char *value, struct ares_addr_port_node **servers,
				char *errbuf, size_t errlen)
{
	struct ares_addr_port_node *head = NULL;
	struct ares_addr_port_node **tail = &head;
	const char *p = value;

	for (;;)
	{
		const char *end = strchr(p, ',');
		size_t		len;
		struct ares_addr_port_node node;

		if (end == NULL)
			end = p + strlen(p);
		while (p < end && *p == ' ')
			p++;
		len = end - p;
		while (len > 0 && p[len - 1] == ' ')
			len--;
		if (!ParseDnsServer(p, len, &node, errbuf, errlen))
			return false;
		if (servers != NULL)
		{
			*tail = palloc(sizeof(node));
			**tail = node;
			tail = &(*tail)->next;
		}
		if (*end == '\0')
			break;
		p = end + 1;
	}
	if (servers != NULL)
		*servers = head;
	return true;
}

/* Check hook of dns_servers: every entry a numeric address, port optional. */
static bool
CheckDnsServers(char **newval, void **extra, GucSource source)
{
	char		err[256];

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (ParseDnsServers(*newval, NULL, err, sizeof(err)))
		return true;
	GUC_check_errdetail("%s", err);
	GUC_check_errhint("Use a comma-separated list of numeric addresses with an optional port, e.g. 127.0.0.1:5353, [::1]:53; leave it empty to use the system's resolv.conf.");
	return false;
}

/* Defines the resolver GUCs. */
void
MxResolverInit(void)
{
	DefineCustomStringVariable(PW_GUC_PREFIX ".dns_servers",
							   "Sets the DNS servers MX tagging queries: a comma-separated list of numeric addresses with optional ports.",
							   "IPv4 or IPv4:port, IPv6 or [IPv6]:port (port 53 when omitted); empty means the servers of the system's resolv.conf.", &dns_servers, "",
							   PGC_SUSET, 0, CheckDnsServers, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".dns_concurrency",
							"Sets the maximum number of DNS queries in flight at once.",
							NULL, &dns_concurrency, 200, 1, 5000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".dns_timeout_ms",
							"Sets the timeout of one DNS query attempt.",
							NULL, &dns_timeout_ms, 500, 10, 60000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".dns_tries",
							"Sets how many times each DNS query is tried per server before it fails.",
							NULL, &dns_tries, 3, 1, 20,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(PW_GUC_PREFIX ".dns_max_qps",
							"Sets the maximum number of DNS queries sent per second (0 means no limit).",
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
		struct ares_addr_port_node *list;
		char		err[256];

		MemoryContext oldcxt = MemoryContextSwitchTo(cxt);

		/* the check hook accepted the value: this only fails on a bug */
		if (!ParseDnsServers(dns_servers, &list, err, sizeof(err)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid " PW_GUC_PREFIX ".dns_servers \"%s\"", dns_servers),
					 errdetail("%s", err)));
		rc = ares_set_servers_ports(res->channel, list);
		MemoryContextSwitchTo(oldcxt);
		if (rc != ARES_SUCCESS)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not set the DNS servers \"%s\": %s",
							dns_servers, ares_strerror(rc))));
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
