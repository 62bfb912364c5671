/*
 * sd/sesscache.h - a TLS session cache in shared memory, used by every
 * worker process.
 *
 * OpenSSL's own cache lives inside one process; with several workers on
 * SO_REUSEPORT a client's next connection usually lands on another worker.
 * This cache is the second level behind OpenSSL's: a fixed-size table of
 * serialized sessions in a MAP_SHARED mapping made by the master before it
 * forks, guarded by a robust process-shared mutex (a worker that dies
 * holding it does not wedge the others).
 *
 * It stores opaque bytes under a key; it knows nothing of TLS. The key
 * includes the listener's session id context, so a session can only be
 * found by the listener (and the configuration generation) that made it.
 * Bounded: a fixed number of index slots and a fixed byte ring in which
 * each entry takes its own length; the oldest entries are replaced.
 */
#ifndef SD_SESSCACHE_H
#define SD_SESSCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "sd/err.h"

#define SD_SESSCACHE_KEY_MAX 96
#define SD_SESSCACHE_DATA_MAX 2560 /* sessions with larger client certs are not cached */

struct sd_sesscache;

/* Maps a cache of nslots entries. Returns NULL with err on failure. */
struct sd_sesscache *sd_sesscache_new(size_t nslots, struct sd_err *err);
void sd_sesscache_free(struct sd_sesscache *c);

/* Stores data under key until expires (unix seconds). Returns 0, or -1 when
 * the key or data is too large (nothing stored). */
int sd_sesscache_put(struct sd_sesscache *c, const uint8_t *key, size_t keylen,
                     const uint8_t *data, size_t len, int64_t expires);

/* Copies the live entry for key into out (cap bytes). Returns its length,
 * or -1 when absent, expired or larger than cap. */
long sd_sesscache_get(struct sd_sesscache *c, const uint8_t *key, size_t keylen,
                      uint8_t *out, size_t cap, int64_t now);

/* Forgets key (wiping the entry). */
void sd_sesscache_remove(struct sd_sesscache *c, const uint8_t *key, size_t keylen);

#endif
