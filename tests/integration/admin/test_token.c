/*
 * `evbusctl token create|hash` as an operator runs it: the real binary,
 * its stdout, stderr and exit status.  The hash is checked against the
 * SHA-256 this test computes with libcrypto, and the printed YAML line is
 * read back by the configuration loader (config_load), so a line evbusd
 * would refuse, or that names another token, fails here.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "harness.h"

struct run {
    int status;
    char *out, *err;
};

static struct run ctl(const char *input, const char *const *args)
{
    char *bin = harness_build_path("host/ctl/evbusctl"), *argv[32];
    int n = 0;
    argv[n++] = bin;
    for (size_t i = 0; args[i]; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    /* no configuration at all: the command needs none */
    char *envp[] = {"EVBUS_CONF_DIR=/nonexistent", NULL};
    struct run r = {0};
    r.status = harness_run(argv, envp, input, &r.out, &r.err, 10000);
    if (!r.out)
        r.out = strdup("");
    if (!r.err)
        r.err = strdup("");
    free(bin);
    return r;
}
#define CTL(input, ...) ctl(input, (const char *const[]){__VA_ARGS__, NULL})

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

static void sha256_text(const char *s, char out[72])
{
    unsigned char md[32];
    unsigned len = 0;
    cr_assert(EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL));
    strcpy(out, "sha256:");
    for (int i = 0; i < 32; i++)
        sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

/* stdout's two lines: the token and the YAML line (malloc'd). */
static void two_lines(const char *out, char **token, char **yaml)
{
    const char *nl = strchr(out, '\n');
    cr_assert_not_null(nl, "stdout: %s", out);
    *token = strndup(out, (size_t)(nl - out));
    const char *nl2 = strchr(nl + 1, '\n');
    cr_assert_not_null(nl2, "stdout: %s", out);
    cr_assert_eq(nl2[1], '\0', "more than two lines: %s", out);
    *yaml = strndup(nl + 1, (size_t)(nl2 - nl - 1));
}

TestSuite(token, .timeout = 60);

Test(token, create_prints_a_token_and_the_line_with_its_sha256)
{
    struct run r = CTL(NULL, "token", "create", "--name", "oncall", "--role", "operator",
                       "--tenant", "*");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    char *token, *yaml, want[72];
    two_lines(r.out, &token, &yaml);
    /* "evb_" + 43 base64url characters: 256 bits */
    cr_expect_eq(strlen(token), 47u, "token '%s'", token);
    cr_expect(strncmp(token, "evb_", 4) == 0);
    cr_expect_eq(strspn(token + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-_"), 43u);
    sha256_text(token, want);
    char line[256];
    snprintf(line, sizeof line, "- { name: oncall, hash: \"%s\", roles: [operator], "
                                "tenant: \"*\" }", want);
    cr_expect_str_eq(yaml, line);
    /* the token is on stdout only: stderr tells what to do with it */
    cr_expect_null(strstr(r.err, token));
    cr_expect_not_null(strstr(r.err, "evbusctl reload"));
    free(token);
    free(yaml);
    run_free(&r);
}

Test(token, two_runs_give_different_tokens)
{
    struct run a = CTL(NULL, "token", "create", "--name", "x", "--role", "viewer", "--tenant",
                       "acme");
    struct run b = CTL(NULL, "token", "create", "--name", "x", "--role", "viewer", "--tenant",
                       "acme");
    cr_assert_eq(a.status, 0);
    cr_assert_eq(b.status, 0);
    cr_expect_str_neq(a.out, b.out);
    run_free(&a);
    run_free(&b);
}

Test(token, json_has_every_field_and_the_same_hash)
{
    struct run r = CTL(NULL, "token", "create", "--json", "--name", "acme-view", "--role",
                       "publisher,viewer", "--role", "viewer", "--tenant", "acme");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    json_t *o = json_loads(r.out, 0, NULL);
    cr_assert_not_null(o, "stdout: %s", r.out);
    const char *token = json_string_value(json_object_get(o, "token"));
    cr_assert_not_null(token);
    char want[72];
    sha256_text(token, want);
    cr_expect_str_eq(json_string_value(json_object_get(o, "hash")), want);
    cr_expect_str_eq(json_string_value(json_object_get(o, "name")), "acme-view");
    cr_expect_str_eq(json_string_value(json_object_get(o, "tenant")), "acme");
    json_t *roles = json_object_get(o, "roles");
    cr_assert_eq(json_array_size(roles), 2u, "roles are listed once each");
    cr_expect_str_eq(json_string_value(json_array_get(roles, 0)), "viewer");
    cr_expect_str_eq(json_string_value(json_array_get(roles, 1)), "publisher");
    cr_expect_not_null(strstr(json_string_value(json_object_get(o, "yaml")), want));
    json_decref(o);
    run_free(&r);
}

/* What evbusd reads from the line is what was asked for, even for names a
 * YAML reader would take for a null, a boolean or a number. */
Test(token, the_line_loads_as_the_same_token)
{
    struct run r = CTL(NULL, "token", "create", "--name", "null", "--role", "admin", "--role",
                       "operator", "--tenant", "123");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    char *token, *yaml;
    two_lines(r.out, &token, &yaml);
    char *dir = harness_tmpdir("token");
    char conf[1024];
    snprintf(conf, sizeof conf, "admin:\n  tokens:\n    %s\n", yaml);
    cr_assert_eq(harness_write_file(dir, "50-tokens.yaml", conf), 0);
    cfg_errors_t errs = {0};
    evbus_config_t *cfg = config_load(dir, &errs);
    cr_assert_not_null(cfg, "%s", errs.count ? errs.msgs[0] : "?");
    cr_assert_eq(cfg->n_tokens, 1u);
    cr_expect_str_eq(cfg->tokens[0].name, "null");
    cr_expect_str_eq(cfg->tokens[0].tenant, "123");
    cr_expect_eq(cfg->tokens[0].roles, (unsigned)(CFG_ROLE_ADMIN | CFG_ROLE_OPERATOR));
    unsigned char md[32];
    unsigned len = 0;
    cr_assert(EVP_Digest(token, strlen(token), md, &len, EVP_sha256(), NULL));
    cr_expect_eq(memcmp(cfg->tokens[0].hash, md, 32), 0);
    config_free(cfg);
    cfg_errors_free(&errs);
    harness_rmrf(dir);
    free(dir);
    free(token);
    free(yaml);
    run_free(&r);
}

Test(token, bad_input_exits_2_with_a_message)
{
    static const struct {
        const char *args[10];
        const char *says;
    } cases[] = {
        {{"token", "create", "--name", "x", "--role", "boss", "--tenant", "*"},
         "unknown role 'boss'"},
        {{"token", "create", "--name", "x", "--tenant", "*"}, "at least one --role"},
        {{"token", "create", "--name", "a b", "--role", "viewer", "--tenant", "*"}, "--name:"},
        {{"token", "create", "--name",
          "a1234567890123456789012345678901234567890123456789012345678901234", "--role",
          "viewer", "--tenant", "*"}, "--name:"},
        {{"token", "create", "--role", "viewer", "--tenant", "*"}, "needs --name"},
        {{"token", "create", "--name", "x", "--role", "viewer"}, "needs --tenant"},
        {{"token", "create", "--name", "x", "--role", "viewer", "--tenant", "a/b"}, "--tenant:"},
        {{"token", "create", "--name", "x", "--role", "viewer", "--tenant", "*", "--bogus"},
         "unexpected argument"},
        {{"token", "mint"}, "unknown subcommand"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct run r = ctl(NULL, cases[i].args);
        cr_expect_eq(r.status, 2, "case %zu: status %d", i, r.status);
        cr_expect_not_null(strstr(r.err, cases[i].says), "case %zu: stderr: %s", i, r.err);
        cr_expect_str_eq(r.out, "", "case %zu printed a token", i);
        run_free(&r);
    }
}

Test(token, hash_reads_a_token_on_stdin)
{
    char want[72];
    sha256_text("evb_example", want);
    struct run r = CTL("evb_example\n", "token", "hash");
    cr_assert_eq(r.status, 0, "stderr: %s", r.err);
    char line[80];
    snprintf(line, sizeof line, "%s\n", want);
    cr_expect_str_eq(r.out, line);
    run_free(&r);
    r = CTL("", "token", "hash");
    cr_expect_eq(r.status, 2);
    run_free(&r);
    r = CTL("two\nlines\n", "token", "hash");
    cr_expect_eq(r.status, 2);
    run_free(&r);
}
