/* Token files: the fixture files, malformed headers refused with the file and the numbers, and both versions round-tripped. */
#include <stdlib.h>
#include <string.h>

#include "common/tokens.h"
#include "common/tokens_internal.h"
#include "tests/testutil.h"

static void check_fixture(const char *rel, size_t count)
{
    zf_tokens t;
    CHECK_OK(zf_tokens_read(zt_fixture(rel), 512, &t));
    CHECK_MSG(t.count == count, "%s: %zu tokens, want %zu", rel, t.count, count);
    if (t.count) CHECK(t.ids[0] == 1); /* every file starts with BOS */
    int32_t mx = 0;
    for (size_t i = 0; i < t.count; i++) mx = t.ids[i] > mx ? t.ids[i] : mx;
    CHECK(mx < 512 && mx > 300);
    CHECK(t.path && strcmp(t.path, zt_fixture(rel)) == 0);
    zf_tokens_free(&t);
    CHECK(t.ids == NULL && t.count == 0);
}

/* Writes header ints h[0..2] and `nbytes` bytes of token data (each byte = fill). */
static const char *write_file(const char *name, int32_t magic, int32_t version, int32_t count, size_t nbytes,
                              unsigned char fill)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", zt_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    int32_t hdr[256] = {magic, version, count};
    fwrite(hdr, 4, 256, f);
    for (size_t i = 0; i < nbytes; i++) fputc(fill, f);
    fclose(f);
    return path;
}

static void expect_bad(const char *path, int64_t vocab, const char *n1, const char *n2)
{
    zf_tokens t = {(char *)0x1, (int32_t *)0x1, 99, 1};
    zf_status s = zf_tokens_read(path, vocab, &t);
    const char *m = zf_last_error();
    if (getenv("ZT_VERBOSE")) printf("  refused: %s\n", m);
    CHECK_MSG(s == ZF_ERR_INPUT, "%s: %s", path, m);
    CHECK(t.ids == NULL && t.path == NULL && t.count == 0);
    const char *base = strrchr(path, '/') + 1;
    CHECK_MSG(strstr(m, base) != NULL, "message does not name %s: %s", base, m);
    if (n1) CHECK_MSG(strstr(m, n1) != NULL, "message lacks '%s': %s", n1, m);
    if (n2) CHECK_MSG(strstr(m, n2) != NULL, "message lacks '%s': %s", n2, m);
}

int main(void)
{
    check_fixture("data/tinystories.tok512.bin", 17438);
    check_fixture("data/wikitext2-test.tok512.bin", 809247);
    check_fixture("data/wikitext2-valid.tok512.bin", 705243);
    check_fixture("data/ptb-test.tok512.bin", 269895);
    check_fixture("data/ptb-valid.tok512.bin", 238689);
    /* tinystories: the second document's BOS is at index 1,883; no EOS anywhere. */
    zf_tokens t;
    CHECK_OK(zf_tokens_read(zt_fixture("data/tinystories.tok512.bin"), 0, &t));
    if (t.count == 17438) {
        CHECK(t.ids[1883] == 1 && t.ids[1] == 410);
        int bos = 0, eos = 0;
        for (size_t i = 0; i < t.count; i++) { bos += t.ids[i] == 1; eos += t.ids[i] == 2; }
        CHECK(bos == 2 && eos == 0);
    }
    zf_tokens_free(&t);
    /* The vocab check: every id < 512 passes, a smaller vocab names the first offending index and id. */
    zf_status s = zf_tokens_read(zt_fixture("data/tinystories.tok512.bin"), 300, &t);
    CHECK(s == ZF_ERR_INPUT && strstr(zf_last_error(), "tinystories.tok512.bin") && strstr(zf_last_error(), "300"));

    /* Malformed files. */
    expect_bad(write_file("magic.bin", 12345, 1, 4, 8, 0), 0, "magic 12345", "20240520");
    expect_bad(write_file("version.bin", ZF_TOKENS_MAGIC_U16, 7, 4, 8, 0), 0, "version 7", "expected 1");
    expect_bad(write_file("version32.bin", ZF_TOKENS_MAGIC_U32, 1, 4, 16, 0), 0, "version 1", "expected 7");
    expect_bad(write_file("truncated.bin", ZF_TOKENS_MAGIC_U16, 1, 10, 19, 0), 0, "1044 bytes", "1043 bytes");
    expect_bad(write_file("toolong.bin", ZF_TOKENS_MAGIC_U32, 7, 2, 12, 0), 0, "1032 bytes", "1036 bytes");
    expect_bad(write_file("count.bin", ZF_TOKENS_MAGIC_U16, 1, 2000000000, 8, 0), 0, "2000000000 tokens",
               "4000001024 bytes");
    expect_bad(write_file("negcount.bin", ZF_TOKENS_MAGIC_U16, 1, -5, 8, 0), 0, "-5", NULL);
    expect_bad(write_file("vocab.bin", ZF_TOKENS_MAGIC_U16, 1, 3, 6, 0x02), 512, "token 0", "514");
    expect_bad(write_file("int32.bin", ZF_TOKENS_MAGIC_U32, 7, 1, 4, 0xff), 0, "token 0", "4294967295");
    {
        char path[1024];
        snprintf(path, sizeof path, "%s/tiny.bin", zt_tmpdir());
        FILE *f = fopen(path, "wb");
        fwrite("abc", 1, 3, f);
        fclose(f);
        expect_bad(path, 0, "3 bytes", "1024");
    }
    {
        char path[1024];
        snprintf(path, sizeof path, "%s/nonexistent.bin", zt_tmpdir());
        expect_bad(path, 0, NULL, NULL);
    }
    /* An id at the end out of vocab names its index. */
    {
        char path[1024];
        snprintf(path, sizeof path, "%s/lastbad.bin", zt_tmpdir());
        int32_t ids[5] = {1, 2, 3, 4, 600};
        CHECK_OK(zf_tokens_write(path, ids, 5));
        expect_bad(path, 512, "token 4 has id 600", "512");
    }

    /* Round trips: u16 / version 1 and u32 / version 7, chosen by the largest id. */
    char p16[1024], p32[1024], p0[1024];
    snprintf(p16, sizeof p16, "%s/rt16.bin", zt_tmpdir());
    snprintf(p32, sizeof p32, "%s/rt32.bin", zt_tmpdir());
    snprintf(p0, sizeof p0, "%s/rt0.bin", zt_tmpdir());
    zt_rng r;
    zt_rng_seed(&r, 3);
    enum { N = 10001 };
    static int32_t a[N], b[N];
    for (int i = 0; i < N; i++) a[i] = (int32_t)(zt_rng_u64(&r) % 65536);
    a[0] = 65535;
    for (int i = 0; i < N; i++) b[i] = (int32_t)(zt_rng_u64(&r) % 200000);
    b[7] = 65536;
    b[8] = 2147483647;
    CHECK_OK(zf_tokens_write(p16, a, N));
    CHECK_OK(zf_tokens_write(p32, b, N));
    CHECK_OK(zf_tokens_write(p0, a, 0));
    FILE *f = fopen(p16, "rb");
    int32_t h[3];
    CHECK(f && fread(h, 4, 3, f) == 3);
    fseek(f, 0, SEEK_END);
    CHECK(h[0] == ZF_TOKENS_MAGIC_U16 && h[1] == 1 && h[2] == N && ftell(f) == 1024 + 2 * N);
    fclose(f);
    f = fopen(p32, "rb");
    CHECK(f && fread(h, 4, 3, f) == 3);
    fseek(f, 0, SEEK_END);
    CHECK(h[0] == ZF_TOKENS_MAGIC_U32 && h[1] == 7 && h[2] == N && ftell(f) == 1024 + 4 * N);
    fclose(f);
    CHECK_OK(zf_tokens_read(p16, 65536, &t));
    CHECK(t.count == N && memcmp(t.ids, a, sizeof a) == 0);
    zf_tokens_free(&t);
    CHECK_OK(zf_tokens_read(p32, 0, &t));
    CHECK(t.count == N && memcmp(t.ids, b, sizeof b) == 0);
    zf_tokens_free(&t);
    CHECK_OK(zf_tokens_read(p0, 0, &t));
    CHECK(t.count == 0);
    zf_tokens_free(&t);
    /* Negative ids cannot be written. */
    int32_t neg[2] = {1, -1};
    CHECK(zf_tokens_write(p0, neg, 2) == ZF_ERR_INPUT && strstr(zf_last_error(), "token 1"));
    return zt_finish("test_tokens");
}
