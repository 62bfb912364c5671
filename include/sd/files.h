/*
 * sd/files.h - a snapshot of the files a configuration is built from.
 *
 * Every file (and CA directory listing) a load reads goes through a
 * snapshot: read once, recorded with its bytes. The master validates a new
 * configuration from a fresh snapshot, then hands the very same bytes to
 * the workers (packed into a memfd), which build their generation from the
 * frozen snapshot and never touch the disk. So workers always run exactly
 * what the master validated, even if a file changes again meanwhile; that
 * later change simply triggers the next reload.
 *
 * Bounded: a file larger than SD_FILES_MAX_FILE, or snapshots larger than
 * SD_FILES_MAX_TOTAL, are refused with an error naming the file.
 *
 * Never blocking, never mixing: whoever may write to a configured directory
 * can put anything at a configured path and swap it at any moment. A path is
 * opened without waiting (O_NONBLOCK: a FIFO without a writer opens at once),
 * the opened descriptor is what is checked (fstat: anything but a regular
 * file or a directory is refused as "not a regular file or directory"), and
 * a file is read to its end under the cap, whatever size it had a moment
 * before. So a load, and the master's fingerprint check, cannot hang on a
 * FIFO, and the bytes recorded (then validated, then run) are one whole file.
 *
 * Digests, not bytes, for change detection. Each file's contents get a
 * keyed 64-bit digest (SipHash-2-4, key drawn at random once per process,
 * so nobody who can write a configured file can make a change collide)
 * when they are read. Once the master has used a snapshot (validated it
 * and packed it for the workers) it drops every file's bytes with
 * sd_files_drop_data(): the private keys then live only inside the TLS
 * contexts, and the fingerprints keep working from the digests.
 */
#ifndef SD_FILES_H
#define SD_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "sd/err.h"

#define SD_FILES_MAX_FILE (8u << 20)
#define SD_FILES_MAX_TOTAL (64u << 20)

enum sd_file_kind { SD_FILE_REG = 1, SD_FILE_DIR, SD_FILE_ERR };

struct sd_file {
    char *path;
    enum sd_file_kind kind;
    int err_no;          /* SD_FILE_ERR: why it could not be read */
    unsigned mode;       /* permission bits */
    unsigned uid;        /* owner */
    unsigned char *data; /* REG: contents; DIR: NUL-separated sorted names;
                          * NULL once sd_files_drop_data() ran */
    size_t len;          /* of the contents, kept after the drop */
    uint64_t digest;     /* keyed digest of the contents (see above) */
};

struct sd_files;

/* A new, empty, unfrozen snapshot; NULL when out of memory. */
struct sd_files *sd_files_new(void);
void sd_files_free(struct sd_files *fs);

/* Returns the entry for path, reading and recording it first if this
 * snapshot has not seen it (a frozen snapshot never reads: an unknown path
 * is an error, and so is any path once the data was dropped). A path that
 * cannot be read is recorded as SD_FILE_ERR and returned as -1 with err
 * naming it. The entry is owned by fs. */
int sd_files_get(struct sd_files *fs, const char *path, const struct sd_file **out,
                 struct sd_err *err);

/* 1 for a snapshot received from the master (it reads nothing from disk,
 * and its loads stay quiet: the master already warned). */
int sd_files_frozen(const struct sd_files *fs);

/* Fingerprint of the recorded paths and contents, from the per-file
 * digests (change detection only); the same before and after the drop. */
uint64_t sd_files_fingerprint(const struct sd_files *fs);
/* The fingerprint the same paths would have if read from disk now (each
 * file's bytes are wiped as soon as they are digested). */
uint64_t sd_files_fingerprint_disk(const struct sd_files *fs);

/* Wipes (explicit_bzero) and frees every file's bytes, keeping path, kind,
 * mode, error, length and digest: enough for the fingerprints, the watch
 * set and sd_files_each(), not for loading or packing (both fail from then
 * on). Idempotent; NULL is fine. */
void sd_files_drop_data(struct sd_files *fs);
/* 1 while the snapshot still holds its files' bytes. */
int sd_files_has_data(const struct sd_files *fs);

/* Calls fn for every recorded path. */
void sd_files_each(const struct sd_files *fs, void (*fn)(const struct sd_file *f, void *arg),
                   void *arg);

/* What differs between two snapshots of the same process (their digests,
 * kinds and owners are compared; the bytes may be dropped): calls fn for
 * each path of now whose file changed ("changed") or is new ("added"),
 * then for each path of before that now lacks ("removed"). Returns how
 * many. For the reload line: which files it was for. */
size_t sd_files_diff(const struct sd_files *before, const struct sd_files *now,
                     void (*fn)(const char *path, const char *how, void *arg), void *arg);

/* Serialises fs into a new memfd (returned, owned by the caller), or -1
 * (also for a snapshot whose data was dropped). */
int sd_files_pack(const struct sd_files *fs, struct sd_err *err);
/* Reads a packed snapshot from fd; returns it frozen, or NULL with err. */
struct sd_files *sd_files_unpack(int fd, struct sd_err *err);

#endif
