/* notify.c - systemd's notification protocol: one datagram to
 * $NOTIFY_SOCKET (see sd/notify.h). */
#include "sd/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sd/log.h"

enum sd_notify_phase {
    SD_NOTIFY_UNREAD, /* $NOTIFY_SOCKET not looked at yet */
    SD_NOTIFY_OFF,    /* unset, malformed, or forgotten: never send */
    SD_NOTIFY_ON,     /* addr holds where to send */
};

#define SD_NOTIFY_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

static struct {
    enum sd_notify_phase phase;
    pid_t owner;              /* the process that read the variable */
    struct sockaddr_un addr;
    socklen_t addr_len;
    int reported;             /* a problem was logged: stay quiet */
    char text[SD_NOTIFY_PATH_MAX + 1]; /* the variable as written, for messages */
} sd_notify_st;

/* Logs the first problem only: a manager that went away (or a typo in the
 * unit) would otherwise add a line to every reload. */
static void sd_notify_report(const char *fmt, ...) SD_PRINTF(1, 2);

static void sd_notify_report(const char *fmt, ...)
{
    char msg[SD_ERR_MAX];
    va_list ap;

    if (sd_notify_st.reported)
        return;
    sd_notify_st.reported = 1;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sd_log_msg("warn", "notify", "%s; the service manager is not told about start, "
               "reloads and stop", msg);
}

/* Reads $NOTIFY_SOCKET once: "/path" or "@abstract" (the '@' stands for
 * the leading NUL byte of an abstract name, as systemd writes it). */
static void sd_notify_read(void)
{
    const char *v = getenv("NOTIFY_SOCKET");
    struct sockaddr_un *a = &sd_notify_st.addr;
    size_t n;

    sd_notify_st.owner = getpid();
    sd_notify_st.phase = SD_NOTIFY_OFF;
    if (v == NULL || v[0] == '\0')
        return;
    n = strlen(v);
    snprintf(sd_notify_st.text, sizeof(sd_notify_st.text), "%s", v);
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    if (v[0] == '/') {
        if (n >= SD_NOTIFY_PATH_MAX) {
            sd_notify_report("NOTIFY_SOCKET=%s: longer than a socket path may be (%zu bytes)",
                             sd_notify_st.text, SD_NOTIFY_PATH_MAX - 1);
            return;
        }
        memcpy(a->sun_path, v, n + 1);
        sd_notify_st.addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    } else if (v[0] == '@' && n > 1) {
        /* The name's length is the address length: no terminating NUL. */
        if (n > SD_NOTIFY_PATH_MAX) {
            sd_notify_report("NOTIFY_SOCKET=%s: longer than a socket name may be (%zu bytes)",
                             sd_notify_st.text, SD_NOTIFY_PATH_MAX);
            return;
        }
        a->sun_path[0] = '\0';
        memcpy(a->sun_path + 1, v + 1, n - 1);
        sd_notify_st.addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        sd_notify_report("NOTIFY_SOCKET=%s: neither an absolute path nor an abstract "
                         "'@name'", sd_notify_st.text);
        return;
    }
    sd_notify_st.phase = SD_NOTIFY_ON;
}

void sd_notify(const char *state)
{
    int saved = errno; /* a caller's error path may still read it */
    ssize_t sent;
    int fd;

    if (state == NULL)
        return;
    if (sd_notify_st.phase == SD_NOTIFY_UNREAD)
        sd_notify_read();
    /* A process forked after the variable was read has the same state but
     * another pid: a worker, which must never speak for the service. */
    if (sd_notify_st.phase != SD_NOTIFY_ON || getpid() != sd_notify_st.owner)
        return;
    /* A socket per message: nothing stays open for a forked worker to
     * inherit, and a message is rare (start, reload, stop). */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        sd_notify_report("NOTIFY_SOCKET=%s: socket: %s", sd_notify_st.text, strerror(errno));
        errno = saved;
        return;
    }
    do {
        sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                      (const struct sockaddr *)&sd_notify_st.addr, sd_notify_st.addr_len);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0)
        sd_notify_report("NOTIFY_SOCKET=%s: %s", sd_notify_st.text, strerror(errno));
    close(fd);
    errno = saved;
}

void sd_notifyf(const char *fmt, ...)
{
    char buf[SD_NOTIFY_MAX + 1];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(buf)) {
        /* Cut after the last whole line: a cut value ("MAINPID=12" read as
         * "MAINPID=1") would say something false. */
        char *nl = strrchr(buf, '\n');
        if (nl == NULL) {
            sd_notify_report("a message of %d bytes is longer than %d", n, SD_NOTIFY_MAX);
            return;
        }
        *nl = '\0';
    }
    sd_notify(buf);
}

void sd_notify_reloading(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        sd_notify("RELOADING=1");
        return;
    }
    sd_notifyf("RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ULL +
                   (unsigned long long)ts.tv_nsec / 1000ULL);
}

void sd_notify_forget(void)
{
    sd_notify_st.phase = SD_NOTIFY_OFF;
    sd_notify_st.owner = 0;
}
