/* net.c - address parsing and socket set-up (see sd/net.h). */
#include "sd/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int sd_addr_parse_unix(const char *text, const char *path,
                              struct sd_addr *out, struct sd_err *err)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
    size_t n = strlen(path);

    if (n == 0 || path[0] != '/')
        return sd_err_set(err, "%s: unix socket path must be absolute", text);
    if (n >= sizeof(sun->sun_path))
        return sd_err_set(err, "%s: unix socket path too long", text);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

int sd_addr_parse(const char *text, int allow_unix, struct sd_addr *out,
                  struct sd_err *err)
{
    char host[256];
    const char *port, *h;
    size_t hlen;
    struct addrinfo hints, *res = NULL;
    char *end;
    long pnum;
    int rc;

    memset(out, 0, sizeof(*out));
    if (text == NULL || *text == '\0')
        return sd_err_set(err, "empty address");
    if (strlen(text) >= sizeof(out->text))
        return sd_err_set(err, "%.40s...: address too long", text);
    memcpy(out->text, text, strlen(text) + 1);

    if (strncmp(text, "unix:", 5) == 0) {
        if (!allow_unix)
            return sd_err_set(err, "%s: a unix socket is not allowed here", text);
        return sd_addr_parse_unix(text, text + 5, out, err);
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return sd_err_set(err, "%s: expected [IPv6]:PORT", text);
        h = text + 1;
        hlen = (size_t)(close - h);
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL)
            return sd_err_set(err, "%s: expected HOST:PORT", text);
        if (memchr(text, ':', (size_t)(colon - text)) != NULL)
            return sd_err_set(err, "%s: IPv6 addresses must be written [ADDR]:PORT", text);
        h = text;
        hlen = (size_t)(colon - text);
        port = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return sd_err_set(err, "%s: missing or too long host", text);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    errno = 0;
    pnum = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || errno != 0 || pnum < 1 || pnum > 65535)
        return sd_err_set(err, "%s: port must be a number from 1 to 65535", text);

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return sd_err_set(err, "%s: cannot resolve host: %s", text, gai_strerror(rc));
    if (res->ai_addrlen > sizeof(out->ss)) {
        freeaddrinfo(res);
        return sd_err_set(err, "%s: unsupported address", text);
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

void sd_addr_format(const struct sockaddr *sa, socklen_t len, char *buf,
                    size_t size)
{
    char ip[INET6_ADDRSTRLEN];

    (void)len;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(buf, size, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(buf, size, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        snprintf(buf, size, "unix");
    } else {
        snprintf(buf, size, "unknown");
    }
}

int sd_net_listen(const struct sd_addr *addr, int backlog, struct sd_err *err)
{
    int fd, one = 1;

    fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sd_err_set(err, "%s: socket: %s", addr->text, strerror(errno));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto fail;
    if (addr->ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0)
        goto fail;
    if (listen(fd, backlog) != 0)
        goto fail;
    /* Accepted sockets inherit TCP_NODELAY from the listener on Linux: one
     * setsockopt here instead of one per connection. */
    sd_net_nodelay(fd);
    return fd;
fail:
    sd_err_set(err, "%s: cannot listen: %s", addr->text, strerror(errno));
    close(fd);
    return -1;
}

int sd_net_check_listenable(const struct sd_addr *addr, struct sd_err *err)
{
    struct sockaddr_storage ss = addr->ss;
    int fd, one = 1, e;

    if (ss.ss_family == AF_UNIX) {
        char dir[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
        const char *path = ((const struct sockaddr_un *)&addr->ss)->sun_path;
        char *slash;
        struct stat st;

        snprintf(dir, sizeof(dir), "%s", path);
        slash = strrchr(dir, '/');
        if (slash == NULL)
            return 0;
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
        if (stat(dir, &st) != 0)
            return sd_err_set(err, "%s: cannot listen: its directory %s: %s", addr->text, dir,
                              strerror(errno));
        if (!S_ISDIR(st.st_mode))
            return sd_err_set(err, "%s: cannot listen: %s is not a directory", addr->text,
                              dir);
        return 0;
    }
    /* Port 0: the address is tried, never the port the configuration
     * names, which a running steeldoor may hold. */
    if (ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&ss)->sin6_port = 0;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sd_err_set(err, "%s: socket: %s", addr->text, strerror(errno));
    if (ss.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&ss, addr->len) != 0) {
        e = errno;
        close(fd);
        return sd_err_set(err, "%s: cannot listen: %s%s", addr->text, strerror(e),
                          e == EADDRNOTAVAIL ? " (not an address of this host)" : "");
    }
    close(fd);
    return 0;
}

int sd_net_check_free(const struct sd_addr *addr, struct sd_err *err)
{
    int fd, one = 1;

    /* Without SO_REUSEPORT: the bind fails if any other socket (another
     * steeldoor or anything else) already holds the address, even one that
     * set SO_REUSEPORT itself, which would otherwise silently share it. */
    fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sd_err_set(err, "%s: socket: %s", addr->text, strerror(errno));
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (addr->ss.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0) {
        sd_err_set(err, "%s: cannot listen: %s", addr->text, strerror(errno));
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int sd_net_same_addr(const struct sd_addr *a, const struct sd_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

int sd_net_bound_to(int fd, const struct sd_addr *addr)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int listening = 0;
    socklen_t olen = sizeof(listening);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &olen) != 0 || !listening ||
        ss.ss_family != addr->ss.ss_family)
        return 0;
    /* Field by field: the kernel's sockaddr and the one resolved from the
     * configuration may differ in padding or flow information. */
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        const struct sockaddr_in *b = (const struct sockaddr_in *)&addr->ss;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&addr->ss;
        return a->sin6_port == b->sin6_port && a->sin6_scope_id == b->sin6_scope_id &&
               memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
    }
    return len == addr->len && memcmp(&ss, &addr->ss, len) == 0;
}

int sd_net_connect(const struct sd_addr *addr)
{
    int fd, saved;

    fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0 &&
        errno != EINPROGRESS) {
        saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    sd_net_nodelay(fd);
    return fd;
}

int sd_net_connect_result(int fd)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        return errno;
    return soerr;
}

void sd_net_nodelay(int fd)
{
    int one = 1;

    /* Fails harmlessly (ENOTSUP/EOPNOTSUPP) on unix sockets. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int sd_net_listen_unix(const struct sd_addr *addr, unsigned mode, int backlog,
                       struct sd_unix_owned *own, struct sd_err *err)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&addr->ss;
    struct stat st;
    int fd, probe;

    own->set = 0;
    /* A socket file left by a steeldoor that died is removed; one that
     * still answers belongs to a live process and is left alone, as is
     * any file that is not a socket. */
    if (lstat(sun->sun_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return sd_err_set(err, "%s: exists and is not a socket", addr->text);
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (const struct sockaddr *)&addr->ss, addr->len) == 0) {
            close(probe);
            return sd_err_set(err, "%s: cannot listen: another process accepts on it",
                              addr->text);
        }
        if (probe >= 0)
            close(probe);
        (void)unlink(sun->sun_path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sd_err_set(err, "%s: socket: %s", addr->text, strerror(errno));
    /* Created with its mode (bind makes the file 0777 less the umask): no
     * moment when the socket is more open than asked, and no chmod by
     * path afterwards that a symbolic link swapped in could redirect. */
    {
        mode_t old = umask((mode_t)(~mode & 0777));
        int rc = bind(fd, (const struct sockaddr *)&addr->ss, addr->len);
        umask(old);
        if (rc != 0)
            goto fail;
    }
    /* Right after bind: the file at the path now is the one we made. */
    if (lstat(sun->sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        own->dev = st.st_dev;
        own->ino = st.st_ino;
        own->set = 1;
    }
    if (listen(fd, backlog) != 0)
        goto fail;
    return fd;
fail:
    sd_err_set(err, "%s: cannot listen: %s", addr->text, strerror(errno));
    close(fd);
    sd_net_unlink_unix(addr, own);
    return -1;
}

int sd_net_unix_set_mode(const struct sd_addr *addr, const struct sd_unix_owned *own,
                         unsigned mode, struct sd_err *err)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&addr->ss;
    char proc[64];
    struct stat st;
    int fd, rc = -1;

    if (addr->ss.ss_family != AF_UNIX)
        return 0;
    /* The file itself, never a link followed: held by an O_PATH descriptor
     * from the check to the change, and changed only if it is still the
     * socket we made. */
    fd = open(sun->sun_path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return sd_err_set(err, "%s: cannot set its mode: %s", addr->text, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) || !own->set || st.st_dev != own->dev ||
        st.st_ino != own->ino) {
        sd_err_set(err, "%s: cannot set its mode: the file is no longer the socket steeldoor "
                   "made", addr->text);
        goto out;
    }
    if ((st.st_mode & 07777) == (mode & 0777)) {
        rc = 0;
        goto out;
    }
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    if (chmod(proc, (mode_t)(mode & 0777)) != 0) {
        sd_err_set(err, "%s: cannot set its mode: %s", addr->text, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

void sd_net_unlink_unix(const struct sd_addr *addr, struct sd_unix_owned *own)
{
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&addr->ss;
    struct stat st;

    if (!own->set || addr->ss.ss_family != AF_UNIX)
        return;
    own->set = 0;
    /* The check and the unlink are two steps; a file swapped in between
     * would be removed. Only a process that can write the directory can
     * do that, and it could remove the file itself. */
    if (lstat(sun->sun_path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == own->dev &&
        st.st_ino == own->ino)
        (void)unlink(sun->sun_path);
}
