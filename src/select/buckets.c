/*-------------------------------------------------------------------------
 *
 * buckets.c
 *	  The selection's buckets by label, their allowance, and the in-memory
 *	  lookups of blocked domains and short suppression lists.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "common/hashfn.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "select/select.h"

/* Hash of a char * key: the string it points to. */
static uint32
SelStringPtrHash(const void *key, Size keysize)
{
	const char *s = *(char *const *) key;

	return hash_bytes((const unsigned char *) s, (int) strlen(s));
}

/* Compares two char * keys by the strings they point to. */
static int
SelStringPtrMatch(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(char *const *) key1, *(char *const *) key2);
}

/* Copies a char * key (the string itself is owned by the caller). */
static void *
SelStringPtrCopy(void *dest, const void *src, Size keysize)
{
	*(char **) dest = *(char *const *) src;
	return dest;
}

/* A hash table keyed by strings of any length, in the state's context. */
HTAB *
SelCreateStringHash(SelState *st, const char *name, Size entrysize)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(char *);
	ctl.entrysize = entrysize;
	ctl.hash = SelStringPtrHash;
	ctl.match = SelStringPtrMatch;
	ctl.keycopy = SelStringPtrCopy;
	ctl.hcxt = st->cxt;
	return hash_create(name, 256, &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE |
					   HASH_KEYCOPY | HASH_CONTEXT);
}

/* The bucket of a label (NULL: untagged), created when missing. */
SelBucket *
SelGetBucket(SelState *st, const char *label)
{
	SelBucket  *b;
	bool		found;

	if (label == NULL)
		return &st->null_bucket;
	b = hash_search(st->buckets, &label, HASH_FIND, NULL);
	if (b == NULL)
	{
		char	   *key = MemoryContextStrdup(st->cxt, label);

		b = hash_search(st->buckets, &key, HASH_ENTER, &found);
		memset(((char *) b) + sizeof(char *), 0, sizeof(SelBucket) - sizeof(char *));
	}
	return b;
}

/* Computes a bucket's allowance for this run once (allowance.c's policy). */
void
SelResolve(SelState *st, SelBucket *b)
{
	if (b->resolved)
		return;
	b->resolved = true;
	b->facts.untagged = (b == &st->null_bucket);
	b->allowance = SelAllowance(&st->rules, &b->facts);
}

/* Whether a set holds key (NULL: no); frees key. */
static bool
SelSetHoldsAndFree(HTAB *set, char *key)
{
	bool		found = false;

	if (key == NULL)
		return false;
	(void) hash_search(set, &key, HASH_FIND, &found);
	pfree(key);
	return found;
}

/* Whether an address's domain (as pw.email_domain() has it) is blocked. */
bool
SelBlocked(SelState *st, const char *email)
{
	if (hash_get_num_entries(st->blocked) == 0)
		return false;
	return SelSetHoldsAndFree(st->blocked,
							  PwEmailDomain(email, strlen(email), DEFAULT_COLLATION_OID));
}

/* Whether an address (as pw.normalize_email() has it) is suppressed. */
bool
SelSuppressed(SelState *st, const char *email)
{
	if (hash_get_num_entries(st->suppressed) == 0)
		return false;
	return SelSetHoldsAndFree(st->suppressed,
							  PwNormalizeEmail(email, strlen(email), DEFAULT_COLLATION_OID));
}
