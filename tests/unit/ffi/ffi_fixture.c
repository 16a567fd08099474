/*
 * ffi_fixture — plain C functions for the ffi tests: one taking every
 * parameter type (it records what it received for the test to read back
 * through ffi_fixture_last()), and identity functions for each return type.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define FIXTURE_API __attribute__((visibility("default")))

static char fixture_last[2048];

FIXTURE_API const char *ffi_fixture_last(void);
FIXTURE_API int32_t take_all(const char *s, int64_t a, int32_t b, double d, bool f,
                             const char *json, const void *ev);
FIXTURE_API int64_t ret64(int64_t v);
FIXTURE_API int32_t ret32(int32_t v);
FIXTURE_API bool retbool(bool v);
FIXTURE_API void retvoid(const char *s);

const char *ffi_fixture_last(void) { return fixture_last; }

int32_t take_all(const char *s, int64_t a, int32_t b, double d, bool f, const char *json,
                 const void *ev)
{
    snprintf(fixture_last, sizeof fixture_last, "s=%s a=%" PRId64 " b=%" PRId32
             " d=%.3f f=%d json=%s ev=%p", s, a, b, d, (int)f, json, ev);
    return 0;
}

int64_t ret64(int64_t v) { return v; }

int32_t ret32(int32_t v) { return v; }

bool retbool(bool v) { return v; }

void retvoid(const char *s) { snprintf(fixture_last, sizeof fixture_last, "void %s", s); }
