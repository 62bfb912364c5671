/* fuzz_yaml.c - libFuzzer target for the YAML configuration loader
 * (config_yaml.c, through the table of keys in config_keys.c) and
 * sd_config_validate() (config.c).
 *
 * Input: the bytes of a config file, any bytes (NULs too), given to
 * sd_config_load_yaml_bytes() exactly as a file snapshot would give them.
 * A config that loads is validated and its admission bytes computed, then
 * everything is freed, so LeakSanitizer sees any leak on any path.
 *
 * Validation resolves listen and target addresses with getaddrinfo(); a
 * fuzzed host name would be a DNS query (slow, and not what is tested
 * here), so a config is validated only when every address is numeric,
 * a unix socket or absent. Invariants that fail call __builtin_trap().
 * Links src/config*.c, policy.c, net.c, files.c and err.c; no OpenSSL. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

/* 1 when sd_addr_parse(text) cannot reach DNS. */
static int fuzz_numeric(const char *text)
{
    char host[256];
    const char *colon;
    size_t n;
    unsigned char bin[16];

    if (text == NULL || strncmp(text, "unix:", 5) == 0)
        return 1;
    colon = strrchr(text, ':');
    if (colon == NULL)
        return 1; /* refused before any lookup */
    n = (size_t)(colon - text);
    if (text[0] == '[') {
        if (n < 2 || text[n - 1] != ']' || n - 2 >= sizeof(host))
            return 1; /* malformed brackets are refused before any lookup */
        memcpy(host, text + 1, n - 2);
        host[n - 2] = '\0';
        return inet_pton(AF_INET6, host, bin) == 1;
    }
    if (n >= sizeof(host))
        return 1;
    memcpy(host, text, n);
    host[n] = '\0';
    return inet_pton(AF_INET, host, bin) == 1;
}

static void fuzz_feed(void *arg, const void *p, size_t n)
{
    size_t *total = arg;

    CHECK(p != NULL || n == 0);
    *total += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sd_config *cfg = sd_config_new();
    struct sd_err err;
    size_t i, total = 0;
    int numeric = 1;

    if (cfg == NULL)
        return 0;
    memset(&err, 0, sizeof(err));
    if (sd_config_load_yaml_bytes(cfg, "fuzz.yaml", data, size, &err) != 0) {
        /* every error is one bounded line naming the file */
        CHECK(memchr(err.msg, '\0', sizeof(err.msg)) != NULL);
        CHECK(strncmp(err.msg, "fuzz.yaml", 9) == 0);
        goto out;
    }
    CHECK(cfg->nlisteners <= SD_MAX_LISTENERS);
    for (i = 0; i < cfg->nlisteners; i++) {
        const struct sd_listener_conf *l = &cfg->listeners[i];
        CHECK(l->ncrls <= SD_MAX_CRLS);
        CHECK(l->verify_depth <= SD_MAX_VERIFY_DEPTH);
        numeric &= fuzz_numeric(l->listen) & fuzz_numeric(l->target);
        sd_config_admission(l, fuzz_feed, &total);
    }
    CHECK(cfg->workers >= 0 && cfg->workers <= SD_MAX_WORKERS);
    if (numeric && sd_config_validate(cfg, &err) == 0) {
        for (i = 0; i < cfg->nlisteners; i++)
            CHECK(cfg->listeners[i].name != NULL && cfg->listeners[i].listen != NULL &&
                  cfg->listeners[i].target != NULL && cfg->listeners[i].policy != NULL);
        CHECK(cfg->workers >= 1);
    }
out:
    sd_config_free(cfg);
    return 0;
}
