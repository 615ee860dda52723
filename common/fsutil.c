/* File-system helpers: mkdir -p, the atomic-write path (temporary name, fsync, rename), small-file reads. */
#define _GNU_SOURCE
#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *zf_errno_text(int e)
{
    static __thread char buf[160];
    const char *name = e == ENOSPC ? "ENOSPC" : e == EDQUOT ? "EDQUOT" : e == EIO ? "EIO" : e == EROFS ? "EROFS"
                     : e == EACCES ? "EACCES" : e == EFBIG ? "EFBIG" : NULL;
    if (name) snprintf(buf, sizeof buf, "%s (%s)", strerror(e), name);
    else snprintf(buf, sizeof buf, "%s", strerror(e));
    return buf;
}

zf_status zf_mkdirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return zf_fail(ZF_ERR_INPUT, "path too long: %s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return zf_fail(ZF_ERR_IO, "cannot create folder %s: %s", buf, zf_errno_text(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return zf_fail(ZF_ERR_IO, "cannot create folder %s: %s", buf, zf_errno_text(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) return zf_fail(ZF_ERR_IO, "%s exists and is not a folder", buf);
    return ZF_OK;
}

zf_status zf_tmp_name(const char *path, char *tmp, size_t size)
{
    if (snprintf(tmp, size, "%s.tmp.%d", path, (int)getpid()) >= (int)size)
        return zf_fail(ZF_ERR_INPUT, "path too long: %s", path);
    return ZF_OK;
}

static zf_status fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0) return zf_fail(ZF_ERR_IO, "cannot open %s to sync it: %s", path, zf_errno_text(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0) return zf_fail(ZF_ERR_IO, "fsync of %s failed: %s", path, zf_errno_text(errno));
    return ZF_OK;
}

zf_status zf_atomic_publish(const char *tmp, const char *path, zf_status s)
{
    if (s == ZF_OK) s = fsync_path(tmp, O_RDONLY);
    if (s == ZF_OK && rename(tmp, path) != 0)
        s = zf_fail(ZF_ERR_IO, "cannot rename %s to %s: %s", tmp, path, zf_errno_text(errno));
    if (s == ZF_OK) {
        /* the rename itself is durable only once the folder is synced */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        return fsync_path(slash ? (slash == dir ? "/" : dir) : ".", O_RDONLY | O_DIRECTORY);
    }
    unlink(tmp);
    return s;
}

zf_status zf_atomic_begin(zf_atomic_file *a, const char *path)
{
    a->path = path;
    a->f = NULL;
    a->status = zf_tmp_name(path, a->tmp, sizeof a->tmp);
    if (a->status != ZF_OK) return a->status;
    a->f = fopen(a->tmp, "wb");
    if (!a->f) return a->status = zf_fail(ZF_ERR_IO, "%s: cannot create: %s", a->tmp, zf_errno_text(errno));
    return ZF_OK;
}

void zf_atomic_write(zf_atomic_file *a, const void *data, size_t len)
{
    if (a->status != ZF_OK || len == 0) return;
    if (fwrite(data, 1, len, a->f) != len)
        a->status = zf_fail(ZF_ERR_IO, "%s: write failed: %s", a->tmp, zf_errno_text(errno));
}

zf_status zf_atomic_commit(zf_atomic_file *a)
{
    if (!a->f) return a->status;
    if (a->status == ZF_OK && fflush(a->f) != 0)
        a->status = zf_fail(ZF_ERR_IO, "%s: write failed: %s", a->tmp, zf_errno_text(errno));
    if (fclose(a->f) != 0 && a->status == ZF_OK)
        a->status = zf_fail(ZF_ERR_IO, "%s: cannot close: %s", a->tmp, zf_errno_text(errno));
    a->f = NULL;
    return a->status = zf_atomic_publish(a->tmp, a->path, a->status);
}

zf_status zf_write_file_atomic(const char *path, const void *data, size_t len)
{
    zf_atomic_file a;
    if (zf_atomic_begin(&a, path) != ZF_OK) return a.status;
    zf_atomic_write(&a, data, len);
    return zf_atomic_commit(&a);
}

zf_status zf_read_small_file(const char *path, size_t max_bytes, const char *what, char **out)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return zf_fail(e == ENOENT ? ZF_ERR_INPUT : ZF_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat sb;
    zf_status s = ZF_OK;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) s = zf_fail(ZF_ERR_INPUT, "%s: not a regular file", path);
    else if ((unsigned long long)sb.st_size > max_bytes)
        s = zf_fail(ZF_ERR_INPUT, "%s: %lld bytes, expected at most %zu for %s", path, (long long)sb.st_size,
                    max_bytes, what);
    char *buf = s == ZF_OK ? zf_malloc((size_t)sb.st_size + 1, what) : NULL;
    if (s == ZF_OK && !buf) s = ZF_ERR_NOMEM;
    if (s == ZF_OK && fread(buf, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size)
        s = zf_fail(ZF_ERR_IO, "%s: short read", path);
    fclose(f);
    if (s != ZF_OK) {
        free(buf);
        return s;
    }
    buf[sb.st_size] = '\0';
    *out = buf;
    return ZF_OK;
}
