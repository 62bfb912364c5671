/*
 * sd/http_resp.h - a strict HTTP/1.x response-head parser (the backend side
 * of HTTP mode): status line, header fields and the body framing that
 * follows, without allocation and without state between calls.
 *
 * The parser reads the caller's buffer and returns pointers into it; it
 * never copies, never allocates and keeps nothing between calls, so a
 * caller that receives more bytes simply calls it again on the whole
 * buffer (picohttpparser's model). A head is at most SD_HTTP_RESP_MAX_HEAD
 * bytes with at most SD_HTTP_RESP_MAX_FIELDS fields.
 *
 * Strictness is the point: the backend's framing decides where one
 * response ends and the next begins on a reused connection, so anything a
 * second parser could read differently (a bare CR or LF, whitespace before
 * a colon, obs-fold, control bytes, a repeated or malformed Content-Length,
 * an obfuscated Transfer-Encoding) is refused rather than guessed.
 */
#ifndef SD_HTTP_RESP_H
#define SD_HTTP_RESP_H

#include <stddef.h>
#include <stdint.h>

#include "sd/policy.h"

#define SD_HTTP_RESP_MAX_HEAD 32768 /* bytes, status line to the empty line */
#define SD_HTTP_RESP_MAX_FIELDS 100

/* sd_http_resp_parse() results other than a byte count. */
#define SD_HTTP_RESP_ERROR (-1)      /* refused: see out->err */
#define SD_HTTP_RESP_INCOMPLETE (-2) /* no error so far; call again with more */

/* What the request was: the response's framing depends on it. */
enum sd_http_resp_req {
    SD_HTTP_RESP_REQ_OTHER = 0, /* GET, POST, ... */
    SD_HTTP_RESP_REQ_HEAD,      /* no body, whatever the fields say */
    SD_HTTP_RESP_REQ_CONNECT,   /* a 2xx turns the connection into a tunnel */
};

/* How the body after the head is delimited (RFC 9112 section 6.3). */
enum sd_http_resp_framing {
    SD_HTTP_RESP_BODY_NONE = 0, /* 204, 304, a response to HEAD */
    SD_HTTP_RESP_BODY_LENGTH,   /* content_length bytes (possibly 0) */
    SD_HTTP_RESP_BODY_CHUNKED,  /* chunked coding is the final one */
    SD_HTTP_RESP_BODY_CLOSE,    /* until the backend closes */
    SD_HTTP_RESP_BODY_INTERIM,  /* 1xx but 101: no body, another head follows */
    SD_HTTP_RESP_BODY_TUNNEL,   /* 101, or 2xx to CONNECT: raw bytes both ways */
};

/* Why a head was refused. Each has a stable log word (sd_http_resp_err_str). */
enum sd_http_resp_err {
    SD_HTTP_RESP_E_NONE = 0,
    SD_HTTP_RESP_E_VERSION,        /* "http_resp_bad_version": not HTTP/1.x */
    SD_HTTP_RESP_E_STATUS,         /* "http_resp_bad_status": not 3 digits in 100-599 */
    SD_HTTP_RESP_E_REASON,         /* "http_resp_bad_reason": a control byte in the reason */
    SD_HTTP_RESP_E_LINE_END,       /* "http_resp_bad_line_end": a bare CR or LF */
    SD_HTTP_RESP_E_FIELD_NAME,     /* "http_resp_bad_field_name": empty, not a token, no colon */
    SD_HTTP_RESP_E_SPACE_COLON,    /* "http_resp_space_before_colon" */
    SD_HTTP_RESP_E_OBS_FOLD,       /* "http_resp_obs_fold": a line starting with SP or HTAB */
    SD_HTTP_RESP_E_FIELD_VALUE,    /* "http_resp_bad_field_value": NUL, DEL or another CTL */
    SD_HTTP_RESP_E_HEAD_TOO_LARGE, /* "http_resp_head_too_large": over SD_HTTP_RESP_MAX_HEAD */
    SD_HTTP_RESP_E_TOO_MANY,       /* "http_resp_too_many_fields": over the caller's array */
    SD_HTTP_RESP_E_CL,             /* "http_resp_bad_content_length": not 1*DIGIT < 2^63 */
    SD_HTTP_RESP_E_CL_REPEATED,    /* "http_resp_repeated_content_length" */
    SD_HTTP_RESP_E_TE,             /* "http_resp_bad_transfer_encoding": not a token list,
                                      or chunked not the final coding */
};
#define SD_HTTP_RESP_E_COUNT (SD_HTTP_RESP_E_TE + 1)

/* out->flags: accepted, but worth a log line. */
#define SD_HTTP_RESP_F_TE_AND_CL 0x1u  /* Content-Length ignored (TE wins) */
#define SD_HTTP_RESP_F_TE_OTHER 0x2u   /* TE without final chunked: close-delimited */

struct sd_http_resp_field {
    struct sd_name name;  /* a token, as sent (case kept) */
    struct sd_name value; /* without leading and trailing SP/HTAB; may be empty */
};

struct sd_http_resp {
    int minor;                         /* x of HTTP/1.x */
    int status;                        /* 100-599 */
    struct sd_name reason;             /* may be empty */
    size_t nfields;                    /* used entries of the caller's array */
    enum sd_http_resp_framing framing;
    uint64_t content_length;           /* with SD_HTTP_RESP_BODY_LENGTH */
    int keep_alive;                    /* 1: the connection may carry another response */
    unsigned flags;                    /* SD_HTTP_RESP_F_* */
    enum sd_http_resp_err err;         /* with SD_HTTP_RESP_ERROR */
};

/* Parses the response head at the start of buf[0, len). fields receives up
 * to max_fields entries (at most SD_HTTP_RESP_MAX_FIELDS are ever used).
 * req says what the request was. Returns the head's length in bytes (the
 * body, or the next head, starts there), SD_HTTP_RESP_INCOMPLETE when buf
 * holds a valid prefix of a head, or SD_HTTP_RESP_ERROR with out->err set.
 * Reads only buf[0, min(len, SD_HTTP_RESP_MAX_HEAD)).
 *
 * The result for a prefix of some input is either INCOMPLETE or the
 * input's own result: an error is reported at the byte that makes it one,
 * so a caller may parse as bytes arrive. keep_alive is 0 whenever the
 * framing is CLOSE or TUNNEL, or TE and CL were both present. */
long sd_http_resp_parse(const char *buf, size_t len, enum sd_http_resp_req req,
                        struct sd_http_resp *out, struct sd_http_resp_field *fields,
                        size_t max_fields);

/* The log word of err ("http_resp_bad_status"; the request parser's
 * words start with "http_"), or "none" for SD_HTTP_RESP_E_NONE. */
const char *sd_http_resp_err_str(enum sd_http_resp_err err);

/* The name of a framing ("chunked"), for logs and tests. */
const char *sd_http_resp_framing_str(enum sd_http_resp_framing f);

#endif
