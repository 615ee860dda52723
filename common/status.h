/* Status codes and the two error tiers: bad input returns a status with a message; broken invariants abort. */
#ifndef ZF_STATUS_H
#define ZF_STATUS_H

#include <stdarg.h>

typedef enum {
    ZF_OK = 0,
    ZF_ERR_INPUT,       /* bad input: file, field or value not as expected */
    ZF_ERR_IO,          /* the operating system refused a read, write or mmap */
    ZF_ERR_NOMEM,       /* an allocation failed */
    ZF_ERR_NUMERIC,     /* a numeric step failed (e.g. Hessian not positive definite after retries) */
    ZF_ERR_INTERRUPTED, /* stopped on a signal; the run can be resumed */
    ZF_ERR_INTERNAL     /* a library call failed in a way the input cannot explain */
} zf_status;

/* Records a message for the calling thread and returns s, so callers write `return zf_fail(...)`. */
zf_status zf_fail(zf_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the recorded message with more context ("while reading X: <old message>"); returns s. */
zf_status zf_fail_context(zf_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The message recorded by the last zf_fail on this thread ("" if none). */
const char *zf_last_error(void);
void zf_clear_error(void);
const char *zf_status_name(zf_status s);

/* Broken invariant: print file:line and the expression, then abort (never for bad input). */
void zf_panic(const char *file, int line, const char *fmt, ...) __attribute__((noreturn, format(printf, 3, 4)));
#define ZF_ASSERT(cond) \
    do { if (!(cond)) zf_panic(__FILE__, __LINE__, "assertion failed: %s", #cond); } while (0)
#define ZF_PANIC(...) zf_panic(__FILE__, __LINE__, __VA_ARGS__)

/* Propagate a non-OK status to the caller. */
#define ZF_TRY(expr) \
    do { zf_status zf_try_s_ = (expr); if (zf_try_s_ != ZF_OK) return zf_try_s_; } while (0)

/* Allocation that records ZF_ERR_NOMEM with the size and purpose; returns NULL on failure. */
#include <stddef.h>
void *zf_malloc(size_t bytes, const char *what);
void *zf_calloc(size_t count, size_t size, const char *what);
char *zf_strdup(const char *s, const char *what);

#endif
