/* The failure message of a checked library call, and HDF5's error-stack text. */
#include "common/check.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"

zf_status zf_check_fail(zf_status s, const char *call, const char *file, int line, const char *lib_msg)
{
    /* "x = H5Fcreate(path, ...)" is reported as H5Fcreate: the arguments are in the source line */
    const char *open = strchr(call, '(');
    const char *start = call;
    for (const char *p = call; p < (open ? open : call + strlen(call)); p++)
        if (*p == '=' || *p == ' ') start = p + 1;
    int len = open ? (int)(open - start) : (int)strlen(start);
    return zf_fail(s, "%.*s failed at %s:%d on %s: %s", len, start, file, line, zf_log_place(), lib_msg);
}

static herr_t innermost(unsigned n, const H5E_error2_t *e, void *out)
{
    if (n == 0) snprintf(out, 256, "%s (in %s)", e->desc ? e->desc : "no description", e->func_name);
    return 0;
}

zf_status zf_h5_fail(const char *call, const char *file, int line)
{
    char msg[256] = "no HDF5 error recorded";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, msg);
    return zf_check_fail(ZF_ERR_IO, call, file, line, msg);
}
