/*-------------------------------------------------------------------------
 *
 * token.h
 *	  The encodings the sender and the mailbox ingest share: VERP envelope
 *	  senders that name their recipient, and opt-out tokens that name the
 *	  message they came with.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PW_TOKEN_H
#define PW_TOKEN_H

#include "postgres.h"

/* Length of an opt-out token: base32 of 16 bytes, unpadded */
#define PW_OPTOUT_TOKEN_LEN 26

/* Bytes of the key in pw.token_key at least */
#define PW_TOKEN_KEY_MIN_LEN 16

extern char *PwVerpEncode(const char *prefix, const char *origin_domain,
						  const char *recipient);
extern char *PwVerpDecode(const char *address, const char *prefix);

extern char *PwOptoutToken(int64 message_id, const char *email);
extern bool PwOptoutTokenId(const char *token, int64 *message_id);
extern bool PwOptoutTokenVerify(const char *token, int64 message_id,
								const char *email);

#endif							/* PW_TOKEN_H */
