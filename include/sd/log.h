/*
 * sd/log.h - structured logs: one JSON object per line on stderr.
 *
 * A line is built in a fixed buffer (never allocates, never grows past
 * SD_LOG_LINE_MAX) and written with a single write(2) of whole lines of at
 * most PIPE_BUF bytes, so lines from several worker processes never
 * interleave.
 *
 *   struct sd_logline l;
 *   sd_log_begin(&l, "info", "conn");
 *   sd_log_str(&l, "listener", name);
 *   sd_log_u64(&l, "bytes_in", n);
 *   sd_log_end(&l);
 *
 * Room and cuts. A line that runs out of room stays valid JSON: each field
 * is whole, or (a long string) cut and closed, or absent; nothing is added
 * after the first field that did not fit, and the line ends with
 * "truncated":true. Values supplied by clients (certificate names) go
 * through the _bounded calls, which take at most `max` bytes of the
 * *escaped* JSON text, so they cannot push out the fields after them. A
 * bounded field that is incomplete for any reason (cut at its bound, cut by
 * the end of the line, array elements left out) is followed by
 * "<key>_truncated":true, e.g. "sans":[...],"sans_truncated":true; later
 * fields are still added. Cuts never split an escape or a UTF-8 character;
 * bytes that are not UTF-8 are logged as U+FFFD, control bytes (C0, DEL,
 * C1) as \u00XX, so a line is always valid JSON and cannot forge another.
 *
 * The sink never blocks serving. stderr on a pipe or terminal is reopened
 * through /proc/self/fd/2 as a private non-blocking open file description
 * (O_NONBLOCK on fd 2 itself would change the parent's stderr too); a
 * socket is written with MSG_DONTWAIT; a regular file with plain write(2).
 * Lines the sink cannot take now wait in a per-process queue of
 * SD_LOG_QUEUE_MAX bytes; when that is full new lines are dropped and
 * counted, and once there is room again a line
 *   {"level":"warn","event":"log_dropped","dropped":N,...}
 * takes their place in the stream. The queue drains on the next line, on
 * sd_log_flush() (the worker tick, the master loop) and, bounded by
 * SD_LOG_EXIT_FLUSH_MS, at exit. Single-threaded use per process.
 *
 * A terminal, unlike a pipe, may take part of a line from a non-blocking
 * writer; the rest is written first once it takes bytes again, and a
 * non-waiting POSIX lock on the terminal keeps other processes' lines out
 * of the gap meanwhile. A stream socket may take part of a line too; its
 * rest goes first, but other processes are not held off (a unix socket at
 * its default buffer size takes a line of up to 4 KiB whole).
 *
 * Limits. An idle process drains one pipe-full per SD_LOG_RETRY_MS. A line
 * a terminal or socket took only part of when the process exits, still
 * full after SD_LOG_EXIT_FLUSH_MS, stays cut. If stderr cannot be reopened
 * (no /proc, a pipe of another user), the sink stays blocking and says so
 * once ("event":"log_sink").
 */
#ifndef SD_LOG_H
#define SD_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sd/err.h"

/* One line, newline included: PIPE_BUF, so a line is one atomic pipe write. */
#define SD_LOG_LINE_MAX 4096
/* Lines waiting for a slow sink, per process (bytes). */
#define SD_LOG_QUEUE_MAX (256 * 1024)
/* While lines wait, retry at least this often (ms). */
#define SD_LOG_RETRY_MS 250
/* At exit, keep trying to write waiting lines for at most this long (ms). */
#define SD_LOG_EXIT_FLUSH_MS 200

struct sd_logline {
    char buf[SD_LOG_LINE_MAX];
    size_t len;
    size_t reserve;      /* kept free for an open bounded array's marker */
    size_t array_left;   /* bytes an open bounded array may still take */
    size_t array_key_off; /* the array's key, as written in buf (for */
    size_t array_key_len; /* its marker; the caller's key may be gone) */
    int truncated;       /* out of room: nothing more is added */
    int in_array;
    int array_first;
    int array_bounded;
    int array_full;      /* bound reached: later elements are left out */
    int array_cut;       /* write "<key>_truncated":true at sd_log_array_end */
};

/* Sets the file descriptor logs go to (default 2). Lines still queued for
 * the previous one are discarded; the sink is set up on the next line. */
void sd_log_set_fd(int fd);

/* Starts a line with "time", "level", "event" and "pid". */
void sd_log_begin(struct sd_logline *l, const char *level, const char *event);
/* Adds "key":"value" (JSON-escaped; a NULL value adds nothing). */
void sd_log_str(struct sd_logline *l, const char *key, const char *value);
/* Adds "key":"value" from a byte string of length n (escaped, NULs shown as \u0000). */
void sd_log_strn(struct sd_logline *l, const char *key, const char *value, size_t n);
/* Client-supplied strings: at most max bytes of escaped value; a cut value
 * is followed by "<key>_truncated":true. */
void sd_log_strn_bounded(struct sd_logline *l, const char *key, const char *value,
                         size_t n, size_t max);
void sd_log_str_bounded(struct sd_logline *l, const char *key, const char *value,
                        size_t max);
/* bytes as lower-case hex (at most 64 bytes: a digest). */
void sd_log_hex(struct sd_logline *l, const char *key, const void *bytes, size_t n);
void sd_log_u64(struct sd_logline *l, const char *key, uint64_t value);
void sd_log_i64(struct sd_logline *l, const char *key, int64_t value);
void sd_log_bool(struct sd_logline *l, const char *key, int value);
/* Arrays of strings: sd_log_array_begin, sd_log_array_str..., sd_log_array_end. */
void sd_log_array_begin(struct sd_logline *l, const char *key);
void sd_log_array_strn(struct sd_logline *l, const char *value, size_t n);
void sd_log_array_end(struct sd_logline *l);
/* A bounded array: its elements, with their quotes and commas, take at most
 * max bytes; an element that does not fit whole in what is left is left
 * out, and so are all after it. Each element may have its own bound too
 * (cut to max bytes of escaped text). Either way sd_log_array_end adds
 * "<key>_truncated":true after the array. sd_log_array_strn in a bounded
 * array is sd_log_array_strn_bounded without an element bound. */
void sd_log_array_begin_bounded(struct sd_logline *l, const char *key, size_t max);
void sd_log_array_strn_bounded(struct sd_logline *l, const char *value, size_t n,
                               size_t max);
/* Closes the object and writes the line, or queues it, never blocking. */
void sd_log_end(struct sd_logline *l);

/* One-call helpers for events with a message. */
void sd_log_msg(const char *level, const char *event, const char *fmt, ...) SD_PRINTF(3, 4);

/* A start-up failure of command cmd ("serve", "connect"): on a terminal a
 * sentence ("steeldoor serve: MSG"), otherwise an error log line (event
 * start_failed, with msg), flushed before the caller exits. */
void sd_log_fatal(const char *cmd, const char *msg);

/* Writes queued lines (and a pending log_dropped report) as far as the sink
 * takes them now. Returns 1 while lines are still waiting, else 0. */
int sd_log_flush(void);
/* sd_log_flush(), then timeout_ms (a poll timeout, -1 = none) shortened to
 * SD_LOG_RETRY_MS while lines are still waiting. */
int sd_log_flush_timeout(int timeout_ms);
/* In a child after fork(): the parent still owns the lines it had queued
 * (and its drop count); forget them here so none is written twice. */
void sd_log_after_fork(void);
/* on: lines are queued, not written, until the next sd_log_flush (a worker
 * holds them through one batch of events and writes them together: one
 * system call for many lines); off: written at once, as by default. */
void sd_log_hold(int on);
/* This process's pid, without a system call after the first (a fork in
 * any way glibc knows resets it). */
pid_t sd_log_pid(void);
/* Bytes waiting in the queue, and lines dropped and not yet reported. */
size_t sd_log_queued(void);
uint64_t sd_log_dropped(void);

#endif
