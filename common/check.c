/* The failure message of a checked library call, and HDF5's error-stack text. */
#include "common/check.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fsutil.h"
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

/* A file id whose close failed (a full disk while HDF5 flushes) stays registered, pointing at freed state; HDF5's
 * exit handler would close it again and crash. Every file zfold opens is closed by zfold, so the handler has
 * nothing to do: it is never registered (this must run before the first HDF5 call). */
__attribute__((constructor)) static void h5_no_exit_handler(void) { H5dont_atexit(); }

/* The innermost HDF5 message; a system call's failure ("file write failed: time = ..., errno = 28, ...", many
 * lines of HDF5's internals) is told as what failed and the system's reason, e.g. "write failed: No space left on
 * device (ENOSPC)". */
static herr_t innermost(unsigned n, const H5E_error2_t *e, void *out)
{
    if (n != 0) return 0;
    const char *desc = e->desc ? e->desc : "no description";
    const char *en = strstr(desc, "errno = ");
    if (en) {
        int code = atoi(en + 8);
        const char *colon = strchr(desc, ':');
        int what = colon && colon < en ? (int)(colon - desc) : (int)strcspn(desc, ",\n");
        snprintf(out, 256, "%.*s: %s", what, desc, zf_errno_text(code));
        return 0;
    }
    snprintf(out, 256, "%s (in %s)", desc, e->func_name);
    return 0;
}

zf_status zf_h5_fail(const char *call, const char *file, int line)
{
    char msg[256] = "no HDF5 error recorded";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, msg);
    return zf_check_fail(ZF_ERR_IO, call, file, line, msg);
}
