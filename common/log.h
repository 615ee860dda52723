/* Line-buffered logging with a rank@host prefix; info lines print on rank 0 only, warnings and errors on every rank. */
#ifndef ZF_LOG_H
#define ZF_LOG_H

typedef enum { ZF_LOG_DEBUG = 0, ZF_LOG_INFO, ZF_LOG_WARN, ZF_LOG_ERROR, ZF_LOG_QUIET } zf_log_level;

/* Records this process's rank and host for every line and for zf_log_place; reads ZFOLD_LOG. */
void zf_log_init(int rank, int nranks);
void zf_log_set_level(zf_log_level level);
/* "rank R on HOST", for messages that must say where a failure happened. */
const char *zf_log_place(void);
const char *zf_log_host(void);

void zf_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void zf_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void zf_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void zf_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
