/* The exit code of a status. */
#include "coordinator/exit_codes.h"

int zf_exit_code(zf_status s)
{
    switch (s) {
    case ZF_OK: return ZF_EXIT_OK;
    case ZF_ERR_INTERRUPTED: return ZF_EXIT_INTERRUPTED;
    case ZF_ERR_INTERNAL: return ZF_EXIT_INTERNAL;
    default: return ZF_EXIT_FAILURE;
    }
}
