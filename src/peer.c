/*
 * peer.c - what was verified about a peer, read without OpenSSL (see
 * sd/peer.h): references, the admitting name, the log fields.
 */
#include "sd/peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/log.h"

/* Bounds of what the client controls in a connection's log line (bytes of
 * escaped JSON): the verdict, counters and TLS parameters come first and
 * always fit (SD_LOG_LINE_MAX is 4 KiB); a cut field is marked
 * "<key>_truncated":true. */
#define SD_PEER_LOG_NAME_MAX 512
#define SD_PEER_LOG_SUBJECT_MAX 768
#define SD_PEER_LOG_SANS_MAX 1280

/* A capped SAN list must log exactly like the whole one: each element takes
 * at least 7 bytes of the array ("IP:?" quoted, and a comma), so the array
 * is full before the cap is reached and the log marks the cut itself. */
_Static_assert(SD_PEER_MAX_SANS * 7 > SD_PEER_LOG_SANS_MAX + 1,
               "SD_PEER_MAX_SANS too small for the log's sans array");

struct sd_peer_cert *sd_peer_cert_ref(const struct sd_peer_cert *pc)
{
    /* The reference count is the one mutable part of an otherwise
     * immutable object; the object itself was allocated writable. */
    struct sd_peer_cert *w = (struct sd_peer_cert *)(uintptr_t)pc;

    if (w != NULL)
        w->refs++;
    return w;
}

void sd_peer_cert_unref(const struct sd_peer_cert *pc)
{
    struct sd_peer_cert *w = (struct sd_peer_cert *)(uintptr_t)pc;

    if (w != NULL && --w->refs == 0)
        free(w);
}

const struct sd_name *sd_peer_identity(const struct sd_peer *p)
{
    struct sd_policy_hit hit;

    if (p == NULL || p->cert == NULL || p->rule < 0 || (p->cert->flags & SD_PEER_MALFORMED))
        return NULL;
    hit = p->hit;
    hit.rule = p->rule;
    return sd_policy_hit_name(&p->cert->id, &hit);
}

static void sd_peer_log_sans(const struct sd_peer_cert *pc, struct sd_logline *l)
{
    static const char *const prefix[] = {
        [SD_SAN_URI] = "URI:", [SD_SAN_DNS] = "DNS:", [SD_SAN_EMAIL] = "email:",
        [SD_SAN_IP] = "IP:",
    };
    size_t i;

    sd_log_array_begin_bounded(l, "sans", SD_PEER_LOG_SANS_MAX);
    for (i = 0; i < pc->nsans; i++) {
        const struct sd_peer_san *san = &pc->sans[i];
        char tmp[600];
        size_t n = strlen(prefix[san->type]), take;

        /* Lengths, not C strings: an embedded NUL is logged escaped, never
         * allowed to shorten the name. A name is cut to what one element
         * can ever show (its bound is 512 bytes of escaped text). */
        memcpy(tmp, prefix[san->type], n);
        take = san->name.len < sizeof(tmp) - n ? san->name.len : sizeof(tmp) - n;
        if (take > 0)
            memcpy(tmp + n, san->name.s, take);
        sd_log_array_strn_bounded(l, tmp, n + take, SD_PEER_LOG_NAME_MAX);
    }
    sd_log_array_end(l);
}

void sd_peer_log(const struct sd_peer *p, struct sd_logline *l)
{
    const struct sd_peer_cert *pc;

    if (p == NULL)
        return;
    /* What steeldoor decided first, then what the client sent, bounded. */
    if (p->cipher != NULL) {
        sd_log_str(l, "tls_version", p->tls_version);
        sd_log_str(l, "cipher", p->cipher);
        sd_log_bool(l, "resumed", p->resumed);
    }
    /* The protocol ALPN selected in this handshake, when one was: from the
     * listener's list (or the connector's offer), so bounded by it. */
    if (p->alpn.s != NULL && p->alpn.len > 0)
        sd_log_strn_bounded(l, "alpn", p->alpn.s, p->alpn.len, SD_PEER_LOG_NAME_MAX);
    if (p->rule >= 0) {
        const struct sd_name *id = sd_peer_identity(p);

        sd_log_str_bounded(l, "rule", p->rule_text, SD_PEER_LOG_NAME_MAX);
        if (id != NULL)
            sd_log_strn_bounded(l, "identity", id->s, id->len, SD_PEER_LOG_NAME_MAX);
    }
    if (p->sni.s != NULL)
        sd_log_strn_bounded(l, "sni", p->sni.s, p->sni.len, SD_PEER_LOG_NAME_MAX);
    /* Ours, not the peer's: bounded by the context's buffers. */
    if (p->presented_subject != NULL)
        sd_log_str(l, "client_cert_subject", p->presented_subject);
    if (p->presented_serial != NULL)
        sd_log_str(l, "client_cert_serial", p->presented_serial);
    pc = p->cert;
    if (pc != NULL) {
        /* Which certificate, exactly (grep a CA's issuance log or a CRL by
         * them): the verified peer's, a client's or, for a connector, the
         * server's. */
        sd_log_hex(l, "cert_sha256", pc->cert_sha256, sizeof(pc->cert_sha256));
        if (pc->serial.s != NULL)
            sd_log_strn_bounded(l, "cert_serial", pc->serial.s, pc->serial.len, 128);
        if (pc->subject.s != NULL)
            sd_log_strn_bounded(l, "subject", pc->subject.s, pc->subject.len,
                                SD_PEER_LOG_SUBJECT_MAX);
        sd_peer_log_sans(pc, l);
    }
}
