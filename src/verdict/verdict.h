/*-------------------------------------------------------------------------
 *
 * verdict.h
 *	  Verdicts: the category of a bounce or deferral, by the ordered rules
 *	  of pw.bounce_rules.  reply.c splits a reply into the parts the rules
 *	  match (code, stage, remote text), rules.c loads and compiles the rules
 *	  (Hyperscan, one database per part), classify.c matches them and holds
 *	  the SQL functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_VERDICT_H
#define PW_VERDICT_H

#include "postgres.h"

/* Where in the SMTP conversation a reply came */
typedef enum VerdictStage
{
	STAGE_NONE = 0,				/* unknown, or not a remote reply */
	STAGE_CONNECT,
	STAGE_HELO,
	STAGE_MAIL,
	STAGE_RCPT,
	STAGE_DATA,
	STAGE_ANY					/* of a rule: matches every stage */
} VerdictStage;

/* The parts of a reply the rules are matched on (pointers into the reply) */
typedef struct VerdictReply
{
	const char *code;			/* the 3-digit SMTP code, or NULL */
	const char *status;			/* the enhanced status in the reply, or NULL */
	int			status_len;
	const char *text;			/* the remote reply (or the MTA's own text) */
	int			text_len;
	VerdictStage stage;
} VerdictReply;

/* One category of pw.bounce_categories */
typedef struct VerdictCategory
{
	char	   *name;
	bool		address_fault;
	bool		block;
	bool		throttle;
} VerdictCategory;

/* The categories the ingest itself needs (src/sql/25_verdict.sql) */
#define VERDICT_OTHER		"other"
#define VERDICT_UNREACHABLE "unreachable_domain"
#define VERDICT_EXPIRED		"message_expired"
#define VERDICT_ROUTING		"routing"

/*
 * The reason the ingest records for an expiry: VERDICT_EXPIRY_REASON, or
 * with VERDICT_EXPIRY_AFTER and the last deferral's reason; classified as
 * that deferral's expiry (VerdictExpiryCategory()).
 */
#define VERDICT_EXPIRY_REASON "expired in queue"
#define VERDICT_EXPIRY_AFTER " after: "

/* One compiled rule */
typedef struct VerdictRule
{
	int			category;		/* index into the ruleset's categories */
	VerdictStage stage;
	bool		has_status;
	bool		has_code;
	bool		has_reply;
} VerdictRule;

/* The compiled rules of this backend (rules.c) */
typedef struct VerdictRuleset
{
	VerdictCategory *cats;
	int			ncats;
	VerdictRule *rules;			/* in order: the first match wins */
	int			nrules;
	int			other;			/* the indexes of the categories above */
	int			unreachable;
	int			expired;
	int			routing;
	void	   *status_db;		/* hs_database_t *, NULL without patterns */
	void	   *code_db;
	void	   *reply_db;
	void	   *scratch;		/* hs_scratch_t * for all three */
	uint64	   *bits;			/* 3 bitsets of nrules bits: matches */
	int			words;			/* uint64 words of one bitset */
	struct VerdictCache *cache; /* the matches of statuses and codes seen */
} VerdictRuleset;

/* Longest status or code whose matches are kept */
#define VERDICT_KEY_MAX 15
/* How many statuses, and how many codes, are kept */
#define VERDICT_CACHE_SIZE 64

/* The rules one status or SMTP code (an exact string) matches */
typedef struct VerdictPartMatch
{
	char		key[VERDICT_KEY_MAX + 1];
	uint64	   *bits;
} VerdictPartMatch;

/*
 * The few distinct statuses and codes a log has, each scanned once: their
 * matches are kept (the first VERDICT_CACHE_SIZE of each).
 */
typedef struct VerdictCache
{
	VerdictPartMatch parts[2][VERDICT_CACHE_SIZE];	/* statuses, codes */
	int			n[2];
} VerdictCache;

/* reply.c */
extern void VerdictSplitReply(const char *reply, int len, VerdictReply *out);
extern const char *VerdictStageName(VerdictStage stage);

/* rules.c */
extern const VerdictRuleset *VerdictRules(void);
extern char *VerdictPatternError(const char *pattern, bool anchored);

/* classify.c */
extern int	VerdictClassify(const VerdictRuleset *rs, const char *dsn, int dsn_len,
							const char *reply, int reply_len);
extern int	VerdictExpiryCategory(const VerdictRuleset *rs, int last_deferral);

#endif							/* PW_VERDICT_H */
