/* fuzz_sni.c - libFuzzer target for the server_name extension parser
 * (src/tls/sni.c), which reads bytes a client sent before any
 * authentication.
 *
 * Input: the extension body, as sd_tls_sni_parse() gets it from OpenSSL.
 * It is copied into a malloc'd buffer of exactly its size, so ASan reports
 * any read past it. Invariants (a failure calls __builtin_trap()):
 *   - a result of -1, 0 or 1 only;
 *   - on 0 or 1, the name lies within the input and is at most
 *     SD_TLS_SNI_MAX bytes; on 1 it is not empty and has no NUL byte;
 *   - the lowercased copy has the same length, differs only in A-Z, and
 *     has no NUL where the name had none. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/tls/sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *in = malloc(size > 0 ? size : 1);
    uint8_t lower[SD_TLS_SNI_MAX];
    struct sd_name name = { NULL, 0 };
    size_t i;
    int r;

    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    r = sd_tls_sni_parse(in, size, &name);
    CHECK(r == -1 || r == 0 || r == 1);
    if (r >= 0) {
        const uint8_t *s = (const uint8_t *)name.s;
        CHECK(s >= in && name.len <= size && s + name.len <= in + size);
        CHECK(name.len <= SD_TLS_SNI_MAX);
        if (r == 1)
            CHECK(name.len > 0 && memchr(s, 0, name.len) == NULL);
        sd_tls_sni_lower(&name, lower);
        for (i = 0; i < name.len; i++) {
            uint8_t ch = s[i];
            CHECK(lower[i] == ch || (ch >= 'A' && ch <= 'Z' && lower[i] == ch + 32));
            CHECK((lower[i] == 0) == (ch == 0));
        }
    }
    free(in);
    return 0;
}
