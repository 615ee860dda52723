/* Logging: "[zfold rN@host] message" on stderr for warnings/errors, stdout for info, rank 0 only for info. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int log_rank = 0, log_nranks = 1;
static zf_log_level log_level = ZF_LOG_INFO;
static char log_host[64] = "?";
static char log_place[96] = "rank 0 on ?";

void zf_log_init(int rank, int nranks)
{
    log_rank = rank;
    log_nranks = nranks;
    /* a name cut short is still enough to tell the hosts of one job apart in a log */
    if (gethostname(log_host, sizeof log_host) != 0) snprintf(log_host, sizeof log_host, "?");
    log_host[sizeof log_host - 1] = '\0';
    snprintf(log_place, sizeof log_place, "rank %d on %s", rank, log_host);
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
const char *zf_log_place(void) { return log_place; }
const char *zf_log_host(void) { return log_host; }

static void emit(zf_log_level level, FILE *f, const char *tag, const char *fmt, va_list ap)
{
    if (level < log_level) return;
    char line[4096];
    vsnprintf(line, sizeof line, fmt, ap);
    if (log_nranks > 1) fprintf(f, "[zfold r%d@%s]%s %s\n", log_rank, log_host, tag, line);
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
