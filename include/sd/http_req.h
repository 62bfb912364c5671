/*
 * sd/http_req.h - strict HTTP/1.1 and HTTP/1.0 request heads, chunked
 * bodies, and the loose header-name comparison used against spoofing.
 *
 * picohttpparser-style: the head parser allocates nothing and keeps no
 * state between calls. It is given the bytes received so far and returns
 * either the length of a complete head, SD_HTTP_INCOMPLETE ("call again
 * with more bytes"), or SD_HTTP_ERROR with a precise reason. Every name
 * it returns points into the caller's buffer, so the buffer must outlive
 * the result (and must not move).
 *
 * Strictness is the point: steeldoor forwards requests to a backend that
 * parses them again, and any byte sequence the two parsers could read
 * differently (two lengths, an obfuscated Transfer-Encoding, a bare LF
 * line end, a folded line) is a request-smuggling vector. Such requests
 * are refused, not repaired. Every refusal has an HTTP status and a stable
 * log word (sd_http_err_status, sd_http_err_word).
 *
 * No OpenSSL type, no I/O: this module sees bytes only.
 */
#ifndef SD_HTTP_REQ_H
#define SD_HTTP_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "sd/policy.h" /* struct sd_name */

/* Return values of sd_http_req_parse besides a head length (> 0). */
#define SD_HTTP_ERROR (-1)      /* refused: see req->err */
#define SD_HTTP_INCOMPLETE (-2) /* no verdict yet: need more bytes */

#define SD_HTTP_MAX_REQUEST_LINE 8192u /* longer: 414 */
#define SD_HTTP_MAX_HEAD 32768u        /* whole head, final CRLF included: 431 */
#define SD_HTTP_MAX_FIELDS 100u        /* header fields: 431 above */
#define SD_HTTP_MAX_EMPTY_LINES 4u     /* CRLFs tolerated before a request line */
#define SD_HTTP_MAX_CHUNK_DIGITS 16u   /* hex digits of a chunk-size: 64 bits */
#define SD_HTTP_MAX_CHUNK_EXT 4096u    /* bytes of extensions on one chunk line */
#define SD_HTTP_MAX_TRAILER 8192u      /* bytes of the trailer section */

/* Why a request was refused. sd_http_err_status / sd_http_err_word give the
 * HTTP status and the log word of each (one table in src/http/req.c). */
enum sd_http_err {
    SD_HTTP_OK = 0,
    SD_HTTP_E_REQUEST_LINE,    /* 400 http_bad_request_line: not METHOD SP target SP version */
    SD_HTTP_E_METHOD,          /* 400 http_bad_method: not a token */
    SD_HTTP_E_TARGET,          /* 400 http_bad_target: bad char, or form not allowed */
    SD_HTTP_E_VERSION,         /* 400 http_bad_version: not HTTP/DIGIT.DIGIT */
    SD_HTTP_E_VERSION_UNSUPP,  /* 505 http_version_unsupported: not 1.0 or 1.1 */
    SD_HTTP_E_URI_TOO_LONG,    /* 414 http_request_line_too_long */
    SD_HTTP_E_HEAD_TOO_LARGE,  /* 431 http_head_too_large */
    SD_HTTP_E_TOO_MANY_FIELDS, /* 431 http_too_many_fields */
    SD_HTTP_E_EMPTY_LINES,     /* 400 http_leading_empty_lines: too many */
    SD_HTTP_E_FIELD_NAME,      /* 400 http_bad_field_name: empty, not a token, no colon */
    SD_HTTP_E_WS_BEFORE_COLON, /* 400 http_ws_before_colon */
    SD_HTTP_E_FIELD_VALUE,     /* 400 http_bad_field_value: NUL or another CTL */
    SD_HTTP_E_OBS_FOLD,        /* 400 http_obs_fold: a line starting with SP or HTAB */
    SD_HTTP_E_BARE_CR,         /* 400 http_bare_cr: CR not followed by LF */
    SD_HTTP_E_BARE_LF,         /* 400 http_bare_lf: LF not preceded by CR */
    SD_HTTP_E_TE_AND_CL,       /* 400 http_te_and_cl */
    SD_HTTP_E_CL_MULTIPLE,     /* 400 http_cl_multiple: several fields or a list */
    SD_HTTP_E_CL_INVALID,      /* 400 http_cl_invalid: not 1-18 digits */
    SD_HTTP_E_TE_INVALID,      /* 400 http_te_invalid: malformed, chunked not once and last */
    SD_HTTP_E_TE_UNSUPPORTED,  /* 501 http_te_unsupported: a coding other than chunked */
    SD_HTTP_E_TE_HTTP10,       /* 400 http_te_http10: Transfer-Encoding in HTTP/1.0 */
    SD_HTTP_E_HOST_MISSING,    /* 400 http_host_missing (HTTP/1.1) */
    SD_HTTP_E_HOST_MULTIPLE,   /* 400 http_host_multiple */
    SD_HTTP_E_HOST_INVALID,    /* 400 http_host_invalid: not a uri-host[:port] */
    SD_HTTP_E_EXPECT,          /* 417 http_expect_unsupported: not 100-continue */
    SD_HTTP_E_CHUNK_SIZE,      /* 400 http_bad_chunk_size: empty, non-hex, > 16 digits */
    SD_HTTP_E_CHUNK_EXT,       /* 400 http_bad_chunk_ext: a CTL, or no ';' */
    SD_HTTP_E_CHUNK_EXT_LONG,  /* 400 http_chunk_ext_too_long */
    SD_HTTP_E_CHUNK_DATA_END,  /* 400 http_bad_chunk_end: data not followed by CRLF */
    SD_HTTP_E_TRAILER,         /* 400 http_bad_trailer: a malformed trailer field */
    SD_HTTP_E_TRAILER_LARGE,   /* 431 http_trailer_too_large */
    SD_HTTP_E_COUNT
};

/* Returns the HTTP status steeldoor answers e with (400 for an unknown e). */
int sd_http_err_status(enum sd_http_err e);
/* Returns e's stable log word, a static string ("http_unknown" if unknown). */
const char *sd_http_err_word(enum sd_http_err e);

enum sd_http_target_form {
    SD_HTTP_TARGET_ORIGIN,    /* /path?query */
    SD_HTTP_TARGET_ABSOLUTE,  /* http://host/path or https://... */
    SD_HTTP_TARGET_AUTHORITY, /* host:port, CONNECT only */
    SD_HTTP_TARGET_ASTERISK   /* *, OPTIONS only */
};

enum sd_http_framing {
    SD_HTTP_BODY_NONE,    /* no body (neither field present) */
    SD_HTTP_BODY_LENGTH,  /* content_length bytes (may be 0) */
    SD_HTTP_BODY_CHUNKED  /* Transfer-Encoding: chunked */
};

struct sd_http_field {
    struct sd_name name;  /* a token, as sent (case kept) */
    struct sd_name value; /* leading and trailing SP/HTAB removed */
};

struct sd_http_req {
    struct sd_name method; /* a token, case-sensitive ("GET") */
    struct sd_name target;
    enum sd_http_target_form form;
    int minor;             /* HTTP/1.<minor>: 0 or 1 */
    struct sd_http_field *fields; /* the caller's array */
    size_t nfields;
    enum sd_http_framing framing;
    uint64_t content_length; /* with SD_HTTP_BODY_LENGTH */
    int keep_alive;          /* 1.1: unless "Connection: close"; 1.0: only with keep-alive */
    int expect_continue;     /* "Expect: 100-continue" in HTTP/1.1 (1.0: ignored) */
    int upgrade;             /* an Upgrade field is present */
    int has_host;
    struct sd_name host;     /* the Host value when has_host */
    enum sd_http_err err;    /* with SD_HTTP_ERROR, else SD_HTTP_OK */
};

/* Parses the request head at the start of buf[0, len): optional empty lines
 * (at most SD_HTTP_MAX_EMPTY_LINES), the request line, header fields, and
 * the empty line. fields[0, max_fields) receives the fields; more than
 * min(max_fields, SD_HTTP_MAX_FIELDS) of them is a 431.
 * Returns the head's length in bytes (the body or the next pipelined
 * request starts there) with *req filled; SD_HTTP_INCOMPLETE when the bytes
 * seen so far are a valid beginning of a head (nothing in *req is then
 * meaningful); SD_HTTP_ERROR with req->err set. Never reads buf[len] or
 * beyond. A verdict never changes when more bytes are appended: an error
 * on a prefix is an error on the whole, and a complete head's length and
 * result do not depend on what follows it. */
long sd_http_req_parse(const char *buf, size_t len, struct sd_http_req *req,
                       struct sd_http_field *fields, size_t max_fields);

/* Returns 1 when a and b are equal ASCII-case-insensitively with '_' and '-'
 * taken as the same byte (WSGI and CGI servers map both to one variable,
 * so "X_Client_Cert" spoofs "x-client-cert"), else 0. */
int sd_http_name_eq_loose(struct sd_name a, struct sd_name b);
/* Returns 1 when a equals the C string b ASCII-case-insensitively. */
int sd_http_token_eq(struct sd_name a, const char *b);

/* Incremental decoder of a chunked body: feed it the bytes after the head,
 * in pieces of any size; it tells which bytes are chunk data and where the
 * body (trailers and final CRLF included) ends. Zero-initialise it or call
 * sd_http_chunked_init. */
struct sd_http_chunked {
    uint64_t remaining;  /* data bytes left in the current chunk */
    uint32_t state;
    uint32_t count;      /* digits of the size, or bytes of extensions */
    uint32_t trailer;    /* bytes of the trailer section so far */
    enum sd_http_err err;
};

void sd_http_chunked_init(struct sd_http_chunked *c);
/* Consumes a prefix of buf[0, len). Returns the number of bytes consumed
 * (0 only when len is 0 or the body has ended), with *data set to the chunk
 * data among them ({buf + k, n}, n = 0 when none): at most one run of data
 * per call, always at the end of the consumed bytes, so the caller calls
 * again with the rest. Returns SD_HTTP_ERROR with c->err set on malformed
 * input (and from then on). Never consumes a byte past the body's end. */
long sd_http_chunked_feed(struct sd_http_chunked *c, const char *buf, size_t len,
                          struct sd_name *data);
/* Returns 1 once the whole body, final CRLF included, has been consumed. */
int sd_http_chunked_done(const struct sd_http_chunked *c);

#endif
