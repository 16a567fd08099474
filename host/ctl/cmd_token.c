/*
 * cmd_token.c — `evbusctl token create|hash`: makes admin API tokens.
 *
 * A token is 256 bits from getrandom(2), written "evb_" + base64url (no
 * padding), 47 characters.  evbusd only ever holds its SHA-256
 * (admin.tokens[].hash, compared in constant time), so the token is shown
 * once, here, and never written anywhere else: not to a file, not to
 * stderr.  The command needs no configuration and no server: tokens are
 * made on any machine and their YAML line pasted into conf.d.
 *
 * libcrypto is opened here, when a hash is needed, rather than linked:
 * linked, its loading cost every evbusctl command ~3 ms at start (5.8 ->
 * 9.1 ms for `evbusctl --version`), for the one command that uses it (the
 * same reason as store/pq_lazy.c).
 */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "ctl/ctl.h"

#define TOKEN_BYTES 32
#define TOKEN_PREFIX "evb_"
/* "evb_" + 43 base64url characters + NUL */
#define TOKEN_LEN (sizeof TOKEN_PREFIX - 1 + (TOKEN_BYTES * 4 + 2) / 3 + 1)
/* Debian 12's libcrypto3, the one the headers we compile against are of */
#define CRYPTO_SONAME "libcrypto.so.3"
/* "sha256:" + 64 hex + NUL, as admin.tokens[].hash reads it */
#define HASH_TEXT_LEN (7 + 64 + 1)

static const char *const role_names[] = {"viewer", "operator", "admin", "publisher"};
enum { N_ROLES = 4 };

static void token_usage(FILE *out)
{
    fputs("usage: evbusctl token create --name NAME --role ROLE [--role ROLE...]\n"
          "                             --tenant TENANT|'*' [--json]\n"
          "       evbusctl token hash [--json] < TOKEN\n"
          "\n"
          "  create   make a new random admin API token (256 bits): prints the token\n"
          "           once, then the line to add under admin.tokens in a conf.d file\n"
          "           (evbusd keeps only its SHA-256; `evbusctl reload` applies it)\n"
          "  hash     read a token on stdin, print its \"sha256:...\" hash (to check a\n"
          "           token against the configuration, or to re-hash one)\n"
          "\n"
          "  --name NAME      shown in logs and the audit log: 1 to 64 characters of\n"
          "                   a-z A-Z 0-9 _ - .\n"
          "  --role ROLE      viewer, operator, admin or publisher; repeat it, or separate\n"
          "                   roles with commas; at least one\n"
          "  --tenant TENANT  the one tenant the token may see (same characters as NAME),\n"
          "                   or '*' for every tenant\n"
          "  --json           {name, token, hash, roles, tenant, yaml} (create), {hash}\n"
          "                   (hash)\n"
          "  -h, --help       show this help\n"
          "\n"
          "Exit status: 0 done, 1 no randomness or no libcrypto, 2 usage or input error.\n",
          out);
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

/* s as a YAML flow scalar that reads back as the same string: plain when it
 * cannot be taken for anything else, double-quoted otherwise (the allowed
 * characters need no escapes). */
static void yaml_scalar(FILE *f, const char *s)
{
    static const char *const special[] = {"null", "true", "false", "yes", "no", "on",
                                          "off", "y", "n", NULL};
    bool plain = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z');
    for (size_t i = 0; plain && special[i]; i++)
        plain = strcasecmp(s, special[i]) != 0;
    fprintf(f, plain ? "%s" : "\"%s\"", s);
}

/* SHA-256 of token as "sha256:<hex>" through libcrypto's EVP_Digest.  0, or
 * -1 after printing why libcrypto cannot be used. */
static int hash_text(const char *token, char out[HASH_TEXT_LEN])
{
    void *lib = dlopen(CRYPTO_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        ctl_fail("token", "cannot load %s: %s", CRYPTO_SONAME, dlerror());
        return -1;
    }
    dlerror();
    __typeof__(EVP_Digest) *digest = (__typeof__(EVP_Digest) *)dlsym(lib, "EVP_Digest");
    __typeof__(EVP_sha256) *sha256 = (__typeof__(EVP_sha256) *)dlsym(lib, "EVP_sha256");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!digest || !sha256 || !digest(token, strlen(token), md, &len, sha256(), NULL) ||
        len != 32) {
        ctl_fail("token", "%s: SHA-256 failed", CRYPTO_SONAME);
        dlclose(lib);
        return -1;
    }
    dlclose(lib);
    memcpy(out, "sha256:", 7);
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
    explicit_bzero(md, sizeof md);
    return 0;
}

static int token_new(char out[TOKEN_LEN])
{
    static const char b64url[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[TOKEN_BYTES + 2] = {0};
    size_t got = 0;
    while (got < TOKEN_BYTES) {
        ssize_t n = getrandom(raw + got, TOKEN_BYTES - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    char *p = out + strlen(strcpy(out, TOKEN_PREFIX));
    for (size_t i = 0; i < TOKEN_BYTES; i += 3) {
        unsigned v = (unsigned)raw[i] << 16 | (unsigned)raw[i + 1] << 8 | raw[i + 2];
        size_t chars = TOKEN_BYTES - i >= 3 ? 4 : TOKEN_BYTES - i + 1;
        for (size_t k = 0; k < chars; k++)
            *p++ = b64url[(v >> (18 - 6 * k)) & 63];
    }
    *p = '\0';
    explicit_bzero(raw, sizeof raw);
    return 0;
}

static int add_roles(const char *arg, unsigned *roles)
{
    char *copy = strdup(arg), *save = NULL;
    int rc = copy ? 0 : -1;
    for (char *r = copy ? strtok_r(copy, ",", &save) : NULL; r && rc == 0;
         r = strtok_r(NULL, ",", &save)) {
        int bit = cfg_role_parse(r);
        if (bit < 0)
            rc = ctl_usage_error("token", "--role: unknown role '%s' (valid: viewer, operator, "
                                          "admin, publisher)", r);
        else
            *roles |= (unsigned)bit;
    }
    if (copy && !*copy)
        rc = ctl_usage_error("token", "--role: empty");
    free(copy);
    return rc;
}

static int token_create(int argc, char **argv, bool json)
{
    const char *name = NULL, *tenant = NULL;
    unsigned roles = 0;
    for (int i = 0; i < argc; i++) {
        const char *v;
        int m;
        if ((m = ctl_opt_value(argc, argv, &i, "--name", &v)) != 0) {
            if (m < 0)
                return ctl_usage_error("token", "--name needs a value");
            name = v;
        } else if ((m = ctl_opt_value(argc, argv, &i, "--tenant", &v)) != 0) {
            if (m < 0)
                return ctl_usage_error("token", "--tenant needs a value");
            tenant = v;
        } else if ((m = ctl_opt_value(argc, argv, &i, "--role", &v)) != 0) {
            if (m < 0)
                return ctl_usage_error("token", "--role needs a value");
            if (add_roles(v, &roles) != 0)
                return CTL_USAGE;
        } else {
            return ctl_usage_error("token", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!name)
        return ctl_usage_error("token", "create needs --name");
    if (!name_ok(name))
        return ctl_usage_error("token", "--name: must be 1 to 64 characters of a-z A-Z 0-9 _ - ., "
                                        "got '%s'", name);
    if (!roles)
        return ctl_usage_error("token", "create needs at least one --role (viewer, operator, "
                                        "admin, publisher)");
    if (!tenant)
        return ctl_usage_error("token", "create needs --tenant (a tenant, or '*' for every "
                                        "tenant)");
    if (strcmp(tenant, "*") != 0 && !name_ok(tenant))
        return ctl_usage_error("token", "--tenant: must be '*' or 1 to 64 characters of "
                                        "a-z A-Z 0-9 _ - ., got '%s'", tenant);

    char token[TOKEN_LEN], hash[HASH_TEXT_LEN];
    if (token_new(token) != 0)
        return ctl_fail("token", "getrandom: %s", strerror(errno));
    if (hash_text(token, hash) != 0)
        return CTL_FAIL;

    char *yaml = NULL;
    size_t ylen = 0;
    FILE *y = open_memstream(&yaml, &ylen);
    if (!y)
        return ctl_fail("token", "out of memory");
    fputs("- { name: ", y);
    yaml_scalar(y, name);
    fprintf(y, ", hash: \"%s\", roles: [", hash);
    json_t *jroles = json_array();
    for (int i = 0, n = 0; i < N_ROLES; i++)
        if (roles & (1u << i)) {
            fprintf(y, "%s%s", n++ ? ", " : "", role_names[i]);
            json_array_append_new(jroles, json_string(role_names[i]));
        }
    fputs("], tenant: ", y);
    if (strcmp(tenant, "*") == 0)
        fputs("\"*\"", y);
    else
        yaml_scalar(y, tenant);
    fputs(" }", y);
    fclose(y);

    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s}", "name", name, "token", token,
                              "hash", hash, "roles", jroles, "tenant", tenant, "yaml", yaml);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(o);
    } else {
        json_decref(jroles);
        printf("%s\n%s\n", token, yaml);
        fputs("The token (first line) is shown only now: hand it over safely.  Add the second\n"
              "line under `admin: tokens:` in a conf.d file, then run `evbusctl reload`.\n",
              stderr);
    }
    explicit_bzero(token, sizeof token);
    free(yaml);
    return fflush(stdout) == 0 ? CTL_OK : CTL_FAIL;
}

static int token_hash(int argc, char **argv, bool json)
{
    if (argc > 0)
        return ctl_usage_error("token", "unexpected argument '%s' (hash reads the token on "
                                        "stdin)", argv[0]);
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, stdin);
    buf[n] = '\0';
    if (n == sizeof buf - 1 && fgetc(stdin) != EOF)
        return ctl_usage_error("token", "stdin: a token is one line shorter than %zu bytes",
                               sizeof buf);
    /* a token is one line: the newline `echo` or a file adds is not part of it */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (n == 0 || strchr(buf, '\n'))
        return ctl_usage_error("token", "stdin: expected one token on one line");
    char hash[HASH_TEXT_LEN];
    int rc = hash_text(buf, hash);
    explicit_bzero(buf, sizeof buf);
    if (rc != 0)
        return CTL_FAIL;
    if (json)
        printf("{\"hash\": \"%s\"}\n", hash);
    else
        printf("%s\n", hash);
    return CTL_OK;
}

int cmd_token(int argc, char **argv)
{
    bool json;
    char *rest[64];
    int nrest, rc = ctl_group_args(argc, argv, "token", token_usage, &json, rest, 64, &nrest);
    if (rc >= 0)
        return rc;
    if (nrest == 0)
        return ctl_usage_error("token", "missing subcommand (create or hash)");
    if (strcmp(rest[0], "create") == 0)
        return token_create(nrest - 1, rest + 1, json);
    if (strcmp(rest[0], "hash") == 0)
        return token_hash(nrest - 1, rest + 1, json);
    return ctl_usage_error("token", "unknown subcommand '%s' (create or hash)", rest[0]);
}
