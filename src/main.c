/* main.c - `steeldoor` entry point: dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "sd/apikey_cli.h"
#include "sd/audit.h"
#include "sd/cli.h"
#include "sd/tls.h"
#include "sd/pki.h"
#include "sd/privs.h"

static const char sd_usage[] =
    "Usage: steeldoor COMMAND [options]\n"
    "\n"
    "A mutual-TLS gateway: every client must present a valid certificate at the\n"
    "TLS handshake, on every listener, always.\n"
    "\n"
    "Commands:\n"
    "  serve     run the gateway (steeldoor serve --help)\n"
    "  connect   client mode: plaintext on loopback to mutual TLS to a server\n"
    "            (steeldoor connect --help)\n"
    "  pki       a small development PKI (steeldoor pki --help)\n"
    "  audit     probe any TLS endpoint for ways in without a valid client\n"
    "            certificate (steeldoor audit --help)\n"
    "  apikey    API keys bound to client identities (steeldoor apikey --help)\n"
    "\n"
    "  --version print the version\n"
    "  --help    this text\n";

int main(int argc, char **argv)
{
    struct sd_err err;

    /* Before any command reads a key (the server's, a CA's, a client's):
     * no core file and no ptrace by the same user may ever hold one. */
    if (sd_privs_no_core(&err) != 0) {
        fprintf(stderr, "steeldoor: %s\n", err.msg);
        return 1;
    }
    if (argc < 2) {
        fputs(sd_usage, stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        /* The library it runs with (a distribution update changes it
         * under the same binary), not the one it was built against. */
        printf("steeldoor %s (%s)\n", SD_VERSION, sd_tls_openssl_version());
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(sd_usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "help-man") == 0) /* hidden: the Makefile builds steeldoor.1 */
        return sd_cli_man(stdout, sd_usage) == 0 ? 0 : 1;
    if (strcmp(argv[1], "serve") == 0)
        return sd_cli_serve_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "connect") == 0)
        return sd_cli_connect_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "pki") == 0)
        return sd_pki_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "audit") == 0)
        return sd_audit_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "apikey") == 0)
        return sd_apikey_main(argc - 1, argv + 1);
    fprintf(stderr, "steeldoor: unknown command '%s'\n\n%s", argv[1], sd_usage);
    return 2;
}
