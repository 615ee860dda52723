/* Status codes, the per-thread error message and invariant panics. */
#include "common/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[2048];

zf_status zf_fail(zf_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

zf_status zf_fail_context(zf_status s, const char *fmt, ...)
{
    char prefix[1024], old[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    /* keep as much of both as fits; a cut message is still useful */
    size_t n = strlen(prefix);
    if (n > sizeof last_error - 3) n = sizeof last_error - 3;
    memcpy(last_error, prefix, n);
    memcpy(last_error + n, ": ", 2);
    size_t room = sizeof last_error - n - 3, m = strlen(old);
    if (m > room) m = room;
    memcpy(last_error + n + 2, old, m);
    last_error[n + 2 + m] = '\0';
    return s;
}

const char *zf_last_error(void) { return last_error; }

void zf_clear_error(void) { last_error[0] = '\0'; }

const char *zf_status_name(zf_status s)
{
    switch (s) {
    case ZF_OK: return "ok";
    case ZF_ERR_INPUT: return "bad input";
    case ZF_ERR_IO: return "I/O error";
    case ZF_ERR_NOMEM: return "out of memory";
    case ZF_ERR_NUMERIC: return "numeric failure";
    case ZF_ERR_INTERRUPTED: return "interrupted";
    case ZF_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

_Noreturn void zf_panic(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "zfold: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

void *zf_malloc(size_t bytes, const char *what)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) zf_fail(ZF_ERR_NOMEM, "cannot allocate %zu bytes for %s", bytes, what);
    return p;
}

void *zf_calloc(size_t count, size_t size, const char *what)
{
    if (size && count > (size_t)-1 / size) {
        zf_fail(ZF_ERR_NOMEM, "size overflow allocating %zu x %zu bytes for %s", count, size, what);
        return NULL;
    }
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) zf_fail(ZF_ERR_NOMEM, "cannot allocate %zu x %zu bytes for %s", count, size, what);
    return p;
}

char *zf_strdup(const char *s, const char *what)
{
    size_t n = strlen(s) + 1;
    char *p = zf_malloc(n, what);
    if (p) memcpy(p, s, n);
    return p;
}
