/*
 * sd/log.h - structured logs: one JSON object per line on stderr.
 *
 * A line is built in a fixed buffer (never allocates, never grows past
 * SD_LOG_LINE_MAX: a value that does not fit is cut and the line says
 * "truncated":true) and written with a single write(2), so lines from
 * several worker processes never interleave.
 *
 *   struct sd_logline l;
 *   sd_log_begin(&l, "info", "conn");
 *   sd_log_str(&l, "listener", name);
 *   sd_log_u64(&l, "bytes_in", n);
 *   sd_log_end(&l);
 */
#ifndef SD_LOG_H
#define SD_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "sd/err.h"

#define SD_LOG_LINE_MAX 4096

struct sd_logline {
    char buf[SD_LOG_LINE_MAX];
    size_t len;
    int truncated;
    int in_array;
    int array_first;
};

/* Sets the file descriptor logs go to (default 2). */
void sd_log_set_fd(int fd);

/* Starts a line with "time", "level", "event" and "pid". */
void sd_log_begin(struct sd_logline *l, const char *level, const char *event);
/* Adds "key":"value" (JSON-escaped; a NULL value adds nothing). */
void sd_log_str(struct sd_logline *l, const char *key, const char *value);
/* Adds "key":"value" from a byte string of length n (escaped, NULs shown as \u0000). */
void sd_log_strn(struct sd_logline *l, const char *key, const char *value, size_t n);
void sd_log_u64(struct sd_logline *l, const char *key, uint64_t value);
void sd_log_i64(struct sd_logline *l, const char *key, int64_t value);
void sd_log_bool(struct sd_logline *l, const char *key, int value);
/* Arrays of strings: sd_log_array_begin, sd_log_array_str..., sd_log_array_end. */
void sd_log_array_begin(struct sd_logline *l, const char *key);
void sd_log_array_strn(struct sd_logline *l, const char *value, size_t n);
void sd_log_array_end(struct sd_logline *l);
/* Closes the object and writes the line. */
void sd_log_end(struct sd_logline *l);

/* One-call helpers for events with a message. */
void sd_log_msg(const char *level, const char *event, const char *fmt, ...) SD_PRINTF(3, 4);

#endif
