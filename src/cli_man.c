/* cli_man.c - steeldoor(1), written by the hidden `steeldoor help-man`
 * from the texts --help prints (sd/cli.h) and the table of keys, so the
 * manual and --help cannot drift apart. The Makefile runs it to build
 * $(BUILD)/steeldoor.1.
 *
 * The --help texts are plain text laid out for a terminal; this file reads
 * that layout back: a block's first lines up to a blank one are the usage
 * (synopsis), unindented lines are prose (joined; roff refills them), lines
 * indented by two spaces are a list of TERM  description items (deeper
 * lines continue the description), anything indented further is shown as
 * it is (an example). Every byte of text goes through sd_man_put(), which
 * escapes what roff would otherwise read as markup. */
#include "sd/cli.h"

#include <stdio.h>
#include <string.h>

#include "sd/config_keys.h"

/* Length of "Usage: " and "usage: ", and the indent of a usage line that
 * continues or repeats the first one. */
#define SD_MAN_USAGE_PREFIX 7
/* Filled text is broken before a word that would end past this column:
 * mandoc -T lint asks for input lines of at most 80 bytes, and a word
 * may still gain a "." or a font escape after it. */
#define SD_MAN_WRAP 76

struct sd_man {
    FILE *out;
    int bol;    /* at the start of an output line */
    int fresh;  /* right after .SH/.SS/.TP: no paragraph macro needed */
    int nofill; /* in .nf: lines are kept as they are */
    int space;  /* filled text: a space is due before the next word */
    size_t col; /* bytes on the current output line */
};

static int sd_man_boundary(char c)
{
    return c == ' ' || c == '(' || c == '[' || c == '|' || c == '"' || c == '\'' || c == '=';
}

/* Writes s (n bytes) as it is, keeping count of the column. */
static void sd_man_emit(struct sd_man *m, const char *s, size_t n)
{
    size_t i;

    fwrite(s, 1, n, m->out);
    for (i = 0; i < n; i++)
        m->col = s[i] == '\n' ? 0 : m->col + 1;
    if (n > 0)
        m->bol = s[n - 1] == '\n';
}

/* At most how many bytes the word at s (up to a space) takes once escaped. */
static size_t sd_man_word_width(const char *s, size_t n)
{
    size_t i, w = 2; /* a leading \& */

    for (i = 0; i < n && s[i] != ' ' && s[i] != '\n'; i++)
        w += s[i] == '"' ? 4 : s[i] == '-' || s[i] == '\\' ? 2 : 1;
    return w;
}

/* The space due before a word of the given width: a line break instead
 * when the word would end past SD_MAN_WRAP (roff fills the lines again,
 * so where the source breaks them does not show). */
static void sd_man_space(struct sd_man *m, size_t width)
{
    if (!m->space)
        return;
    m->space = 0;
    if (m->bol)
        return;
    if (m->col + 1 + width > SD_MAN_WRAP)
        sd_man_emit(m, "\n", 1);
    else
        sd_man_emit(m, " ", 1);
}

/* Writes n bytes of s as roff text. A backslash becomes \e; a '-' in a
 * word that starts with '-' (an option) becomes \- so that it prints and
 * copies as the minus a shell needs; in a macro argument (arg) a '"'
 * becomes \(dq; at the start of a line a '.' or '\'' would start a
 * request, so \& goes before it. In filled text spaces and newlines only
 * separate words (sd_man_space() places the breaks). */
static void sd_man_put(struct sd_man *m, const char *s, size_t n, int arg)
{
    int opt = 0, fill = !arg && !m->nofill;
    char prev = ' ';
    size_t i;

    for (i = 0; i < n; i++) {
        char c = s[i];

        if (fill && (c == ' ' || c == '\n')) {
            m->space = 1;
            prev = ' ';
            opt = 0;
            continue;
        }
        if (fill && sd_man_boundary(prev))
            sd_man_space(m, sd_man_word_width(s + i, n - i));
        if (m->bol && (c == '.' || c == '\''))
            sd_man_emit(m, "\\&", 2);
        if (c == '-' && (opt || sd_man_boundary(prev) || prev == '\n'))
            opt = 1;
        else if (c == ' ' || c == '\n')
            opt = 0;
        if (c == '\\')
            sd_man_emit(m, "\\e", 2);
        else if (c == '-' && opt)
            sd_man_emit(m, "\\-", 2);
        else if (c == '"' && arg)
            sd_man_emit(m, "\\(dq", 4);
        else
            sd_man_emit(m, &c, 1);
        prev = c;
    }
}

static void sd_man_puts(struct sd_man *m, const char *s)
{
    sd_man_put(m, s, strlen(s), 0);
}

/* Requests this file writes itself (".TP\n", ".RS 4\n.nf\n"), each on a
 * line of its own; .nf and .fi switch sd_man_put() between filling and
 * keeping lines. */
static void sd_man_raw(struct sd_man *m, const char *s)
{
    m->space = 0;
    if (!m->bol)
        sd_man_emit(m, "\n", 1);
    sd_man_emit(m, s, strlen(s));
    if (strcmp(s, ".nf\n") == 0 || strstr(s, "\n.nf\n") != NULL)
        m->nofill = 1;
    else if (strncmp(s, ".fi\n", 4) == 0)
        m->nofill = 0;
}

/* Ends the current output line (a pending space goes). */
static void sd_man_newline(struct sd_man *m)
{
    m->space = 0;
    if (!m->bol)
        sd_man_emit(m, "\n", 1);
}

/* A macro with one escaped argument (".SH", ".SS"). */
static void sd_man_macro(struct sd_man *m, const char *macro, const char *arg, size_t n)
{
    sd_man_raw(m, macro);
    sd_man_emit(m, " ", 1);
    sd_man_put(m, arg, n, 1);
    sd_man_newline(m);
    m->fresh = 1;
}

/* A new paragraph, unless a heading or a tag just started one (mandoc
 * warns about a .PP that does nothing). */
static void sd_man_para(struct sd_man *m)
{
    sd_man_newline(m);
    if (!m->fresh)
        sd_man_raw(m, ".PP\n");
    m->fresh = 0;
}

/* A word (or words) in a font: the escapes travel with it, so a line
 * break never separates them from it. */
static void sd_man_font(struct sd_man *m, const char *font, const char *s, size_t n)
{
    sd_man_space(m, sd_man_word_width(s, n) + 6);
    sd_man_emit(m, font, 3);
    sd_man_put(m, s, n, 0);
    sd_man_emit(m, "\\fR", 3);
}

static void sd_man_bold(struct sd_man *m, const char *s, size_t n)
{
    sd_man_font(m, "\\fB", s, n);
}

static void sd_man_italic(struct sd_man *m, const char *s, size_t n)
{
    sd_man_font(m, "\\fI", s, n);
}

/* ---------------------------------------------------------- lines of a text */

struct sd_man_line {
    const char *s;
    size_t n;      /* without the newline */
    size_t indent; /* leading spaces */
};

/* The line of text at *p (advanced past it); 0 at the end of the text. */
static int sd_man_next_line(const char **p, struct sd_man_line *l)
{
    const char *s = *p, *nl;

    if (*s == '\0')
        return 0;
    nl = strchr(s, '\n');
    l->s = s;
    l->n = nl != NULL ? (size_t)(nl - s) : strlen(s);
    l->indent = strspn(s, " ");
    if (l->indent > l->n)
        l->indent = l->n;
    while (l->n > 0 && l->s[l->n - 1] == ' ') /* no trailing blanks in roff */
        l->n--;
    *p = nl != NULL ? nl + 1 : s + l->n;
    return 1;
}

static int sd_man_blank(const struct sd_man_line *l)
{
    return l->indent >= l->n;
}

/* Is the word at s (up to a space) a metavariable: upper case, no lower
 * case letter (DIR, NAME[:GROUP], HOST:PORT)? */
static int sd_man_metavar(const char *s, size_t n)
{
    int upper = 0;
    size_t i;

    for (i = 0; i < n && s[i] != ' '; i++) {
        if (s[i] >= 'a' && s[i] <= 'z')
            return 0;
        upper |= s[i] >= 'A' && s[i] <= 'Z';
    }
    return upper && s[0] != '-';
}

/* An item's term ("--dir DIR", "-h, --help", "init", "NOTIFY_SOCKET"):
 * the metavariables after its first word (DIR, NAME[:GROUP]) in italics,
 * every other word in bold. */
static void sd_man_term(struct sd_man *m, const char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        size_t w = i, end;

        while (w < n && s[w] != ' ')
            w++;
        end = w;
        if (end > i && s[end - 1] == ',') /* "-h," : the comma is not bold */
            end--;
        if (i > 0 && sd_man_metavar(s + i, end - i))
            sd_man_italic(m, s + i, end - i);
        else
            sd_man_bold(m, s + i, end - i);
        sd_man_put(m, s + end, w - end, 0);
        m->space = w < n;
        i = w + 1;
    }
}

/* Usage lines (the first block of a --help text) as a no-fill block, with
 * "Usage: " taken off and the lines under it moved left as much, and the
 * command words ("steeldoor pki issue") in bold. Returns the rest of the
 * text, after the blank line. */
static const char *sd_man_usage(struct sd_man *m, const char *text)
{
    const char *p = text;
    struct sd_man_line l;

    sd_man_para(m);
    sd_man_raw(m, ".nf\n");
    while (sd_man_next_line(&p, &l) && !sd_man_blank(&l)) {
        const char *s = l.s;
        size_t n = l.n, w;

        if (n >= SD_MAN_USAGE_PREFIX && (strncmp(s, "Usage: ", SD_MAN_USAGE_PREFIX) == 0 ||
                                          strncmp(s, "usage: ", SD_MAN_USAGE_PREFIX) == 0 ||
                                          l.indent >= SD_MAN_USAGE_PREFIX)) {
            s += SD_MAN_USAGE_PREFIX;
            n -= SD_MAN_USAGE_PREFIX;
        }
        if (n > 10 && strncmp(s, "steeldoor ", 10) == 0) {
            /* "steeldoor" and the lower-case command words after it */
            for (w = 9; w < n && s[w] == ' ';) {
                size_t e = w + 1;
                while (e < n && s[e] >= 'a' && s[e] <= 'z')
                    e++;
                if (e == w + 1 || (e < n && s[e] != ' '))
                    break;
                w = e;
            }
            sd_man_bold(m, s, w);
            s += w;
            n -= w;
        }
        sd_man_put(m, s, n, 0);
        sd_man_newline(m);
    }
    sd_man_raw(m, ".fi\n");
    return p;
}

/* The text after the usage: prose, lists and examples (see the top). */
static void sd_man_body(struct sd_man *m, const char *text)
{
    const char *p = text;
    struct sd_man_line l;
    int have = sd_man_next_line(&p, &l);
    int in_prose = 0;

    while (have) {
        if (sd_man_blank(&l)) {
            in_prose = 0;
            have = sd_man_next_line(&p, &l);
        } else if (l.indent == 0) {
            if (!in_prose)
                sd_man_para(m);
            in_prose = 1;
            sd_man_put(m, l.s, l.n, 0);
            m->space = 1; /* the lines of a paragraph are refilled */
            have = sd_man_next_line(&p, &l);
        } else if (l.indent == 2) {
            /* TERM  description: the term ends at two spaces, or where
             * the column was too narrow for them ("--version print the
             * version", "--serial HEX one certificate") after its first
             * word and the metavariables that follow it. */
            const char *t = l.s + 2, *d = strstr(t, "  ");
            size_t tn = l.n - 2, sep;

            if (d != NULL && (size_t)(d - t) < tn) {
                sep = (size_t)(d - t);
            } else {
                sep = strcspn(t, " ");
                while (sep < tn && sd_man_metavar(t + sep + 1, tn - sep - 1))
                    sep += 1 + strcspn(t + sep + 1, " ");
                if (sep > tn)
                    sep = tn;
            }
            sd_man_raw(m, ".TP\n");
            sd_man_term(m, t, sep);
            sd_man_newline(m);
            if (sep < tn) {
                size_t sp = strspn(t + sep, " ");
                sd_man_put(m, t + sep + sp, tn - sep - sp, 0);
                m->space = 1;
            }
            m->fresh = 0;
            in_prose = 0;
            while ((have = sd_man_next_line(&p, &l)) && !sd_man_blank(&l) && l.indent > 2) {
                sd_man_put(m, l.s + l.indent, l.n - l.indent, 0);
                m->space = 1;
            }
            sd_man_newline(m);
        } else {
            /* An example: as it is, indented. */
            size_t base = l.indent;

            sd_man_para(m);
            sd_man_raw(m, ".RS 4\n.nf\n");
            do {
                size_t cut = l.indent < base ? l.indent : base;
                sd_man_put(m, l.s + cut, l.n - cut, 0);
                sd_man_newline(m);
            } while ((have = sd_man_next_line(&p, &l)) && !sd_man_blank(&l) && l.indent > 2);
            sd_man_raw(m, ".fi\n.RE\n");
            in_prose = 0;
        }
    }
}

/* A --help text: its usage, then the rest. */
static void sd_man_help_text(struct sd_man *m, const char *text)
{
    sd_man_body(m, sd_man_usage(m, text));
}

/* The usage lines of a text only (for SYNOPSIS). */
static void sd_man_synopsis_of(struct sd_man *m, const char *text)
{
    (void)sd_man_usage(m, text);
}

/* ------------------------------------------------------------- the options */

/* A group title of --help as a subsection heading: on one line, without
 * its final ':'. */
static void sd_man_group_title(struct sd_man *m, const char *title)
{
    char buf[256];
    size_t n = strlen(title), i;

    if (n >= sizeof(buf))
        n = sizeof(buf) - 1;
    memcpy(buf, title, n);
    buf[n] = '\0';
    for (i = 0; i < n; i++)
        if (buf[i] == '\n')
            buf[i] = ' ';
    if (n > 0 && buf[n - 1] == ':')
        buf[--n] = '\0';
    sd_man_macro(m, ".SS", buf, n);
}

/* One key: its flag and metavariable (or its YAML name), its help, and
 * what --help leaves to the reader: where it may be written, its default,
 * whether it repeats, what it means for `connect`. */
static void sd_man_key(struct sd_man *m, const struct sd_config_key *k)
{
    int flag = (k->where & SD_KEY_FLAG) != 0, yaml = (k->where & SD_KEY_YAML) != 0;
    size_t hn = strlen(k->help);
    char name[80];
    int n;

    sd_man_raw(m, ".TP\n");
    if (flag) {
        n = snprintf(name, sizeof(name), "%s--%s", strcmp(k->name, "help") == 0 ? "-h, " : "",
                     sd_config_key_flag_name(k));
        if (n > 0 && (size_t)n < sizeof(name))
            sd_man_term(m, name, (size_t)n);
        if (k->metavar != NULL) {
            m->space = 1;
            sd_man_italic(m, k->metavar, strlen(k->metavar));
        }
    } else {
        n = snprintf(name, sizeof(name), "%s:", k->name);
        if (n > 0 && (size_t)n < sizeof(name))
            sd_man_bold(m, name, (size_t)n);
    }
    sd_man_newline(m);
    sd_man_puts(m, k->help);
    sd_man_puts(m, hn > 0 && k->help[hn - 1] == '.' ? " " : ". ");
    if (flag && yaml && k->metavar == NULL) {
        /* A switch: what it writes in the file (--no-watch is watch: false). */
        const char *v = k->flag_value != NULL ? k->flag_value : k->flag_sets ? "true" : "false";
        n = snprintf(name, sizeof(name), "%s: %s", k->name, v);
        sd_man_puts(m, "In the configuration file: ");
        if (n > 0 && (size_t)n < sizeof(name))
            sd_man_bold(m, name, (size_t)n);
        if (k->def != NULL) {
            sd_man_puts(m, " (default ");
            sd_man_bold(m, k->def, strlen(k->def));
            sd_man_puts(m, ")");
        }
        sd_man_puts(m, ". ");
    } else if (k->def != NULL) {
        sd_man_puts(m, "Default: ");
        sd_man_bold(m, k->def, strlen(k->def));
        sd_man_puts(m, ". ");
    }
    if (k->list)
        sd_man_puts(m, "May be given more than once. ");
    if (!yaml)
        sd_man_puts(m, "On the command line only. ");
    else if (!flag)
        sd_man_puts(m, "In the configuration file only. ");
    if (k->scope == SD_SCOPE_LISTENER && k->connector == SD_KEY_CONNECT_ONLY) {
        sd_man_puts(m, "For ");
        sd_man_bold(m, "steeldoor connect", 17);
        sd_man_puts(m, " and ");
        sd_man_bold(m, "connectors:", 11);
        sd_man_puts(m, " only.");
    } else if (k->scope == SD_SCOPE_LISTENER && k->connector == SD_KEY_BOTH_ROLES) {
        sd_man_puts(m, "Also for ");
        sd_man_bold(m, "steeldoor connect", 17);
        if (k->help_connect != NULL) {
            sd_man_puts(m, ": ");
            sd_man_puts(m, k->help_connect);
        }
        sd_man_puts(m, ".");
    }
    sd_man_newline(m);
    m->fresh = 0;
}

static void sd_man_options(struct sd_man *m)
{
    int g;
    size_t i;

    sd_man_macro(m, ".SH", "OPTIONS", 7);
    sd_man_para(m);
    sd_man_puts(m, "The options of steeldoor serve, in the groups of steeldoor serve --help. "
                   "Each is also a key of the configuration file given with --config, written "
                   "without the dashes (--idle-timeout 5m is idle-timeout: 5m), unless it "
                   "says otherwise. The options of steeldoor connect are the listener "
                   "options marked for it, and the process options.\n");
    for (g = 0; g < SD_GROUP_COUNT_; g++) {
        int titled = 0;
        for (i = 0; i < sd_config_nkeys; i++) {
            const struct sd_config_key *k = &sd_config_keys[i];

            if ((int)k->group != g)
                continue;
            if (!titled++)
                sd_man_group_title(m, sd_serve_groups[g]);
            sd_man_key(m, k);
        }
    }
    sd_man_para(m);
    sd_man_puts(m, sd_serve_usage_foot);
}

/* ------------------------------------------------------- the other sections */

static const char sd_man_admin[] =
    "With --admin ADDR (or admin: in the configuration file) steeldoor answers\n"
    "/metrics (Prometheus text format), /healthz, /readyz and /status on ADDR: a\n"
    "loopback address or a unix socket in plaintext, any other address only with\n"
    "mutual TLS through the configuration file's admin: mapping. The metrics, the\n"
    "health checks and running steeldoor under systemd are described in\n"
    "docs/operations.md.\n";

static const char sd_man_signals[] =
    "SIGHUP reloads: the configuration file and every file it names are read\n"
    "again and the whole new configuration is checked before it replaces the\n"
    "running one; if anything is wrong, a reload_failed log line says why and the\n"
    "running configuration stays. A change to any of those files reloads too,\n"
    "unless --no-watch is given.\n"
    "\n"
    "SIGTERM and SIGINT stop steeldoor: the listeners close at once, open\n"
    "connections may finish for up to --drain-timeout (30s by default), workers\n"
    "still running 5 seconds after that are killed, and steeldoor exits 0.\n";

static const char sd_man_environment[] =
    "  NOTIFY_SOCKET  set by systemd for a Type=notify service: the master sends\n"
    "                 READY=1 once its workers are started, RELOADING=1 and\n"
    "                 then READY=1 around each reload, STOPPING=1 at shutdown.\n"
    "                 Workers never send.\n"
    "  COLUMNS        the width steeldoor audit fits its table to (else the\n"
    "                 terminal's, else 80; 60 to 200).\n";

static const char sd_man_exit[] =
    "steeldoor serve and steeldoor connect exit 0 after a shutdown by SIGTERM or\n"
    "SIGINT (and after --help, and a --check that passed), 1 when they cannot\n"
    "start (a file that cannot be read, a key that is not its certificate's, an\n"
    "address that cannot be bound, a listener without its target or CA; a --check\n"
    "that failed), 2 on a usage error (an unknown flag, a configuration file that\n"
    "does not parse, a bad value). A\n"
    "start-up error is one sentence on a terminal, otherwise a JSON log line\n"
    "(event start_failed). steeldoor pki and steeldoor apikey: 0 ok, 1\n"
    "failure, 2 usage error. steeldoor audit: 0 no open door, 1 a door was found,\n"
    "2 the audit could not run.\n";

static const char sd_man_files[] =
    "  /etc/steeldoor/steeldoor.yaml\n"
    "      the configuration the systemd unit runs steeldoor serve with\n"
    "  PREFIX/lib/systemd/system/steeldoor.service\n"
    "      the systemd unit\n"
    "  PREFIX/lib/sysusers.d/steeldoor.conf\n"
    "      the account the unit runs steeldoor as, for systemd-sysusers\n"
    "  PREFIX/share/doc/steeldoor/steeldoor.yaml\n"
    "      an example configuration\n"
    "  /run/steeldoor/\n"
    "      the unit's runtime directory, for a unix admin socket\n";

static const char sd_man_see_also[] =
    "systemd.service(5), systemd.exec(5), openssl(1); README.md and docs/ in the\n"
    "source: config.md (every key), operations.md (admin, metrics, systemd),\n"
    "http.md, auth.md, audit.md.\n";

int sd_cli_man(FILE *out, const char *main_usage)
{
    static const char *const pki[] = { sd_pki_usage_init, sd_pki_usage_issue,
                                       sd_pki_usage_revoke, sd_pki_usage_crl };
    static const char *const apikey[] = { sd_ak_usage_new, sd_ak_usage_list,
                                          sd_ak_usage_revoke };
    static const char *const pki_names[] = { "pki init", "pki issue", "pki revoke", "pki crl" };
    static const char *const apikey_names[] = { "apikey new", "apikey list", "apikey revoke" };
    struct sd_man m = { .out = out, .bol = 1 };
    size_t i;

    sd_man_raw(&m, ".\\\" steeldoor(1), written by `steeldoor help-man` from the texts of\n"
                   ".\\\" --help and the table of keys (src/config_keys.c): edit those.\n");
    sd_man_raw(&m, ".TH STEELDOOR 1 " SD_RELEASE_DATE " \"steeldoor " SD_VERSION
                   "\" \"User Commands\"\n");
    sd_man_macro(&m, ".SH", "NAME", 4);
    sd_man_puts(&m, "steeldoor - a mutual-TLS gateway\n");

    sd_man_macro(&m, ".SH", "SYNOPSIS", 8);
    sd_man_synopsis_of(&m, main_usage);
    sd_man_synopsis_of(&m, sd_serve_usage_head);
    sd_man_synopsis_of(&m, sd_connect_usage_head);
    for (i = 0; i < sizeof(pki) / sizeof(pki[0]); i++)
        sd_man_synopsis_of(&m, pki[i]);
    sd_man_synopsis_of(&m, sd_audit_usage);
    for (i = 0; i < sizeof(apikey) / sizeof(apikey[0]); i++)
        sd_man_synopsis_of(&m, apikey[i]);

    sd_man_macro(&m, ".SH", "DESCRIPTION", 11);
    sd_man_body(&m, strstr(main_usage, "\n\n") != NULL ? strstr(main_usage, "\n\n") + 2 : "");

    sd_man_macro(&m, ".SH", "COMMANDS", 8);
    sd_man_macro(&m, ".SS", "serve", 5);
    sd_man_help_text(&m, sd_serve_usage_head);
    sd_man_para(&m);
    sd_man_puts(&m, "Its options are under OPTIONS.\n");
    sd_man_macro(&m, ".SS", "connect", 7);
    sd_man_help_text(&m, sd_connect_usage_head);
    sd_man_macro(&m, ".SS", "pki", 3);
    sd_man_help_text(&m, sd_pki_usage_main);
    for (i = 0; i < sizeof(pki) / sizeof(pki[0]); i++) {
        sd_man_macro(&m, ".SS", pki_names[i], strlen(pki_names[i]));
        sd_man_help_text(&m, pki[i]);
    }
    sd_man_macro(&m, ".SS", "audit", 5);
    sd_man_help_text(&m, sd_audit_usage);
    sd_man_macro(&m, ".SS", "apikey", 6);
    sd_man_help_text(&m, sd_ak_usage_main);
    for (i = 0; i < sizeof(apikey) / sizeof(apikey[0]); i++) {
        sd_man_macro(&m, ".SS", apikey_names[i], strlen(apikey_names[i]));
        sd_man_help_text(&m, apikey[i]);
    }

    sd_man_options(&m);
    sd_man_macro(&m, ".SH", "ADMIN AND METRICS", 17);
    sd_man_body(&m, sd_man_admin);
    sd_man_macro(&m, ".SH", "SIGNALS", 7);
    sd_man_body(&m, sd_man_signals);
    sd_man_macro(&m, ".SH", "ENVIRONMENT", 11);
    sd_man_body(&m, sd_man_environment);
    sd_man_macro(&m, ".SH", "EXIT STATUS", 11);
    sd_man_body(&m, sd_man_exit);
    sd_man_macro(&m, ".SH", "FILES", 5);
    sd_man_body(&m, sd_man_files);
    sd_man_macro(&m, ".SH", "SEE ALSO", 8);
    sd_man_body(&m, sd_man_see_also);
    sd_man_newline(&m);
    return fflush(out) != 0 || ferror(out) ? -1 : 0;
}
