/* The fuzz targets' scratch folder and input files. */
#define _GNU_SOURCE
#include "tests/fuzz/fuzz_io.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[512];

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[1024];
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
        }
    if (d) closedir(d);
    rmdir(dir);
}

const char *zfz_dir(void)
{
    if (!dir[0]) {
        /* a file written per input: in memory (/dev/shm) a run makes thousands of executions a second, not hundreds */
        const char *tmp = getenv("ZF_FUZZ_TMPDIR");
        if (!tmp || !*tmp) tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/zffuzz-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
        if (mkdir(dir, 0700) != 0) {
            perror(dir);
            abort();
        }
        atexit(remove_dir);
    }
    return dir;
}

const char *zfz_write(const char *name, const uint8_t *data, size_t size)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", zfz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}
