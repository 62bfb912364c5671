/* Unit tests for net.c address parsing, including hostile forms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <cmocka.h>

#include "sd/net.h"

static void test_good(void **state)
{
    struct sd_addr a;
    struct sd_err err;
    char buf[64];

    (void)state;
    assert_int_equal(sd_addr_parse("127.0.0.1:8443", 0, &a, &err), 0);
    assert_int_equal(a.ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&a.ss)->sin_port), 8443);
    sd_addr_format((struct sockaddr *)&a.ss, a.len, buf, sizeof(buf));
    assert_string_equal(buf, "127.0.0.1:8443");

    assert_int_equal(sd_addr_parse("[::1]:9", 0, &a, &err), 0);
    assert_int_equal(a.ss.ss_family, AF_INET6);
    sd_addr_format((struct sockaddr *)&a.ss, a.len, buf, sizeof(buf));
    assert_string_equal(buf, "[::1]:9");

    assert_int_equal(sd_addr_parse("unix:/run/x.sock", 1, &a, &err), 0);
    assert_int_equal(a.ss.ss_family, AF_UNIX);
    assert_string_equal(((struct sockaddr_un *)&a.ss)->sun_path, "/run/x.sock");
    assert_string_equal(a.text, "unix:/run/x.sock");
}

static void test_bad(void **state)
{
    static const char *bad[] = {
        "", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:-1", "127.0.0.1:80x", ":80", "::1:80", "[::1]80", "[::1",
        "unix:", "unix:relative.sock", "no-such-host.invalid:80",
    };
    struct sd_addr a;
    struct sd_err err;
    char longpath[200];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        if (sd_addr_parse(bad[i], 1, &a, &err) != -1)
            fail_msg("'%s' was accepted", bad[i]);
        assert_true(err.msg[0] != '\0');
    }
    /* a unix socket where only TCP makes sense (a listener) */
    assert_int_equal(sd_addr_parse("unix:/run/x.sock", 0, &a, &err), -1);
    /* a path longer than sun_path is refused, not truncated */
    memset(longpath, 'a', sizeof(longpath));
    memcpy(longpath, "unix:/", 6);
    longpath[sizeof(longpath) - 1] = '\0';
    assert_int_equal(sd_addr_parse(longpath, 1, &a, &err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
    };
    return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
