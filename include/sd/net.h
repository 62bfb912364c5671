/*
 * sd/net.h - addresses and sockets.
 *
 * An sd_addr is parsed once from text at configuration time ("127.0.0.1:8443",
 * "[::1]:8443", "localhost:8443", "unix:/run/app.sock") and then used as-is by
 * every connection; no name resolution ever happens on the data path.
 */
#ifndef SD_NET_H
#define SD_NET_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "sd/err.h"

struct sd_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[128]; /* as the user wrote it, for logs and errors */
};

/* Parses "host:port", "[v6]:port" or (when allow_unix) "unix:/path" into out.
 * A host name is resolved once, here. Returns 0, or -1 with err naming text. */
int sd_addr_parse(const char *text, int allow_unix, struct sd_addr *out,
                  struct sd_err *err);

/* Formats a peer address as "1.2.3.4:5" or "[::1]:5" into buf. */
void sd_addr_format(const struct sockaddr *sa, socklen_t len, char *buf,
                    size_t size);

/* Creates a non-blocking listening socket bound to addr with SO_REUSEPORT,
 * so that each worker can own one socket of the same port. Returns the fd,
 * or -1 with err. The caller owns the fd. */
int sd_net_listen(const struct sd_addr *addr, int backlog, struct sd_err *err);

/* The socket file a unix listener created, known by device and inode: at
 * shutdown its path is removed only while it is still that file (another
 * process, or an operator, may have put something else there since). */
struct sd_unix_owned {
    dev_t dev;
    ino_t ino;
    int set; /* 0: nothing of ours at the path */
};

/* Creates a non-blocking listening unix socket at addr's path with file
 * mode `mode` (a stale socket file, whose process is gone, is replaced;
 * a live one or any other file is an error). One socket serves every
 * worker (unix sockets have no SO_REUSEPORT spreading). Fills *own with
 * the file it created. Returns the fd, or -1 with err (no file left). */
int sd_net_listen_unix(const struct sd_addr *addr, unsigned mode, int backlog,
                       struct sd_unix_owned *own, struct sd_err *err);

/* Removes the socket file of own when it is still at addr's path, and
 * clears own. Best effort (after --user the directory may not be ours to
 * write): a file left behind is replaced by the next start anyway. */
void sd_net_unlink_unix(const struct sd_addr *addr, struct sd_unix_owned *own);

/* Sets the permission bits of a unix listen socket made by
 * sd_net_listen_unix() (own) to mode, if the file at addr's path is still
 * that socket (a reload that changes listen-mode). Links are never
 * followed. No-op for other addresses. Returns 0, or -1 with err. */
int sd_net_unix_set_mode(const struct sd_addr *addr, const struct sd_unix_owned *own,
                         unsigned mode, struct sd_err *err);

/* Checks, binding nothing that stays, that addr could be listened on: an
 * IP address of this host (its port is not tried), or a unix socket path
 * whose directory exists. For serve --check. Returns 0, or -1 with err. */
int sd_net_check_listenable(const struct sd_addr *addr, struct sd_err *err);

/* Checks that no other socket holds addr (see net.c for why). Returns 0, or
 * -1 with err. */
int sd_net_check_free(const struct sd_addr *addr, struct sd_err *err);

/* Returns non-zero when a and b are the same socket address. */
int sd_net_same_addr(const struct sd_addr *a, const struct sd_addr *b);

/* Returns non-zero when fd is a listening socket bound to addr, as the
 * kernel sees it (getsockname): how a worker checks that a socket it is
 * handed really is the one of the listener it pairs it with. */
int sd_net_bound_to(int fd, const struct sd_addr *addr);

/* Starts a non-blocking connect to addr. Returns the fd (connection may still
 * be in progress: wait for writability, then check sd_net_connect_result), or
 * -1 with errno set. The caller owns the fd. */
int sd_net_connect(const struct sd_addr *addr);

/* Returns 0 when the in-progress connect on fd succeeded, else the errno. */
int sd_net_connect_result(int fd);

/* Enables TCP_NODELAY when fd is a TCP socket (ignored for unix sockets). */
void sd_net_nodelay(int fd);

#endif
