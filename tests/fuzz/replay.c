/* A driver for the fuzz targets where libFuzzer is not built (gcc): each seed file, then seeded mutations of it
 * (bytes flipped, cut short, spliced), ZF_FUZZ_MUTATIONS per seed (default 300). A crash or sanitizer report fails. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz_io.h"

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static long run_seed(const char *path, long mutations, uint64_t *rng)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    uint8_t *seed = malloc((size_t)n + 1), *buf = malloc((size_t)n + 64);
    if (!seed || !buf || fread(seed, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "%s: cannot read\n", path);
        exit(2);
    }
    fclose(f);
    LLVMFuzzerTestOneInput(seed, (size_t)n);
    for (long m = 0; m < mutations; m++) {
        size_t len = (size_t)n;
        memcpy(buf, seed, len);
        switch (next(rng) % 4) {
        case 0: /* a few bytes flipped */
            for (int k = 0; len && k < 1 + (int)(next(rng) % 8); k++) buf[next(rng) % len] ^= (uint8_t)(1 + next(rng) % 255);
            break;
        case 1: /* cut short */
            len = len ? next(rng) % len : 0;
            break;
        case 2: /* a byte set to a boundary value */
            if (len) buf[next(rng) % len] = (uint8_t[]){0, 0x7f, 0x80, 0xff, '"', '{', ':', '\n'}[next(rng) % 8];
            break;
        default: /* bytes inserted */
            if (len) {
                size_t at = next(rng) % len, k = 1 + next(rng) % 32;
                memmove(buf + at + k, buf + at, len - at);
                for (size_t i = 0; i < k; i++) buf[at + i] = (uint8_t)next(rng);
                len += k;
            }
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    free(seed);
    free(buf);
    return 1 + mutations;
}

int main(int argc, char **argv)
{
    const char *env = getenv("ZF_FUZZ_MUTATIONS");
    long mutations = env ? atol(env) : 300, runs = 0, seeds = 0;
    uint64_t rng = 0x5eed;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) continue;
        if (!S_ISDIR(sb.st_mode)) {
            runs += run_seed(argv[i], mutations, &rng);
            seeds++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *de;
        char path[4096];
        while (d && (de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
            runs += run_seed(path, mutations, &rng);
            seeds++;
        }
        if (d) closedir(d);
    }
    printf("%ld inputs from %ld seeds, no crash\n", runs, seeds);
    return seeds > 0 ? 0 : 1;
}
