/* The process exit codes, shared by the commands and the engine (which ends a job with one on a failed collective). */
#ifndef ZF_EXIT_CODES_H
#define ZF_EXIT_CODES_H

#include "common/status.h"

enum {
    ZF_EXIT_OK = 0,
    ZF_EXIT_FAILURE = 1,      /* bad input or a failed step; the message says which */
    ZF_EXIT_USAGE = 2,        /* wrong command line */
    ZF_EXIT_INTERRUPTED = 3,  /* stopped on a signal; run the same command again to resume */
    ZF_EXIT_INTERNAL = 4      /* a broken invariant or library failure */
};

/* The process exit code for a status. */
int zf_exit_code(zf_status s);

#endif
