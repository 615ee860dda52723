/* File-system helpers: create folders, write files atomically (temporary name, fsync, rename), read small files. */
#ifndef ZF_FSUTIL_H
#define ZF_FSUTIL_H

#include <stdio.h>
#include <stddef.h>

#include "common/status.h"

/* strerror(e), with the symbol of the errors a full, failing or read-only disk gives: "No space left on device
 * (ENOSPC)"; a thread's own buffer. */
const char *zf_errno_text(int e);

/* Creates path and its parents (like mkdir -p). */
zf_status zf_mkdirs(const char *path);

/* The temporary name of path while it is written: "<path>.tmp.<pid>". */
zf_status zf_tmp_name(const char *path, char *tmp, size_t size);
/* The one way a finished file reaches its final name: when s is ZF_OK, fsync the closed file tmp, rename it to
 * path and fsync the folder; on any failure (or s not ZF_OK) tmp is removed. Returns the first failure or s. */
zf_status zf_atomic_publish(const char *tmp, const char *path, zf_status s);

/* A file written in pieces to "<path>.tmp.<pid>" and renamed into place by commit, so that a file under its
 * final name is always complete. The first failure is kept and reported by commit. */
typedef struct {
    const char *path;
    char tmp[4096];
    FILE *f;
    zf_status status;
} zf_atomic_file;
zf_status zf_atomic_begin(zf_atomic_file *a, const char *path);
void zf_atomic_write(zf_atomic_file *a, const void *data, size_t len);
/* close, then zf_atomic_publish; on any failure the temporary file is removed and the error returned. */
zf_status zf_atomic_commit(zf_atomic_file *a);
zf_status zf_write_file_atomic(const char *path, const void *data, size_t len);

/* Reads a whole regular file of at most max_bytes (what names it in messages), NUL-terminated; free() it. */
zf_status zf_read_small_file(const char *path, size_t max_bytes, const char *what, char **out);

#endif
