/*-------------------------------------------------------------------------
 *
 * maillog_parse.c
 *	  Parses Postfix mail.log lines: syslog header (traditional or RFC 3339
 *	  timestamp, host, program[pid]), queue id and the key=value list of
 *	  delivery-status and qmgr expiry lines.
 *
 * Plain C, no PostgreSQL headers: a fuzzer links this file alone.  Every
 * read goes through a cursor checked against the end of the line.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "maillog_parse.h"

/* A read position inside a line. */
typedef struct Cursor
{
	const char *p;
	const char *end;
} Cursor;

static const char *const month_names[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

/* Byte classes of the parser: one table lookup a byte */
#define BC_DIGIT	0x01		/* 0-9 */
#define BC_ALNUM	0x02		/* 0-9, a-z, A-Z: queue ids */
#define BC_KEY		0x04		/* a-z and _: the keys of key=value */
#define BC_PROG_END 0x08		/* '[', ':' or ' ': the end of a program name */

#define D(c) [c] = BC_DIGIT | BC_ALNUM
#define L(c) [c] = BC_ALNUM | BC_KEY
#define U(c) [c] = BC_ALNUM

static const unsigned char byte_class[256] = {
	D('0'), D('1'), D('2'), D('3'), D('4'), D('5'), D('6'), D('7'), D('8'),
	D('9'),
	L('a'), L('b'), L('c'), L('d'), L('e'), L('f'), L('g'), L('h'), L('i'),
	L('j'), L('k'), L('l'), L('m'), L('n'), L('o'), L('p'), L('q'), L('r'),
	L('s'), L('t'), L('u'), L('v'), L('w'), L('x'), L('y'), L('z'),
	U('A'), U('B'), U('C'), U('D'), U('E'), U('F'), U('G'), U('H'), U('I'),
	U('J'), U('K'), U('L'), U('M'), U('N'), U('O'), U('P'), U('Q'), U('R'),
	U('S'), U('T'), U('U'), U('V'), U('W'), U('X'), U('Y'), U('Z'),
	['_'] = BC_KEY,
	['['] = BC_PROG_END, [':'] = BC_PROG_END, [' '] = BC_PROG_END
};

#undef D
#undef L
#undef U

/* Whether byte c is of class cls. */
#define ByteIs(c, cls) ((byte_class[(unsigned char) (c)] & (cls)) != 0)

/* Whether c is an ASCII decimal digit. */
static inline int
IsDigit(char c)
{
	return ByteIs(c, BC_DIGIT);
}

/* Whether the cursor has at least n bytes left. */
static int
Has(const Cursor *c, size_t n)
{
	return (size_t) (c->end - c->p) >= n;
}

/* Consumes the single byte ch if it is next. */
static int
Accept(Cursor *c, char ch)
{
	if (c->p < c->end && *c->p == ch)
	{
		c->p++;
		return 1;
	}
	return 0;
}

/* Consumes exactly n digits into *out. */
static int
Digits(Cursor *c, int n, int *out)
{
	int			v = 0;

	if (!Has(c, (size_t) n))
		return 0;
	for (int i = 0; i < n; i++)
	{
		if (!IsDigit(c->p[i]))
			return 0;
		v = v * 10 + (c->p[i] - '0');
	}
	c->p += n;
	*out = v;
	return 1;
}

/* Days in a month of a (proleptic Gregorian) year. */
int
MaillogDaysInMonth(int year, int month)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (month < 1 || month > 12)
		return 0;
	if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
		return 29;
	return days[month - 1];
}

/* hh:mm:ss with an optional fraction of up to 9 digits (kept to usec). */
static int
ParseClock(Cursor *c, MaillogTime *t)
{
	if (!Digits(c, 2, &t->hour) || !Accept(c, ':') ||
		!Digits(c, 2, &t->minute) || !Accept(c, ':') ||
		!Digits(c, 2, &t->second))
		return 0;
	if (t->hour > 23 || t->minute > 59 || t->second > 60)
		return 0;
	t->usec = 0;
	if (Accept(c, '.') || Accept(c, ','))
	{
		int			n = 0;
		int			scale = 100000;

		while (c->p < c->end && IsDigit(*c->p))
		{
			if (n < 6)
			{
				t->usec += (*c->p - '0') * scale;
				scale /= 10;
			}
			c->p++;
			if (++n > 9)
				return 0;
		}
		if (n == 0)
			return 0;
	}
	return 1;
}

/* "Nov 22 06:25:01[.123]" (day possibly space-padded). */
static int
ParseTraditional(Cursor *c, MaillogTime *t)
{
	int			m = -1;

	if (!Has(c, 3))
		return 0;
	for (int i = 0; i < 12; i++)
		if (c->p[0] == month_names[i][0] && c->p[1] == month_names[i][1] &&
			c->p[2] == month_names[i][2])
		{
			m = i;
			break;
		}
	if (m < 0)
		return 0;
	c->p += 3;
	if (!Accept(c, ' '))
		return 0;
	if (Accept(c, ' '))
	{
		if (!Digits(c, 1, &t->day))
			return 0;
	}
	else if (!Digits(c, 2, &t->day))
		return 0;
	if (!Accept(c, ' ') || !ParseClock(c, t))
		return 0;
	t->year = 0;
	t->month = m + 1;
	t->has_offset = 0;
	t->offset_sec = 0;
	/* the year is unknown: Feb 29 is checked by the caller */
	return t->day >= 1 && t->day <= MaillogDaysInMonth(2000, t->month);
}

/* "2026-11-22T06:25:01[.123456](Z|+hh:mm|-hh:mm)" (offset optional). */
static int
ParseRfc3339(Cursor *c, MaillogTime *t)
{
	if (!Digits(c, 4, &t->year) || !Accept(c, '-') ||
		!Digits(c, 2, &t->month) || !Accept(c, '-') ||
		!Digits(c, 2, &t->day))
		return 0;
	if (!(Accept(c, 'T') || Accept(c, 't')) || !ParseClock(c, t))
		return 0;
	if (t->year < 1 || t->day < 1 || t->day > MaillogDaysInMonth(t->year, t->month))
		return 0;
	t->has_offset = 0;
	t->offset_sec = 0;
	if (Accept(c, 'Z') || Accept(c, 'z'))
		t->has_offset = 1;
	else if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
	{
		int			sign = (*c->p == '-') ? -1 : 1;
		int			oh,
					om;

		c->p++;
		if (!Digits(c, 2, &oh) || !Accept(c, ':') || !Digits(c, 2, &om) ||
			oh > 23 || om > 59)
			return 0;
		t->has_offset = 1;
		t->offset_sec = sign * (oh * 3600 + om * 60);
	}
	return 1;
}

/* A run of non-space bytes, at least one, followed by one or more spaces. */
static int
Token(Cursor *c, MaillogField *f)
{
	const char *start = c->p;
	const char *space = memchr(c->p, ' ', (size_t) (c->end - c->p));

	if (space == NULL || space == start)
		return 0;
	c->p = space;
	f->ptr = start;
	f->len = (size_t) (c->p - start);
	while (c->p < c->end && *c->p == ' ')
		c->p++;
	return 1;
}

/* "name[pid]: " or "name: "; pid is -1 when absent. */
static int
ParseProgram(Cursor *c, MaillogRecord *rec)
{
	const char *start = c->p;

	while (c->p < c->end && !ByteIs(*c->p, BC_PROG_END))
		c->p++;
	if (c->p == start || c->p == c->end)
		return 0;
	rec->program.ptr = start;
	rec->program.len = (size_t) (c->p - start);
	rec->pid = -1;
	if (Accept(c, '['))
	{
		long		pid = 0;
		int			n = 0;

		while (c->p < c->end && IsDigit(*c->p))
		{
			pid = pid * 10 + (*c->p - '0');
			c->p++;
			if (++n > 9)
				return 0;
		}
		if (n == 0 || !Accept(c, ']'))
			return 0;
		rec->pid = pid;
	}
	return Accept(c, ':') && Accept(c, ' ');
}

/* Whether the program is a Postfix daemon: postfix/x or postfix-NAME/x. */
static int
IsPostfix(const MaillogField *prog)
{
	size_t		i;

	if (prog->len < 9 || memcmp(prog->ptr, "postfix", 7) != 0)
		return 0;
	if (prog->ptr[7] != '/' && prog->ptr[7] != '-')
		return 0;
	for (i = 7; i < prog->len; i++)
		if (prog->ptr[i] == '/')
			return i + 1 < prog->len;
	return 0;
}

/* A non-negative decimal number such as 0.06 or 12. */
static int
ParseNumber(const char *p, size_t len, double *out)
{
	double		mantissa = 0;
	double		divisor = 1;
	size_t		i = 0;
	int			digits = 0;

	while (i < len && IsDigit(p[i]) && digits < 15)
	{
		mantissa = mantissa * 10 + (p[i] - '0');
		i++;
		digits++;
	}
	if (i < len && p[i] == '.')
	{
		i++;
		while (i < len && IsDigit(p[i]) && digits < 15)
		{
			mantissa = mantissa * 10 + (p[i] - '0');
			divisor *= 10;
			i++;
			digits++;
		}
	}
	if (digits == 0 || i != len)
		return 0;
	*out = mantissa / divisor;
	return 1;
}

/* Whether field f spells the string literal s. */
#define FieldIs(f, s) \
	((f)->ptr != NULL && (f)->len == sizeof(s) - 1 && memcmp((f)->ptr, (s), sizeof(s) - 1) == 0)

/*
 * The status word and what follows it: "sent (250 Ok)" gives reason
 * "250 Ok"; "expired, returned to sender" gives "returned to sender".
 */
static void
ParseStatus(Cursor *c, MaillogRecord *rec)
{
	const char *start = c->p;

	while (c->p < c->end && *c->p >= 'a' && *c->p <= 'z')
		c->p++;
	rec->status.ptr = start;
	rec->status.len = (size_t) (c->p - start);
	(void) Accept(c, ',');
	while (c->p < c->end && *c->p == ' ')
		c->p++;
	if (c->p < c->end)
	{
		const char *rs = c->p;
		const char *re = c->end;

		if (*rs == '(' && re[-1] == ')' && re - rs >= 2)
		{
			rs++;
			re--;
		}
		rec->reason.ptr = rs;
		rec->reason.len = (size_t) (re - rs);
	}
	c->p = c->end;
}

/*
 * The value of a key: "<address>" (ending at the first '>' followed by
 * ',' or the end of the line) or text up to the next ','.
 */
static int
ParseValue(Cursor *c, MaillogField *v, int *bracketed)
{
	const char *start = c->p;

	*bracketed = 0;
	if (c->p < c->end && *c->p == '<')
	{
		const char *q = c->p + 1;

		while ((q = memchr(q, '>', (size_t) (c->end - q))) != NULL &&
			   q + 1 < c->end && q[1] != ',')
			q++;
		if (q == NULL)
			return 0;
		v->ptr = start + 1;
		v->len = (size_t) (q - start - 1);
		c->p = q + 1;
		*bracketed = 1;
		return 1;
	}
	{
		const char *comma = memchr(c->p, ',', (size_t) (c->end - c->p));

		c->p = comma != NULL ? comma : c->end;
	}
	v->ptr = start;
	v->len = (size_t) (c->p - start);
	return 1;
}

/*
 * Sets *rec to a line without any field, field by field (gcc makes a memset
 * of the whole record a slow string instruction, on every line).
 */
static inline void
RecordInit(MaillogRecord *rec)
{
	const MaillogField none = {NULL, 0};

	rec->ts.year = rec->ts.month = rec->ts.day = 0;
	rec->ts.hour = rec->ts.minute = rec->ts.second = rec->ts.usec = 0;
	rec->ts.has_offset = rec->ts.offset_sec = 0;
	rec->host = none;
	rec->program = none;
	rec->pid = -1;
	rec->queue_id = none;
	rec->recipient = none;
	rec->orig_recipient = none;
	rec->sender = none;
	rec->relay = none;
	rec->has_delay = 0;
	rec->delay = 0;
	rec->dsn = none;
	rec->status = none;
	rec->reason = none;
}

/* Parses one line (without its newline) into *rec. */
MaillogLineKind
MaillogParseLine(const char *line, size_t len, MaillogRecord *rec)
{
	Cursor		c;
	int			saw_to = 0;

	RecordInit(rec);
	if (line == NULL || len == 0 || memchr(line, '\0', len) != NULL)
		return MAILLOG_UNPARSED;
	c.p = line;
	c.end = line + len;

	/* syslog header */
	if (IsDigit(*c.p))
	{
		if (!ParseRfc3339(&c, &rec->ts))
			return MAILLOG_UNPARSED;
	}
	else if (!ParseTraditional(&c, &rec->ts))
		return MAILLOG_UNPARSED;
	if (!Accept(&c, ' '))
		return MAILLOG_UNPARSED;
	while (c.p < c.end && *c.p == ' ')
		c.p++;
	if (!Token(&c, &rec->host) || !ParseProgram(&c, rec))
		return MAILLOG_UNPARSED;

	if (!IsPostfix(&rec->program))
		return MAILLOG_OTHER;

	/* queue id: short hex or long base-52 form, then ": " */
	{
		const char *start = c.p;

		while (c.p < c.end && ByteIs(*c.p, BC_ALNUM))
			c.p++;
		if (c.p - start < 5 || c.p - start > 32 || !Accept(&c, ':') || !Accept(&c, ' '))
			return MAILLOG_OTHER;
		rec->queue_id.ptr = start;
		rec->queue_id.len = (size_t) (c.p - 2 - start);
		if (FieldIs(&rec->queue_id, "NOQUEUE"))
			return MAILLOG_OTHER;
	}

	/* key=value, key=value, ..., status=word (reason) */
	while (c.p < c.end)
	{
		MaillogField key;
		MaillogField val;
		int			bracketed;

		key.ptr = c.p;
		while (c.p < c.end && ByteIs(*c.p, BC_KEY))
			c.p++;
		key.len = (size_t) (c.p - key.ptr);
		if (key.len == 0 || !Accept(&c, '='))
			return saw_to ? MAILLOG_UNPARSED : MAILLOG_OTHER;

		if (FieldIs(&key, "status"))
		{
			ParseStatus(&c, rec);
			break;
		}
		if (!ParseValue(&c, &val, &bracketed))
			return MAILLOG_UNPARSED;	/* "<" without its ">" */
		if (FieldIs(&key, "to"))
		{
			if (!bracketed)
				return MAILLOG_UNPARSED;
			rec->recipient = val;
			saw_to = 1;
		}
		else if (FieldIs(&key, "orig_to") && bracketed)
			rec->orig_recipient = val;
		else if (FieldIs(&key, "from") && bracketed)
			rec->sender = val;
		else if (FieldIs(&key, "relay"))
			rec->relay = val;
		else if (FieldIs(&key, "dsn"))
			rec->dsn = val;
		else if (FieldIs(&key, "delay"))
		{
			if (!ParseNumber(val.ptr, val.len, &rec->delay))
				return MAILLOG_UNPARSED;
			rec->has_delay = 1;
		}
		if (c.p == c.end)
			break;
		if (!Accept(&c, ',') || !Accept(&c, ' '))
			return saw_to ? MAILLOG_UNPARSED : MAILLOG_OTHER;
	}

	if (rec->status.ptr == NULL || rec->status.len == 0)
		return saw_to ? MAILLOG_UNPARSED : MAILLOG_OTHER;
	if (saw_to)
		return MAILLOG_EVENT;
	if (FieldIs(&rec->status, "expired"))
		return MAILLOG_EVENT;
	return MAILLOG_OTHER;
}
