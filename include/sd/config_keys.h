/*
 * sd/config_keys.h - the one table of configuration keys.
 *
 * Each key steeldoor knows is declared once, in src/config_keys.c: its name
 * (the command-line flag and the YAML key are the same word), where it may
 * be written (flag, YAML or both), the object it sets (a listener or the
 * process), the syntax of its value, its default, its help text, whether it
 * decides admission, and how it is stored. getopt's options, the flag
 * parser, the YAML loader's key dispatch, `steeldoor serve --help`, the
 * docs check (tests/unit/test_config_keys.c) and the admission test
 * (tests/unit/test_admission.c) are all derived from it, so a key cannot
 * exist in one of them and be missing from another.
 *
 * Types only plus the lookup and apply functions; includes no other sd
 * header but err.h, so it never takes part in an include cycle.
 */
#ifndef SD_CONFIG_KEYS_H
#define SD_CONFIG_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "sd/err.h"

struct sd_config;
struct sd_listener_conf;

/* Where a key may be written. */
#define SD_KEY_FLAG 1u /* on the `serve` command line */
#define SD_KEY_YAML 2u /* in the config file */

/* Which object a key sets. */
enum sd_key_scope {
    SD_SCOPE_LISTENER, /* a struct sd_listener_conf */
    SD_SCOPE_PROCESS,  /* the struct sd_config itself */
};

/* The syntax of a key's value, which also decides how it is parsed. */
enum sd_key_type {
    SD_KT_STRING,    /* any text */
    SD_KT_PATH,      /* a file or directory name (text, not opened here) */
    SD_KT_DURATION,  /* 500ms, 10s, 5m, 1h, 7d or seconds; 1 ms to 24 h */
    SD_KT_DURATION0, /* the same, or 0 (off) */
    SD_KT_SECONDS,   /* a duration stored in seconds, 0 to 10 years */
    SD_KT_UINT,      /* a whole number in [min, max] */
    SD_KT_BOOL,      /* true/yes or false/no in YAML; a flag without value */
    SD_KT_SPECIAL,   /* handled by its one reader: config, help, listeners */
};

/* The groups of `steeldoor serve --help`, in the order they are printed. */
enum sd_key_group {
    SD_GROUP_LISTENER,
    SD_GROUP_SERVER, /* connect: which server is the right one */
    SD_GROUP_WHO,
    SD_GROUP_REVOCATION,
    SD_GROUP_IDENTITY,
    SD_GROUP_HTTP,
    SD_GROUP_AUTH,
    SD_GROUP_PROCESS,
    SD_GROUP_RELOAD,
    SD_GROUP_COUNT_,
};

/* Which kind of listener a listener key belongs to (sd_config_key.connector). */
#define SD_KEY_SERVE_ONLY 0u   /* a `listeners:` key, `serve` flag */
#define SD_KEY_BOTH_ROLES 1u   /* also a `connectors:` key, `connect` flag */
#define SD_KEY_CONNECT_ONLY 2u /* a `connectors:` key, `connect` flag only */

/* A parsed value, as given to a setter function. */
union sd_config_value {
    const char *s; /* SD_KT_STRING, SD_KT_PATH */
    uint32_t u;    /* SD_KT_DURATION* (ms), SD_KT_SECONDS (s), SD_KT_UINT */
    int b;         /* SD_KT_BOOL */
};

struct sd_config_key;

/* Stores v into obj (the listener or the config, by the key's scope);
 * `what` names the setting in messages ("mode", "--http"). Returns 0, or
 * -1 with err. */
typedef int (*sd_config_setter)(void *obj, const struct sd_config_key *k,
                                const union sd_config_value *v, const char *what,
                                struct sd_err *err);

struct sd_config_key {
    const char *name;      /* YAML key; also the flag unless `flag` is set */
    const char *flag;      /* the flag's spelling when it differs, or NULL: for a
                            * bool whose flag turns it off (--no-watch is
                            * watch: false), or a switch that sets one value
                            * of another type (--http is mode: http) */
    const char *flag_value; /* with flag, for a key that is not a bool: the
                            * value the switch sets (text, as in YAML) */
    unsigned where;        /* SD_KEY_FLAG | SD_KEY_YAML */
    enum sd_key_scope scope;
    enum sd_key_type type;
    uint32_t min, max;     /* SD_KT_UINT */
    int flag_sets;         /* SD_KT_BOOL given as a flag: the value it sets */
    int list;              /* a list: may be given several times, and in YAML
                            * as a string or a list of strings */
    int admission;         /* changes who is admitted: part of a session's id
                            * context (sd_config_admission()) */
    int words;             /* a comma-separated list of words in one value; in
                            * YAML also a list of words (joined with commas) */
    uint16_t http_only;    /* non-zero: a setting of HTTP mode only, refused on
                            * a tcp listener; this key's own bit of
                            * sd_listener_conf.http_given */
    unsigned connector;    /* listener keys: SD_KEY_SERVE_ONLY (0, most),
                            * SD_KEY_BOTH_ROLES or SD_KEY_CONNECT_ONLY */
    size_t offset;         /* where the value is stored, when set is NULL */
    sd_config_setter set;  /* or the function that stores it */
    const char *def;       /* default as written in a config, or NULL: none,
                            * required, or computed (then said in help) */
    const char *metavar;   /* the flag's value in --help; NULL: no value */
    enum sd_key_group group;
    const char *help;      /* one sentence for --help (wrapped when printed) */
    const char *help_connect; /* SD_KEY_BOTH_ROLES keys whose meaning turns
                            * around on a connector (--cert is our client
                            * certificate there): `connect --help`'s text;
                            * NULL: help reads right for both */
};

/* The table, in --help order, and its length. */
extern const struct sd_config_key sd_config_keys[];
extern const size_t sd_config_nkeys;

/* The key written `name` in the YAML file at the given scope, or NULL. */
const struct sd_config_key *sd_config_key_yaml(const char *name, enum sd_key_scope scope);

/* Is listener key k a key of a listener (connector 0) or of a connector
 * (connector 1)? Process keys belong to both. */
int sd_config_key_for(const struct sd_config_key *k, int connector);

/* The key name nearest to a misspelt word (edit distance at most a third
 * of its length, 3 at most), for "did you mean": among the keys written
 * `where` (SD_KEY_FLAG: flag spellings, SD_KEY_YAML: YAML names), of scope
 * (enum sd_key_scope, or -1: any) and, for listener keys, role (0 a
 * listener's, 1 a connector's, -1 any). A word is compared with both
 * spellings of each key (`--mode` finds `--http`, `http:` finds `mode`);
 * the answer is in the spelling asked for. NULL when none is close. */
const char *sd_config_key_nearest(const char *word, unsigned where, int scope, int role);
/* The key whose flag is `--flag`, or NULL. */
const struct sd_config_key *sd_config_key_flag(const char *flag);

/* The spelling of k on the command line ("no-watch" for watch). */
const char *sd_config_key_flag_name(const struct sd_config_key *k);

/* Parses text by k's type and stores it into l (listener keys) or cfg
 * (process keys) with k's setter. `what` names the setting in messages
 * ("idle-timeout" from YAML, "--idle-timeout" from a flag). Returns 0, or
 * -1 with err. Does not handle SD_KT_SPECIAL keys (an error). */
int sd_config_key_apply(const struct sd_config_key *k, struct sd_config *cfg,
                        struct sd_listener_conf *l, const char *text, const char *what,
                        struct sd_err *err);

#endif
