/* File-system helpers: create folders, write a whole file atomically (temporary name, fsync, rename). */
#ifndef ZF_FSUTIL_H
#define ZF_FSUTIL_H

#include <stddef.h>

#include "status.h"

/* Creates path and its parents (like mkdir -p). */
zf_status zf_mkdirs(const char *path);
zf_status zf_write_file_atomic(const char *path, const void *data, size_t len);
/* Reads a whole (small) text file, NUL-terminated; NULL when it cannot be read. Free with free(). */
char *zf_read_text_file(const char *path);

#endif
