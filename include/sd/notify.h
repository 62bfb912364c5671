/*
 * sd/notify.h - telling systemd (or any service manager speaking its
 * protocol) where the master stands: started, reloading, stopping.
 *
 * The protocol of sd_notify(3) without libsystemd: one datagram of
 * "VAR=value" lines sent to the AF_UNIX socket named by $NOTIFY_SOCKET (a
 * path, or an abstract name written with a leading '@'). Nothing is sent
 * when the variable is unset, so steeldoor run by hand or by the tests is
 * unaffected.
 *
 *   sd_notify("READY=1\nSTATUS=serving 2 listeners with 4 workers");
 *   sd_notify_reloading();        (SIGHUP)
 *   sd_notify("READY=1\nSTATUS=...");  (after the reload, good or bad)
 *   sd_notify("STOPPING=1");
 *
 * Never blocks and never fails the caller: the socket is non-blocking and
 * close-on-exec, and a datagram that cannot be sent is dropped. The first
 * problem (a malformed variable, an unreachable socket) is logged once as
 * {"event":"notify"}; later ones are not, so a missing manager cannot fill
 * the log.
 *
 * Only the master notifies. systemd accepts messages from the main pid
 * alone (NotifyAccess=main), and a worker's "STOPPING=1" would be a lie
 * about the whole service. The variable is read once, at the first call,
 * and the process that read it is the only one that ever sends: a worker
 * forked after that call never does. A worker forked before it calls
 * sd_notify_forget() (with sd_log_after_fork()), so it never reads the
 * variable at all. Single-threaded use per process.
 */
#ifndef SD_NOTIFY_H
#define SD_NOTIFY_H

#include "sd/err.h"

/* The longest message sd_notifyf() sends (bytes); longer text is cut
 * after its last whole line. */
#define SD_NOTIFY_MAX 1024

/* Sends state ("READY=1\nSTATUS=...") as one datagram to $NOTIFY_SOCKET. */
void sd_notify(const char *state);

/* sd_notify() of printf-formatted text, at most SD_NOTIFY_MAX bytes. */
void sd_notifyf(const char *fmt, ...) SD_PRINTF(1, 2);

/* "RELOADING=1\nMONOTONIC_USEC=<CLOCK_MONOTONIC in microseconds>": a reload
 * starts. systemd 253 and later require the timestamp for
 * Type=notify-reload; 252 ignores it. Follow it with READY=1 when the
 * reload is over, whether it worked or not (the old configuration is then
 * what runs). */
void sd_notify_reloading(void);

/* In a child after fork(): this process never notifies (and never reads
 * $NOTIFY_SOCKET). */
void sd_notify_forget(void);

#endif
