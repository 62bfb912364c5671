/*
 * stream.c - the TLS stream (sd/stream.h), as server or as client: the
 * handshake, reads, writes and close_notify over the socket BIO, and the
 * mapping of every failure to a log reason (enum sd_reason) with a detail.
 * The peer (struct sd_peer) is built once: its certificate's extraction by
 * verify.c, the TLS parameters here.
 */
#include "tls_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "compat.h"

static struct sd_tls_conn *sd_tls_conn_of(struct sd_stream *s)
{
    return (struct sd_tls_conn *)s;
}

/* ----------------------------------------------------------------- peer */

/* Fills what the TLS layer knows about the peer beyond its certificate.
 * Cheap (pointers into the SSL, the stream and the policy), so it runs
 * whenever the peer is asked for: a log line written while the handshake
 * is still under way (a timeout) shows what was agreed so far, as the
 * refused or completed one does. A refused leaf that was not extracted
 * during verification is extracted here, once, for the log. */
static void sd_tls_peer_fill(struct sd_tls_conn *c)
{
    const SSL_CIPHER *cipher = SSL_get_current_cipher(c->ssl);
    const struct sd_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(c->ssl));
    const unsigned char *alpn = NULL;
    unsigned int alpnlen = 0;
    const char *sni = c->sni;
    const char *authority = sni;

    if (cipher != NULL) {
        c->peer.tls_version = SSL_get_version(c->ssl);
        c->peer.cipher = SSL_CIPHER_get_name(cipher);
        c->peer.resumed = SSL_session_reused(c->ssl);
    }
    /* The log shows the name as the ClientHello sent it (see
     * sd_tls_client_hello_cb); the backend is told the authority, which
     * falls back to OpenSSL's name should it know one we did not keep (a
     * resumed TLS 1.2 session); a client: the name it asked for. */
    if (authority == NULL)
        authority = tls != NULL && tls->role == SD_TLS_CLIENT
                        ? tls->server_name : SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
    if (sni == NULL && tls != NULL && tls->role == SD_TLS_CLIENT && !tls->sni_off)
        sni = authority; /* (an address is never sent as SNI) */
    c->peer.sni.s = sni;
    c->peer.sni.len = sni != NULL ? strlen(sni) : 0;
    c->peer.authority.s = authority;
    c->peer.authority.len = authority != NULL ? strlen(authority) : 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpnlen);
    c->peer.alpn.s = (const char *)alpn;
    c->peer.alpn.len = alpnlen;
    c->peer.hit.rule = c->peer.rule;
    c->peer.rule_text = c->peer.rule >= 0 && tls != NULL && tls->policy != NULL
                            ? sd_policy_rule_text(tls->policy, (size_t)c->peer.rule) : NULL;
    /* How long what verified a connector's server holds (a warm
     * connection is not handed out past it). */
    if (tls != NULL && tls->connector && c->not_after > 0)
        c->peer.valid_until = tls->crl_fresh_until != 0 && tls->crl_fresh_until < c->not_after
                                  ? tls->crl_fresh_until : c->not_after;
    /* A connector's certificate went out when the server asked for it,
     * or in the full handshake a resumed session descends from (the same
     * context, so the same certificate: a reload makes a new context). */
    if (tls != NULL && tls->connector && (c->cert_requested || SSL_session_reused(c->ssl))) {
        c->peer.presented_subject = tls->own_subject[0] != '\0' ? tls->own_subject : NULL;
        c->peer.presented_serial = tls->own_serial[0] != '\0' ? tls->own_serial : NULL;
    }
    if (c->peer.cert == NULL) {
        X509 *x = SSL_get0_peer_certificate(c->ssl);
        if (x == NULL)
            x = c->refused_leaf;
        if (x != NULL)
            c->peer.cert = sd_tls_peer_cert_new(x);
    }
}

/* --------------------------------------------------------- error mapping */

/* Empties OpenSSL's error queue and returns its first entry from the SSL
 * library, else its first entry: the record layer and state machine name
 * what the peer did, and a failed record decryption, for one, first
 * queues the cipher's own "cipher operation failed". */
static unsigned long sd_tls_take_error(void)
{
    unsigned long e, first = 0, ssl = 0;
    int i;

    for (i = 0; i < 64 && (e = ERR_get_error()) != 0; i++) { /* the queue holds 16 */
        if (first == 0)
            first = e;
        if (ssl == 0 && ERR_GET_LIB(e) == ERR_LIB_SSL)
            ssl = e;
    }
    ERR_clear_error();
    return ssl != 0 ? ssl : first;
}

/* Is e a fatal alert from the peer about the certificate we sent?
 * (bad_certificate, unsupported_certificate, certificate_revoked,
 * certificate_expired, certificate_unknown, unknown_ca: what a TLS stack
 * sends when its verification of our chain or name fails.) */
static int sd_tls_alert_is_about_cert(unsigned long e)
{
    int r = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) - SSL_AD_REASON_OFFSET : -1;

    return r == SSL_AD_BAD_CERTIFICATE || r == SSL_AD_UNSUPPORTED_CERTIFICATE ||
           r == SSL_AD_CERTIFICATE_REVOKED || r == SSL_AD_CERTIFICATE_EXPIRED ||
           r == SSL_AD_CERTIFICATE_UNKNOWN || r == SSL_AD_UNKNOWN_CA;
}

/* The log reason for an OpenSSL error that says what the peer sent, in
 * the handshake or after it, with *detail; SD_R_NONE for any other error. */
static enum sd_reason sd_tls_client_fault(unsigned long e, int backend, const char **detail)
{
    int r = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;

    *detail = e != 0 ? ERR_reason_error_string(e) : NULL;
    /* A fatal alert from the peer is raised as SSL_AD_REASON_OFFSET plus
     * its description (close_notify, 0, is no error). In TLS 1.3 every
     * alert but close_notify and user_canceled is fatal, whatever level
     * the record says. */
    if (r > SSL_AD_REASON_OFFSET && r < SSL_AD_REASON_OFFSET + 256) {
        const char *name = SSL_alert_desc_string_long(r - SSL_AD_REASON_OFFSET);
        *detail = strcmp(name, "unknown") != 0 ? name : "alert with an unknown description";
        /* A connector's peer is the server: its alert (unknown CA: it
         * does not trust our certificate) is the server's verdict. */
        return backend ? SD_R_SERVER_ALERT : SD_R_CLIENT_ALERT;
    }
    switch (r) {
    case SSL_R_NO_RENEGOTIATION:
        /* a no_renegotiation warning steeldoor never asked for: OpenSSL
         * ends the connection as for a fatal alert */
        *detail = "no renegotiation (warning alert)";
        return SD_R_CLIENT_ALERT;
    case SSL_R_TOO_MANY_WARN_ALERTS: /* warning alerts (or user_canceled) in a row */
    case SSL_R_RECORD_TOO_SMALL:     /* empty records in a row */
    case SSL_R_TOO_MANY_KEY_UPDATES: /* TLS 1.3 KeyUpdates in a row */
        return SD_R_TLS_FLOOD;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST: /* "CONNECT host:port", as sent to a proxy */
        return SD_R_PLAINTEXT_HTTP;
    /* records the peer framed, encrypted or ordered wrongly */
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_ENCRYPTED_LENGTH_TOO_LONG:
    case SSL_R_DATA_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_COMPRESSED_LENGTH_TOO_LONG:
    case SSL_R_BAD_DECOMPRESSION:
    case SSL_R_BAD_RECORD_TYPE:
    case SSL_R_UNEXPECTED_RECORD:
    case SSL_R_DECRYPTION_FAILED:
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
    case SSL_R_INVALID_ALERT:
    case SSL_R_UNKNOWN_ALERT_TYPE:
    case SSL_R_CCS_RECEIVED_EARLY:
    case SSL_R_UNEXPECTED_CCS_MESSAGE:
    case SSL_R_BAD_CHANGE_CIPHER_SPEC:
    case SSL_R_INVALID_CCS_MESSAGE:
    case SSL_R_DATA_BETWEEN_CCS_AND_FINISHED:
    case SSL_R_NOT_ON_RECORD_BOUNDARY:
    /* handshake messages that are malformed or out of order */
    case SSL_R_UNEXPECTED_MESSAGE:
    case SSL_R_BAD_HANDSHAKE_LENGTH:
    case SSL_R_EXCESSIVE_MESSAGE_SIZE:
    case SSL_R_LENGTH_MISMATCH:
    case SSL_R_LENGTH_TOO_SHORT:
    case SSL_R_LENGTH_TOO_LONG:
    case SSL_R_BAD_LENGTH:
    case SSL_R_BAD_PACKET:
    case SSL_R_BAD_PACKET_LENGTH:
    case SSL_R_BAD_EXTENSION:
    case SSL_R_PARSE_TLSEXT:
    case SSL_R_CLIENTHELLO_TLSEXT:
    case SSL_R_EXT_LENGTH_MISMATCH:
    case SSL_R_UNSOLICITED_EXTENSION:
    case SSL_R_BAD_KEY_UPDATE:
    case SSL_R_BAD_KEY_SHARE:
    case SSL_R_BAD_ECPOINT:
    case SSL_R_BAD_LEGACY_VERSION:
    case SSL_R_CERT_LENGTH_MISMATCH:
    case SSL_R_WRONG_SIGNATURE_LENGTH:
        return SD_R_TLS_PROTOCOL_ERROR;
    default:
        return SD_R_NONE;
    }
}

/* Maps a failed handshake to a log reason. The verify callback's record is
 * the most precise; otherwise what OpenSSL queued about the peer. */
static void sd_tls_conn_handshake_failed(struct sd_tls_conn *c, int sslerr)
{
    int sys = errno; /* the socket's error, if that is what ended it */
    unsigned long e = sd_tls_take_error();
    const struct sd_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(c->ssl));
    uint32_t eku = tls != NULL && tls->role == SD_TLS_CLIENT ? XKU_SSL_SERVER : XKU_SSL_CLIENT;

    if (c->s.reason != SD_R_NONE) {
        /* set by the verification (not_authorized, malformed_identity,
         * ca_certificate) */
    } else if (c->verify_err != 0 && c->refused_leaf != NULL &&
               (X509_get_extension_flags(c->refused_leaf) & EXFLAG_INVALID)) {
        /* OpenSSL could not decode an extension (e.g. the SAN) of the
         * leaf, and so could not even build its chain. */
        c->s.reason = SD_R_MALFORMED_IDENTITY;
        c->s.detail = "certificate has an undecodable extension";
    } else if (c->verify_err == X509_V_ERR_INVALID_PURPOSE && c->refused_leaf != NULL &&
               (X509_get_extension_flags(c->refused_leaf) & EXFLAG_XKUSAGE) &&
               (X509_get_extended_key_usage(c->refused_leaf) & eku) &&
               (X509_get_extension_flags(c->refused_leaf) & EXFLAG_KUSAGE) &&
               !(X509_get_key_usage(c->refused_leaf) & (KU_DIGITAL_SIGNATURE | KU_KEY_AGREEMENT))) {
        /* The EKU is right, but the keyUsage extension does not let the
         * key sign (or agree on) a handshake: OpenSSL's purpose check says
         * only "unsupported certificate purpose", which wrong_eku would
         * misname. */
        c->s.reason = SD_R_WRONG_KEY_USAGE;
        c->s.detail = "keyUsage has neither digitalSignature nor keyAgreement";
    } else if (c->verify_err != 0) {
        c->s.reason = sd_tls_verify_reason(c->verify_err);
        c->s.detail = X509_verify_cert_error_string(c->verify_err);
    } else if (e != 0) {
        const char *detail = ERR_reason_error_string(e);
        enum sd_reason reason = SD_R_NONE;

        switch (ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0) {
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            reason = SD_R_NO_CLIENT_CERTIFICATE;
            break;
        case SSL_R_UNSUPPORTED_PROTOCOL: /* TLS 1.1 and older, SSL 3 */
        case SSL_R_VERSION_TOO_LOW:
        case SSL_R_UNKNOWN_PROTOCOL:     /* an SSL 2 ClientHello */
            reason = SD_R_PROTOCOL_VERSION;
            break;
        case SSL_R_WRONG_VERSION_NUMBER:
            /* Before any record was understood this is OpenSSL's verdict
             * on bytes that do not look like TLS at all (it then sends no
             * alert); later it is a record with a changed version. */
            if (SSL_get_state(c->ssl) == TLS_ST_BEFORE) {
                reason = SD_R_NOT_TLS;
                detail = "the client's first bytes are not a TLS record";
            }
            break;
        case SSL_R_NO_SHARED_CIPHER:
            reason = SD_R_NO_SHARED_CIPHER;
            break;
        default:
            break;
        }
        if (reason == SD_R_NONE)
            reason = sd_tls_client_fault(e, c->s.side == SD_SIDE_BACKEND, &detail);
        /* A client's certificate alert during our handshake is its verdict
         * on our certificate (it does not trust its CA, the name does not
         * match, it expired): the client refused steeldoor, not the
         * other way round, and the fix is on the server's side. */
        if (reason == SD_R_CLIENT_ALERT && sd_tls_alert_is_about_cert(e))
            reason = SD_R_CLIENT_REJECTED_SERVER_CERT;
        /* anything else: a negotiation OpenSSL could not complete (no
         * common group or signature algorithm, a bad CertificateVerify
         * signature, ...), in OpenSSL's words */
        c->s.reason = reason != SD_R_NONE ? reason : SD_R_HANDSHAKE_FAILED;
        c->s.detail = detail;
    } else if ((sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) &&
               !c->got_bytes && c->s.side == SD_SIDE_CLIENT) {
        /* Connected, then closed or reset without a byte: a load
         * balancer's TCP health check, not an attack on the handshake. */
        c->s.reason = SD_R_TCP_CHECK;
        c->s.detail = "connected and closed without sending a byte (a TCP health check?)";
    } else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN) {
        c->s.reason = SD_R_HANDSHAKE_ABORTED;
        c->s.detail = sys == ECONNRESET ? strerror(sys)
                      : c->s.side == SD_SIDE_BACKEND
                          ? "backend closed the connection during the handshake"
                          : "client closed the connection during the handshake";
    } else {
        c->s.reason = SD_R_HANDSHAKE_FAILED;
    }
    sd_tls_peer_fill(c);
}

/* Turns SSL_get_error() into an sd_io for reads, writes and shutdown, and a
 * failure into the log's reason for it. (SSL_in_init() says nothing here:
 * OpenSSL sets it on every fatal error.) */
static enum sd_io sd_tls_io_result(struct sd_tls_conn *c, int ret)
{
    int sys = errno; /* the socket's error, if that is what failed */
    int e = SSL_get_error(c->ssl, ret);
    int backend = c->s.side == SD_SIDE_BACKEND;
    enum sd_reason reason;
    const char *detail;

    switch (e) {
    case SSL_ERROR_WANT_READ:
        return SD_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return SD_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        /* The peer's close_notify. A read takes it as the end of the
         * peer's data; a write or close_notify of ours reports it when
         * the socket failed after it (the peer is gone), and then the
         * caller logs this. */
        c->s.reason = backend ? SD_R_BACKEND_RESET : SD_R_CLIENT_RESET;
        c->s.detail = sys != 0 && sys != EAGAIN ? strerror(sys)
                      : backend ? "backend closed the connection"
                                : "client closed the connection";
        ERR_clear_error();
        return SD_IO_EOF;
    case SSL_ERROR_SYSCALL:
        c->s.reason = backend ? SD_R_BACKEND_RESET : SD_R_CLIENT_RESET;
        c->s.detail = sys != 0 ? strerror(sys) : "connection closed";
        ERR_clear_error();
        return SD_IO_ERROR;
    default:
        reason = sd_tls_client_fault(sd_tls_take_error(), backend, &detail);
        if (reason == SD_R_NONE)
            reason = SD_R_TLS_ERROR; /* not the peer's doing, as far as OpenSSL says */
        else if (c->reneg_pending &&
                 (reason == SD_R_CLIENT_ALERT || reason == SD_R_TLS_PROTOCOL_ERROR))
            /* The client's answer to the refusal (an alert, or going on
             * with its handshake): the detail keeps what it sent. */
            reason = SD_R_RENEGOTIATION_REFUSED;
        c->s.reason = reason;
        c->s.detail = detail;
        return SD_IO_ERROR;
    }
}

/*
 * Info callback of every context. It notes one thing nothing else
 * reveals: a client's renegotiation attempt, i.e. a TLS 1.2 ClientHello after
 * the handshake (the first handshake's ClientHello, and a second one after
 * a HelloRetryRequest, come before the client's Finished; TLS 1.3 has no
 * renegotiation and OpenSSL rejects a ClientHello there as an unexpected
 * message). OpenSSL refuses it by itself (SSL_OP_NO_RENEGOTIATION): it
 * answers with a no_renegotiation warning and the connection goes on. A
 * client that then gives up sends a fatal alert (OpenSSL's own client:
 * handshake_failure), which without this note could not be told from an
 * alert for any other reason. OpenSSL calls this with SSL_CB_ACCEPT_LOOP
 * before each state change, so a ClientHello it has read shows as the
 * state TLS_ST_SR_CLNT_HELLO when its answer is chosen. Other handshake
 * messages after the handshake fail earlier, as unexpected messages.
 */
void sd_tls_info_cb(const SSL *ssl, int where, int ret)
{
    struct sd_tls_conn *c;

    (void)ret;
    if ((where & SSL_CB_ACCEPT_LOOP) != SSL_CB_ACCEPT_LOOP ||
        SSL_get_state(ssl) != TLS_ST_SR_CLNT_HELLO || SSL_get_peer_finished(ssl, NULL, 0) == 0)
        return;
    c = SSL_get_app_data(ssl);
    if (c != NULL)
        c->reneg_pending = 1;
}

/* ------------------------------------------------------------ operations */

static enum sd_io sd_tls_stream_handshake(struct sd_stream *s)
{
    struct sd_tls_conn *c = sd_tls_conn_of(s);
    int ret, e;

    errno = 0;
    ret = SSL_do_handshake(c->ssl);
    if (ret == 1) {
        const struct sd_tls *tls = SSL_CTX_get_app_data(SSL_get_SSL_CTX(c->ssl));
        /* A resumed session skipped the verify callback; its certificate
         * passed the same listener's checks when the session was made (the
         * session id context binds it to this listener and its rules).
         * Apply the allow rules again anyway, for the log's rule and as
         * defence in depth; this is where a resumed connection's identity
         * is extracted, from the session's certificate. */
        if (tls != NULL && tls->connector && !SSL_session_reused(c->ssl) &&
            !c->cert_requested) {
            /* The server finished without asking who we are: it admits
             * anyone, so whatever it protects is not protected. */
            c->s.reason = SD_R_SERVER_DID_NOT_REQUEST_CLIENT_CERT;
            c->s.detail = "the server completed the handshake without a CertificateRequest";
            sd_tls_peer_fill(c);
            return SD_IO_ERROR;
        }
        if (SSL_session_reused(c->ssl)) {
            X509 *peer = SSL_get0_peer_certificate(c->ssl);
            if (peer == NULL) {
                c->s.reason = SD_R_NO_CLIENT_CERTIFICATE;
                c->s.detail = "resumed session without a client certificate";
                sd_tls_peer_fill(c);
                return SD_IO_ERROR;
            }
            /* A client's session carries no admission record: its
             * deadline was checked when it was handed out
             * (sd_tls_connector_session). */
            if ((tls->role != SD_TLS_CLIENT && sd_tls_resumed_admitted(c, tls) != 0) ||
                sd_tls_authorize(c, tls, peer, NULL) != 0) {
                sd_tls_peer_fill(c);
                return SD_IO_ERROR;
            }
        } else if (tls != NULL && tls->role == SD_TLS_SERVER) {
            sd_tls_compat_share_chain(c->ssl);
        }
        X509_free(c->parsed_leaf);
        c->parsed_leaf = NULL;
        sd_tls_peer_fill(c);
        return SD_IO_OK;
    }
    e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ)
        return SD_IO_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return SD_IO_WANT_WRITE;
    sd_tls_conn_handshake_failed(c, e);
    return SD_IO_ERROR;
}

static enum sd_io sd_tls_stream_read(struct sd_stream *s, void *buf, size_t len, size_t *n)
{
    struct sd_tls_conn *c = sd_tls_conn_of(s);

    errno = 0;
    if (SSL_read_ex(c->ssl, buf, len, n) == 1)
        return SD_IO_OK;
    return sd_tls_io_result(c, 0);
}

/* One record per SSL_write_ex (SSL_MODE_ENABLE_PARTIAL_WRITE), so that
 * every record but the last of a burst goes out with MSG_MORE: the kernel
 * then queues them and pushes one large segment, with one wake-up of the
 * peer, instead of one per 16 KiB record. That per-send path, not the
 * copy or the cipher, is most of the CPU a bulk transfer costs. */
static enum sd_io sd_tls_stream_write(struct sd_stream *s, const void *buf, size_t len,
                                      size_t *n)
{
    struct sd_tls_conn *c = sd_tls_conn_of(s);
    const unsigned char *p = buf;
    size_t done = 0, chunk, w;
    enum sd_io io = SD_IO_OK;

    errno = 0;
    while (done < len) {
        chunk = len - done > SD_TLS_RECORD ? SD_TLS_RECORD : len - done;
        c->write_more = done + chunk < len;
        w = 0;
        if (SSL_write_ex(c->ssl, p + done, chunk, &w) != 1) {
            io = sd_tls_io_result(c, 0);
            break;
        }
        done += w;
    }
    c->write_more = 0;
    *n = done;
    /* Bytes already written make this call a success; the failure, if it
     * was one, shows again on the next call. */
    return done > 0 ? SD_IO_OK : io;
}

/* Sends close_notify (our half-close); reading may continue afterwards. */
static enum sd_io sd_tls_stream_shutdown(struct sd_stream *s)
{
    struct sd_tls_conn *c = sd_tls_conn_of(s);
    int ret;

    errno = 0;
    ret = SSL_shutdown(c->ssl);
    if (ret >= 0)
        return SD_IO_OK; /* 0: our close_notify is sent, theirs not yet seen */
    return sd_tls_io_result(c, ret);
}

/* epoll reported the socket readable: the BIO may read again. */
static void sd_tls_stream_readable(struct sd_stream *s, int hup)
{
    struct sd_tls_conn *c = sd_tls_conn_of(s);

    c->read_dry = 0;
    c->hup |= (uint8_t)(hup != 0);
}

static int sd_tls_stream_read_dry(struct sd_stream *s)
{
    struct sd_tls_conn *c = sd_tls_conn_of(s);

    /* Only a dry socket with nothing left in OpenSSL's buffer can wait. */
    return c->read_dry && !SSL_has_pending(c->ssl);
}

static const struct sd_peer *sd_tls_stream_peer(const struct sd_stream *s)
{
    /* Every TLS stream is allocated writable (sd_tls_stream_new); the
     * const is the interface's promise to callers, kept: filling is
     * idempotent and changes nothing they can tell apart. */
    struct sd_tls_conn *c = (struct sd_tls_conn *)(uintptr_t)s;

    sd_tls_peer_fill(c);
    return &c->peer;
}

static enum sd_reason sd_tls_stream_judge(const struct sd_stream *s, struct sd_tls *now)
{
    return sd_tls_judge((const struct sd_tls_conn *)s, now);
}

static void sd_tls_stream_free(struct sd_stream *s)
{
    struct sd_tls_conn *c = sd_tls_conn_of(s);

    /* OpenSSL takes a session whose connection ends without our
     * close_notify for a broken one and makes it unresumable, even when the
     * server ended it cleanly with its own and closed the socket before
     * ours could go (the usual end of a connector's connection): that
     * would cost a connector the session the server just issued. A clean
     * end from either side keeps it; a reset or an error still does not. */
    if (!SSL_is_server(c->ssl) && (SSL_get_shutdown(c->ssl) & SSL_RECEIVED_SHUTDOWN))
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(c->ssl);
    X509_free(c->refused_leaf);
    X509_free(c->parsed_leaf);
    sd_peer_cert_unref(c->peer.cert);
    free(c->sni);
    free(c);
}

static const struct sd_stream_ops sd_tls_stream_ops = {
    .name = "tls",
    .handshake = sd_tls_stream_handshake,
    .read = sd_tls_stream_read,
    .write = sd_tls_stream_write,
    .shutdown = sd_tls_stream_shutdown,
    .readable = sd_tls_stream_readable,
    .read_dry = sd_tls_stream_read_dry,
    .peer = sd_tls_stream_peer,
    .judge = sd_tls_stream_judge,
    .free = sd_tls_stream_free,
};

/* ------------------------------------------------ certificates as DER */

/* The length of the DER element (a certificate: a SEQUENCE) at the start
 * of p[0, n), header included, or 0 when it is not one whole element. */
static size_t sd_tls_der_len(const unsigned char *p, size_t n)
{
    const unsigned char *q = p;
    long len = 0;
    int tag = 0, cls = 0;

    if (n == 0 || n > (size_t)LONG_MAX ||
        (ASN1_get_object(&q, &len, &tag, &cls, (long)n) & 0x80) != 0 ||
        tag != V_ASN1_SEQUENCE || cls != V_ASN1_UNIVERSAL || len < 0 ||
        (size_t)len > n - (size_t)(q - p)) {
        ERR_clear_error();
        return 0;
    }
    return (size_t)(q - p) + (size_t)len;
}

int sd_tls_stream_certs_der(const struct sd_stream *s, uint8_t *buf, size_t cap,
                            struct sd_der *certs, size_t max)
{
    const struct sd_tls_conn *c;
    X509 *leaf;
    struct sd_tls_adm a;
    unsigned char *p = buf;
    size_t leaflen, chainlen = 0, off, k;
    int dl;

    if (s == NULL || s->ops != &sd_tls_stream_ops)
        return 0; /* not TLS: nobody verified */
    c = (const struct sd_tls_conn *)s;
    leaf = SSL_get0_peer_certificate(c->ssl);
    /* Verified means: the handshake finished, and on a server the allow
     * rules admitted the client (a resumed session is judged again after
     * OpenSSL's handshake; a refused one keeps rule -1). */
    if (leaf == NULL || !SSL_is_init_finished(c->ssl) ||
        (SSL_is_server(c->ssl) && c->peer.rule < 0))
        return 0;
    if (max == 0)
        return -1;
    dl = i2d_X509(leaf, NULL);
    if (dl <= 0 || (size_t)dl > cap || i2d_X509(leaf, &p) != dl) {
        ERR_clear_error();
        return -1;
    }
    leaflen = (size_t)dl;
    if (SSL_session_reused(c->ssl)) {
        /* OpenSSL keeps no chain in a resumed session; the admission
         * record has what the full handshake's chain gave (same filter). */
        if (sd_tls_adm_get(SSL_get_session(c->ssl), &a) != 0)
            return -1;
        if (a.chainlen > cap - leaflen)
            return -1;
        memcpy(buf + leaflen, a.chain, a.chainlen);
        chainlen = a.chainlen;
    } else if (sd_tls_chain_der(c->ssl, buf + leaflen, cap - leaflen, &chainlen) != 0) {
        return -1;
    }
    certs[0].p = buf;
    certs[0].len = leaflen;
    for (k = 1, off = leaflen; off < leaflen + chainlen; k++) {
        size_t n = sd_tls_der_len(buf + off, leaflen + chainlen - off);
        if (n == 0 || k >= max)
            return -1;
        certs[k].p = buf + off;
        certs[k].len = n;
        off += n;
    }
    return k > INT_MAX ? -1 : (int)k;
}

/* A TLS stream with tls's settings over bio (NULL: the socket BIO over
 * fd); the SSL takes bio. Accept or connect state by the context's role. */
static struct sd_stream *sd_tls_stream_make(struct sd_tls *tls, int fd, BIO *bio,
                                            enum sd_side side)
{
    struct sd_tls_conn *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        BIO_free(bio);
        return NULL;
    }
    c->s.ops = &sd_tls_stream_ops;
    c->s.fd = fd;
    c->s.side = side;
    c->peer.rule = -1;
    c->peer.hit.rule = -1;
    c->ssl = SSL_new(tls->ctx);
    if (bio == NULL && c->ssl != NULL)
        bio = sd_tls_bio_new(c);
    if (c->ssl == NULL || bio == NULL) {
        BIO_free(bio);
        goto fail;
    }
    SSL_set_bio(c->ssl, bio, bio); /* the SSL owns the BIO from here */
    SSL_set_app_data(c->ssl, c);
    if (tls->role == SD_TLS_CLIENT) {
        SSL_SESSION *sess;
        /* SNI: the server picks its certificate (and its session id
         * context) by it. */
        if (tls->server_name != NULL && !tls->sni_off &&
            !SSL_set_tlsext_host_name(c->ssl, tls->server_name))
            goto fail;
        /* A connector resumes a session of a verified full handshake;
         * failing that, a full handshake as without one. */
        if (tls->connector && tls->sessions != NULL &&
            (sess = sd_tls_connector_session(tls, &c->auth_time, &c->not_after)) != NULL) {
            if (!SSL_set_session(c->ssl, sess)) {
                ERR_clear_error();
                c->auth_time = 0;
            }
            SSL_SESSION_free(sess);
        }
        SSL_set_connect_state(c->ssl);
    } else {
        SSL_set_accept_state(c->ssl);
    }
    return &c->s;
fail:
    ERR_clear_error();
    SSL_free(c->ssl);
    free(c);
    return NULL;
}

struct sd_stream *sd_tls_stream_new(struct sd_tls *tls, int fd, enum sd_side side)
{
    return sd_tls_stream_make(tls, fd, NULL, side);
}

/* Tests: a TLS stream over any BIO (a memory BIO pair), which it takes;
 * fd is -1 and readable/read_dry mean nothing. */
struct sd_stream *sd_tls_stream_new_bio(struct sd_tls *tls, BIO *bio, enum sd_side side)
{
    return sd_tls_stream_make(tls, -1, bio, side);
}

