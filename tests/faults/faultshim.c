/* An LD_PRELOAD library that injects file-system faults into writes under one folder: ENOSPC once a byte budget is
 * spent, EIO from the k-th fsync, SIGKILL at the k-th rename. Settings come from the environment:
 *   ZF_FAULT_DIR            only files whose path starts with this prefix are affected (required)
 *   ZF_FAULT_ENOSPC_AFTER   bytes that may be written; later writes fail with ENOSPC
 *   ZF_FAULT_FSYNC_EIO      the k-th fsync (from 1) of a file or folder there fails with EIO
 *   ZF_FAULT_KILL_AT_RENAME the process kills itself (SIGKILL) just before the k-th rename into the folder */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static long long setting(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? atoll(v) : -1;
}

static int under_dir(const char *path)
{
    const char *dir = getenv("ZF_FAULT_DIR");
    return dir && *dir && path && !strncmp(path, dir, strlen(dir));
}

static int fd_under_dir(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = '\0';
    return under_dir(path);
}

static long long written;

/* How many of len bytes may still be written (len when there is no budget). */
static size_t allowed(int fd, size_t len)
{
    long long budget = setting("ZF_FAULT_ENOSPC_AFTER");
    if (budget < 0 || !fd_under_dir(fd)) return len;
    long long left = budget - written;
    if (left <= 0) return 0;
    return (long long)len < left ? len : (size_t)left;
}

ssize_t write(int fd, const void *buf, size_t len)
{
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = (ssize_t(*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    size_t ok = allowed(fd, len);
    if (len > 0 && ok == 0) {
        errno = ENOSPC;
        return -1;
    }
    ssize_t r = real(fd, buf, ok);
    if (r > 0 && fd_under_dir(fd)) written += r;
    return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real) real = (ssize_t(*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite64");
    size_t ok = allowed(fd, len);
    if (len > 0 && ok == 0) {
        errno = ENOSPC;
        return -1;
    }
    ssize_t r = real(fd, buf, ok, off);
    if (r > 0 && fd_under_dir(fd)) written += r;
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) { return pwrite64(fd, buf, len, off); }

/* stdio writes reach the kernel through glibc's internal write, which LD_PRELOAD cannot see: counted here. */
size_t fwrite(const void *buf, size_t size, size_t n, FILE *f)
{
    static size_t (*real)(const void *, size_t, size_t, FILE *);
    if (!real) real = (size_t(*)(const void *, size_t, size_t, FILE *))dlsym(RTLD_NEXT, "fwrite");
    if (size == 0 || n == 0) return real(buf, size, n, f);
    size_t ok = allowed(fileno(f), size * n) / size;
    size_t r = ok ? real(buf, size, ok, f) : 0;
    if (fd_under_dir(fileno(f))) written += (long long)(r * size);
    if (r < n) errno = ENOSPC;
    return r;
}

int fsync(int fd)
{
    static int (*real)(int);
    static long long count;
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    long long k = setting("ZF_FAULT_FSYNC_EIO");
    if (k > 0 && fd_under_dir(fd) && ++count == k) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

int rename(const char *from, const char *to)
{
    static int (*real)(const char *, const char *);
    static long long count;
    if (!real) real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    long long k = setting("ZF_FAULT_KILL_AT_RENAME");
    if (k > 0 && under_dir(to) && ++count == k) raise(SIGKILL);
    return real(from, to);
}
