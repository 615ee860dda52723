/* Logging: "[zfold rN] message" on stderr for warnings/errors, stdout for info, rank 0 only for info. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int log_rank = 0, log_nranks = 1;
static zf_log_level log_level = ZF_LOG_INFO;

void zf_log_init(int rank, int nranks)
{
    log_rank = rank;
    log_nranks = nranks;
    const char *env = getenv("ZFOLD_LOG");
    if (env) {
        if (!strcmp(env, "debug")) log_level = ZF_LOG_DEBUG;
        else if (!strcmp(env, "warn")) log_level = ZF_LOG_WARN;
        else if (!strcmp(env, "error")) log_level = ZF_LOG_ERROR;
        else if (!strcmp(env, "quiet")) log_level = ZF_LOG_QUIET;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
}

void zf_log_set_level(zf_log_level level) { log_level = level; }
zf_log_level zf_log_level_get(void) { return log_level; }
int zf_log_rank(void) { return log_rank; }

static void emit(zf_log_level level, FILE *f, const char *tag, const char *fmt, va_list ap)
{
    if (level < log_level) return;
    char line[4096];
    vsnprintf(line, sizeof line, fmt, ap);
    if (log_nranks > 1) fprintf(f, "[zfold r%d]%s %s\n", log_rank, tag, line);
    else fprintf(f, "[zfold]%s %s\n", tag, line);
    fflush(f);
}

void zf_log_debug(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(ZF_LOG_DEBUG, stderr, " debug:", fmt, ap);
    va_end(ap);
}

void zf_log_info(const char *fmt, ...)
{
    if (log_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    emit(ZF_LOG_INFO, stdout, "", fmt, ap);
    va_end(ap);
}

void zf_log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(ZF_LOG_WARN, stderr, " warning:", fmt, ap);
    va_end(ap);
}

void zf_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(ZF_LOG_ERROR, stderr, " error:", fmt, ap);
    va_end(ap);
}
