/* fuzz_peer.c - libFuzzer target for the certificate-to-peer extraction
 * (src/tls/peer.c) and what reads it (src/peer.c, src/proxy_proto.c).
 *
 * Input: one DER certificate. When it parses, the extraction must be
 * internally consistent, its log fields must stay within one log line, and
 * the PROXY v2 header built from it must be refused (malformed, cut
 * subject) or well formed. Invariants that fail call __builtin_trap().
 * Seeds: fuzz/corpus/peer/ (written by build/tests/test_peer
 * --write-corpus DIR). */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "sd/log.h"
#include "sd/peer.h"
#include "sd/policy.h"
#include "sd/proxy_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

/* Every name lies inside the extraction's one block and its length is what
 * the bytes say (a NUL follows each copy, not counted). */
static void check_names(const struct sd_name *n, size_t count)
{
    size_t i;

    for (i = 0; i < count; i++) {
        CHECK(n[i].s != NULL);
        CHECK(n[i].s[n[i].len] == '\0');
    }
}

static void check_cert(const struct sd_peer_cert *pc)
{
    size_t i, u = 0, d = 0, e = 0, ip = 0;

    CHECK(pc->refs == 1);
    CHECK(pc->id.nuris <= SD_PEER_MAX_NAMES && pc->id.ndns <= SD_PEER_MAX_NAMES);
    CHECK(pc->id.ncns <= SD_PEER_MAX_ATTRS && pc->id.nous <= SD_PEER_MAX_ATTRS);
    CHECK(pc->nsans <= SD_PEER_MAX_SANS);
    CHECK(pc->id.spki_sha256 == pc->spki_sha256);
    check_names(pc->id.uris, pc->id.nuris);
    check_names(pc->id.dns, pc->id.ndns);
    check_names(pc->id.cns, pc->id.ncns);
    check_names(pc->id.ous, pc->id.nous);
    check_names(pc->emails, pc->nemails);
    check_names(pc->ips, pc->nips);
    for (i = 0; i < pc->nsans; i++) {
        check_names(&pc->sans[i].name, 1);
        switch (pc->sans[i].type) {
        case SD_SAN_URI: u++; break;
        case SD_SAN_DNS: d++; break;
        case SD_SAN_EMAIL: e++; break;
        case SD_SAN_IP: ip++; break;
        default: CHECK(0);
        }
    }
    CHECK(e == pc->nemails && ip == pc->nips);
    /* Rule names beyond the ordered list are still read, never fewer. */
    CHECK(pc->id.nuris >= (u < SD_PEER_MAX_NAMES ? u : SD_PEER_MAX_NAMES));
    CHECK(pc->id.ndns >= (d < SD_PEER_MAX_NAMES ? d : SD_PEER_MAX_NAMES));
    if (!(pc->flags & SD_PEER_MALFORMED))
        CHECK(sd_policy_identity_sane(&pc->id) && sd_policy_identity_unambiguous(&pc->id));
    if (pc->subject.s != NULL) {
        CHECK(pc->subject.len <= SD_PEER_MAX_SUBJECT);
        CHECK(pc->subject.s[pc->subject.len] == '\0');
    }
    CHECK(pc->serial.s != NULL && pc->serial.s[pc->serial.len] == '\0');
}

/* The PROXY v2 header's outer lengths add up. */
static void check_pp2(const uint8_t *h, long n)
{
    CHECK(n >= 16 + 12);
    CHECK((size_t)(h[14] << 8 | h[15]) + 16 == (size_t)n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[16384];
    struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(40000) };
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(8443) };
    struct sd_peer_cert *pc = sd_peer_cert_from_der(data, size);
    struct sd_logline l;
    struct sd_peer p;
    long n;

    if (pc == NULL)
        return 0;
    check_cert(pc);

    /* Refused: the log line of a client that was turned away. */
    memset(&p, 0, sizeof(p));
    p.cert = pc;
    p.rule = -1;
    p.sni = (struct sd_name){ "api.internal", 12 };
    p.authority = p.sni;
    sd_log_begin(&l, "info", "conn");
    sd_peer_log(&p, &l);
    CHECK(l.len < sizeof(l.buf));
    CHECK(sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst, out,
                            sizeof(out)) < 0 || !(pc->flags & SD_PEER_MALFORMED));

    /* Admitted by allow-all, with the name it would pick: the header. */
    p.rule = 0;
    p.rule_text = "all";
    p.tls_version = "TLSv1.3";
    p.cipher = "TLS_AES_128_GCM_SHA256";
    p.hit.rule = 0;
    p.hit.kind = pc->id.nuris > 0 ? SD_RULE_URI : SD_RULE_CN;
    p.hit.index = 0;
    sd_log_begin(&l, "info", "conn");
    sd_peer_log(&p, &l);
    CHECK(l.len < sizeof(l.buf));
    n = sd_pp2_build_peer(&p, (struct sockaddr *)&src, (struct sockaddr *)&dst, out,
                          sizeof(out));
    if (pc->flags & (SD_PEER_MALFORMED | SD_PEER_TRUNCATED))
        CHECK(n < 0);
    if (n >= 0)
        check_pp2(out, n);

    CHECK(sd_peer_cert_ref(pc) == pc && pc->refs == 2);
    sd_peer_cert_unref(pc);
    sd_peer_cert_unref(pc);
    return 0;
}
