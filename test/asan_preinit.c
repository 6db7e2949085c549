/*
 * asan_preinit.c
 *	  Preloaded after the ASan runtime by test/sanitize.sh (never part of the
 *	  extension).
 *
 * The Debian postgres binary pulls in libgpg-error, whose constructor calls
 * bindtextdomain(), which allocates while holding glibc's gettext lock.  The
 * first allocation initialises a preloaded ASan runtime, which looks up the
 * optional symbol swift_demangle; the failed lookup formats its dlerror()
 * message through gettext, which waits for the same lock: postgres hangs
 * before main().  Defining the symbol makes the lookup succeed.  ASan only
 * calls it for Swift-mangled names; NULL means "not demangled".
 */
#include <stddef.h>
#include <stdint.h>

char	   *swift_demangle(const char *mangled, size_t mangled_len, char *out,
						   size_t *out_len, uint32_t flags);

/* Declines to demangle. */
char *
swift_demangle(const char *mangled, size_t mangled_len, char *out,
			   size_t *out_len, uint32_t flags)
{
	return NULL;
}
