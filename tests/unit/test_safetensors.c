/* safetensors: the three fixtures, writer round trips (single and sharded) and malformed files refused with clear messages. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

#include "common/safetensors.h"
#include "common/dtype_internal.h"
#include "common/safetensors_internal.h"
#include "tests/testutil.h"

static char *path_in(const char *dir, const char *name)
{
    static char bufs[4][1024];
    static int slot;
    char *b = bufs[slot++ % 4];
    int n = snprintf(b, 1024, "%s/%s", dir, name);
    if (n < 0 || n >= 1024) { fprintf(stderr, "path too long: %s/%s\n", dir, name); exit(2); }
    return b;
}

/* Raw file: 8-byte length (hlen, or strlen(header) when hlen == UINT64_MAX), header text, ndata zero bytes. */
static void write_raw(const char *path, uint64_t hlen, const char *header, size_t ndata)
{
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    if (hlen == UINT64_MAX) hlen = strlen(header);
    unsigned char l[8];
    for (int i = 0; i < 8; i++) l[i] = (unsigned char)(hlen >> (8 * i));
    fwrite(l, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < ndata; i++) fputc(0, f);
    fclose(f);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(2); }
    fputs(text, f);
    fclose(f);
}

/* Opening path must fail with ZF_ERR_INPUT and a message that names `name` (the file) and every needle. */
static void expect_bad(const char *path, const char *name, const char *needle1, const char *needle2)
{
    zf_safetensors *st = (zf_safetensors *)0x1;
    zf_clear_error();
    zf_status s = zf_st_open(path, &st);
    const char *m = zf_last_error();
    CHECK_MSG(s == ZF_ERR_INPUT, "%s: status %s (%s)", path, zf_status_name(s), m);
    CHECK(st == NULL);
    if (getenv("ZT_VERBOSE")) printf("  refused: %s\n", m);
    CHECK_MSG(strstr(m, name) != NULL, "message does not name the file %s: %s", name, m);
    if (needle1) CHECK_MSG(strstr(m, needle1) != NULL, "message lacks '%s': %s", needle1, m);
    if (needle2) CHECK_MSG(strstr(m, needle2) != NULL, "message lacks '%s': %s", needle2, m);
    if (s == ZF_OK) zf_st_close(st);
}

/* One malformed single-file case in the temp folder. */
static void bad_case(const char *file, uint64_t hlen, const char *header, size_t ndata, const char *n1, const char *n2)
{
    const char *p = path_in(zt_tmpdir(), file);
    write_raw(p, hlen, header, ndata);
    expect_bad(p, file, n1, n2);
}

static void check_fixture(const char *rel, size_t count, int64_t total, const char *name, int ndim, int64_t d0,
                          int64_t d1)
{
    zf_safetensors *st = NULL;
    CHECK_OK(zf_st_open(zt_fixture(rel), &st));
    if (!st) return;
    CHECK_MSG(zf_st_count(st) == count, "%s: %zu tensors, want %zu", rel, zf_st_count(st), count);
    int64_t sum = 0;
    int all_f32 = 1, sorted = 1;
    for (size_t i = 0; i < zf_st_count(st); i++) {
        const zf_st_tensor *t = zf_st_at(st, i);
        sum += t->numel;
        all_f32 &= t->dtype == ZF_DT_F32;
        if (i) sorted &= strcmp(zf_st_at(st, i - 1)->name, t->name) < 0;
        CHECK(zf_st_find(st, t->name) == t);
        CHECK(t->nbytes == (size_t)t->numel * 4);
    }
    CHECK(all_f32);
    CHECK(sorted);
    CHECK_MSG(sum == total, "%s: %lld values, want %lld", rel, (long long)sum, (long long)total);
    const zf_st_tensor *t = zf_st_find(st, name);
    CHECK_MSG(t && t->ndim == ndim && t->shape[0] == d0 && (ndim < 2 || t->shape[1] == d1), "%s: %s", rel, name);
    CHECK(zf_st_find(st, "no.such.tensor") == NULL);
    /* Fingerprint is stable across opens. */
    zf_safetensors *st2 = NULL;
    CHECK_OK(zf_st_open(zt_fixture(rel), &st2));
    if (st2) CHECK(zf_st_fingerprint(st) == zf_st_fingerprint(st2));
    zf_st_close(st2);
    zf_st_close(st);
}

static void test_fixtures(void)
{
    check_fixture("stories260k/model.safetensors", 47, 260032, "model.layers.3.mlp.down_proj.weight", 2, 64, 172);
    check_fixture("stories260k", 47, 260032, "model.layers.0.self_attn.k_proj.weight", 2, 32, 64);
    check_fixture("opt-mini/model.safetensors", 68, 3422208, "model.decoder.embed_positions.weight", 2, 514, 256);
    check_fixture("llama-mini", 39, 3164416, "lm_head.weight", 2, 512, 256);

    zf_safetensors *st = NULL;
    CHECK_OK(zf_st_open(zt_fixture("stories260k/model.safetensors"), &st));
    if (!st) return;
    const zf_st_tensor *t = zf_st_find(st, "model.norm.weight");
    CHECK(t && t->ndim == 1 && t->shape[0] == 64 && strstr(t->file, "stories260k/model.safetensors"));
    /* The first tensor's data starts right after the 4,856-byte header (README). */
    const zf_st_tensor *e = zf_st_find(st, "model.embed_tokens.weight");
    float first[2], raw[2];
    FILE *f = fopen(zt_fixture("stories260k/model.safetensors"), "rb");
    CHECK(f && fseek(f, 4864, SEEK_SET) == 0 && fread(raw, 4, 2, f) == 2);
    if (f) fclose(f);
    memcpy(first, e->data, sizeof first);
    CHECK(memcmp(first, raw, sizeof raw) == 0);

    /* read_f32 shape checks. */
    float *w = NULL;
    int64_t good[2] = {64, 172}, bad[2] = {172, 64};
    CHECK_OK(zf_st_load_f32(st, "model.layers.3.mlp.down_proj.weight", 2, good, &w));
    const zf_st_tensor *d = zf_st_find(st, "model.layers.3.mlp.down_proj.weight");
    CHECK(w && memcmp(w, d->data, d->nbytes) == 0);
    free(w);
    w = (float *)0x1;
    zf_status s = zf_st_load_f32(st, "model.layers.3.mlp.down_proj.weight", 2, bad, &w);
    const char *m = zf_last_error();
    CHECK(s == ZF_ERR_INPUT && w == NULL);
    CHECK_MSG(strstr(m, "model.layers.3.mlp.down_proj.weight") && strstr(m, "[172, 64]") && strstr(m, "[64, 172]"),
              "%s", m);
    float tmp[64];
    int64_t one[1] = {64};
    s = zf_st_read_f32(st, "model.layers.9.input_layernorm.weight", 1, one, tmp);
    CHECK(s == ZF_ERR_INPUT && strstr(zf_last_error(), "model.layers.9.input_layernorm.weight"));
    s = zf_st_read_f32(st, "model.norm.weight", 2, good, tmp);
    CHECK(s == ZF_ERR_INPUT && strstr(zf_last_error(), "[64]"));
    zf_st_close(st);
}

static void test_round_trip(void)
{
    const char *dir = zt_tmpdir();
    const char *p = path_in(dir, "rt.safetensors");
    zt_rng r;
    zt_rng_seed(&r, 7);
    float f32[3 * 5];
    zt_fill_normal(&r, f32, 15, 1.0);
    f32[3] = -0.0f;
    f32[4] = INFINITY;
    uint16_t f16[7], bf16[6];
    for (int i = 0; i < 7; i++) f16[i] = (uint16_t)zt_rng_u64(&r);
    for (int i = 0; i < 6; i++) bf16[i] = (uint16_t)(zt_rng_u64(&r) & 0x7f7f);
    int32_t i32[4] = {-1, 0, 2147483647, -2147483647 - 1};
    double f64[2] = {M_PI, -1e300};
    unsigned char u8[3] = {0, 255, 7};
    float scalar = 42.5f;
    int64_t s_f32[2] = {3, 5}, s_f16[1] = {7}, s_bf16[3] = {1, 2, 3}, s_i32[2] = {2, 2}, s_f64[1] = {2},
            s_u8[1] = {3}, s_empty[2] = {0, 4};

    zf_st_writer *w = zf_st_writer_new();
    CHECK(w != NULL);
    /* Added out of order: the file is sorted by name. */
    CHECK_OK(zf_st_writer_add(w, "z.f32", ZF_DT_F32, 2, s_f32, f32));
    CHECK_OK(zf_st_writer_add(w, "a.f16", ZF_DT_F16, 1, s_f16, f16));
    CHECK_OK(zf_st_writer_add(w, "m.bf16", ZF_DT_BF16, 3, s_bf16, bf16));
    CHECK_OK(zf_st_writer_add(w, "b.i32", ZF_DT_I32, 2, s_i32, i32));
    CHECK_OK(zf_st_writer_add(w, "c.f64", ZF_DT_F64, 1, s_f64, f64));
    CHECK_OK(zf_st_writer_add(w, "d.u8 \"quoted\\name\"", ZF_DT_U8, 1, s_u8, u8));
    CHECK_OK(zf_st_writer_add(w, "e.scalar", ZF_DT_F32, 0, NULL, &scalar));
    CHECK_OK(zf_st_writer_add(w, "f.empty", ZF_DT_F32, 2, s_empty, NULL));
    CHECK(zf_st_writer_add(w, "a.f16", ZF_DT_F16, 1, s_f16, f16) == ZF_ERR_INPUT); /* duplicate name */
    CHECK_OK(zf_st_writer_meta(w, "format", "pt"));
    CHECK_OK(zf_st_writer_meta(w, "zfold", "line1\nline2 \"q\""));
    CHECK_OK(zf_st_writer_save(w, p));
    zf_st_writer_free(w);

    /* No temporary file left behind. */
    DIR *dd = opendir(dir);
    int tmp_left = 0;
    for (struct dirent *de; dd && (de = readdir(dd));) tmp_left += strstr(de->d_name, ".tmp.") != NULL;
    if (dd) closedir(dd);
    CHECK(tmp_left == 0);

    /* Header length is a multiple of 8 and the data region is exactly the sum of the tensors. */
    FILE *f = fopen(p, "rb");
    unsigned char l8[8];
    CHECK(f && fread(l8, 1, 8, f) == 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | l8[i];
    fseek(f, 0, SEEK_END);
    long fsize = ftell(f);
    fclose(f);
    CHECK(hlen % 8 == 0);
    size_t total = sizeof f32 + sizeof f16 + sizeof bf16 + sizeof i32 + sizeof f64 + sizeof u8 + sizeof scalar;
    CHECK((uint64_t)fsize == 8 + hlen + total);

    zf_safetensors *st = NULL;
    CHECK_OK(zf_st_open(p, &st));
    if (!st) return;
    CHECK(zf_st_count(st) == 8);
    struct { const char *name; zf_dtype dt; int ndim; const int64_t *shape; const void *data; size_t n; } exp[] = {
        {"z.f32", ZF_DT_F32, 2, s_f32, f32, sizeof f32},   {"a.f16", ZF_DT_F16, 1, s_f16, f16, sizeof f16},
        {"m.bf16", ZF_DT_BF16, 3, s_bf16, bf16, sizeof bf16}, {"b.i32", ZF_DT_I32, 2, s_i32, i32, sizeof i32},
        {"c.f64", ZF_DT_F64, 1, s_f64, f64, sizeof f64},   {"d.u8 \"quoted\\name\"", ZF_DT_U8, 1, s_u8, u8, 3},
        {"e.scalar", ZF_DT_F32, 0, NULL, &scalar, 4},      {"f.empty", ZF_DT_F32, 2, s_empty, NULL, 0},
    };
    for (size_t k = 0; k < sizeof exp / sizeof exp[0]; k++) {
        const zf_st_tensor *t = zf_st_find(st, exp[k].name);
        CHECK_MSG(t != NULL, "%s missing", exp[k].name);
        if (!t) continue;
        CHECK(t->dtype == exp[k].dt && t->ndim == exp[k].ndim && t->nbytes == exp[k].n);
        for (int i = 0; i < t->ndim; i++) CHECK(t->shape[i] == exp[k].shape[i]);
        if (exp[k].n) CHECK_MSG(memcmp(t->data, exp[k].data, exp[k].n) == 0, "%s data differs", exp[k].name);
    }
    /* Contiguous in name order. */
    const unsigned char *prev_end = NULL;
    for (size_t i = 0; i < zf_st_count(st); i++) {
        const zf_st_tensor *t = zf_st_at(st, i);
        if (prev_end) CHECK(t->data == prev_end);
        prev_end = (const unsigned char *)t->data + t->nbytes;
    }
    /* Conversions through read_f32. */
    float out[15];
    /* converted, then refused: a checkpoint must hold finite values (f32[4] is +Inf), named by tensor and index */
    zf_status inf = zf_st_read_f32(st, "z.f32", 2, s_f32, out);
    CHECK_MSG(inf == ZF_ERR_INPUT && strstr(zf_last_error(), "tensor 'z.f32' holds +Inf at [0, 4]"), "%s", zf_last_error());
    CHECK(memcmp(out, f32, sizeof f32) == 0);
    /* its content was hashed as it was read; an unread tensor has no hash yet */
    const char *hn = NULL;
    uint64_t hh = 0;
    bool hashed_z = false, hashed_c = false;
    for (size_t i = 0; i < zf_st_tensor_count(st); i++)
        if (zf_st_content_hash(st, i, &hn, &hh)) {
            hashed_z |= !strcmp(hn, "z.f32");
            hashed_c |= !strcmp(hn, "c.f64");
        }
    CHECK(hashed_z && !hashed_c);
    CHECK_OK(zf_st_read_f32(st, "a.f16", 1, s_f16, out));
    int ok = 1;
    for (int i = 0; i < 7; i++) {
        float want = zf_f16_to_f32(f16[i]);
        ok &= (isnan(want) && isnan(out[i])) || memcmp(&want, &out[i], 4) == 0;
    }
    CHECK(ok);
    CHECK_OK(zf_st_read_f32(st, "m.bf16", 3, s_bf16, out));
    for (int i = 0; i < 6; i++) CHECK(out[i] == zf_bf16_to_f32(bf16[i]));
    zf_status s = zf_st_read_f32(st, "b.i32", 2, s_i32, out);
    CHECK(s == ZF_ERR_INPUT && strstr(zf_last_error(), "b.i32") && strstr(zf_last_error(), "I32"));

    /* Fingerprint: same layout, same value; a different shape changes it. */
    uint64_t fp = zf_st_fingerprint(st);
    zf_st_close(st);
    w = zf_st_writer_new();
    int64_t s2[2] = {5, 3};
    CHECK_OK(zf_st_writer_add(w, "z.f32", ZF_DT_F32, 2, s2, f32));
    CHECK_OK(zf_st_writer_save(w, path_in(dir, "fp.safetensors")));
    zf_st_writer_free(w);
    CHECK_OK(zf_st_open(path_in(dir, "fp.safetensors"), &st));
    if (st) CHECK(zf_st_fingerprint(st) != fp);
    zf_st_close(st);
}

static void write_shard(const char *path, const char *a, const char *b, float base)
{
    zf_st_writer *w = zf_st_writer_new();
    float x[4] = {base, base + 1, base + 2, base + 3};
    int64_t sh[2] = {2, 2};
    CHECK_OK(zf_st_writer_add(w, a, ZF_DT_F32, 2, sh, x));
    if (b) CHECK_OK(zf_st_writer_add(w, b, ZF_DT_F32, 2, sh, x));
    CHECK_OK(zf_st_writer_save(w, path));
    zf_st_writer_free(w);
}

static const char *mkdir_in(const char *name)
{
    const char *d = path_in(zt_tmpdir(), name);
    mkdir(d, 0755);
    return d;
}

static void test_sharded(void)
{
    char d[1024];
    snprintf(d, sizeof d, "%s", mkdir_in("sharded"));
    write_shard(path_in(d, "model-00001-of-00002.safetensors"), "t.a", "t.b", 0);
    write_shard(path_in(d, "model-00002-of-00002.safetensors"), "t.c", NULL, 10);
    write_text(path_in(d, "model.safetensors.index.json"),
               "{\"metadata\": {\"total_size\": 48}, \"weight_map\": {\"t.c\": \"model-00002-of-00002.safetensors\", "
               "\"t.a\": \"model-00001-of-00002.safetensors\", \"t.b\": \"model-00001-of-00002.safetensors\"}}");
    zf_safetensors *st = NULL;
    CHECK_OK(zf_st_open(d, &st));
    if (st) {
        CHECK(zf_st_count(st) == 3);
        const zf_st_tensor *c = zf_st_find(st, "t.c");
        CHECK(c && strstr(c->file, "model-00002-of-00002.safetensors"));
        float x[4];
        int64_t sh[2] = {2, 2};
        CHECK_OK(zf_st_read_f32(st, "t.c", 2, sh, x));
        CHECK(x[0] == 10 && x[3] == 13);
        CHECK_OK(zf_st_read_f32(st, "t.a", 2, sh, x));
        CHECK(x[0] == 0 && x[3] == 3);
        CHECK(strcmp(zf_st_at(st, 0)->name, "t.a") == 0 && strcmp(zf_st_at(st, 2)->name, "t.c") == 0);
        zf_st_close(st);
    }

    /* Index naming a shard that does not exist. */
    snprintf(d, sizeof d, "%s", mkdir_in("missing_shard"));
    write_shard(path_in(d, "s1.safetensors"), "t.a", NULL, 0);
    write_text(path_in(d, "model.safetensors.index.json"),
               "{\"weight_map\": {\"t.a\": \"s1.safetensors\", \"t.b\": \"s2.safetensors\"}}");
    expect_bad(d, "model.safetensors.index.json", "s2.safetensors", "weight_map");

    /* Index maps a tensor to a shard that does not hold it. */
    snprintf(d, sizeof d, "%s", mkdir_in("absent_tensor"));
    write_shard(path_in(d, "s1.safetensors"), "t.a", NULL, 0);
    write_shard(path_in(d, "s2.safetensors"), "t.c", NULL, 0);
    write_text(path_in(d, "model.safetensors.index.json"),
               "{\"weight_map\": {\"t.a\": \"s1.safetensors\", \"t.b\": \"s2.safetensors\", \"t.c\": \"s2.safetensors\"}}");
    expect_bad(d, "model.safetensors.index.json", "t.b", "s2.safetensors");

    /* The same tensor in two shards. */
    snprintf(d, sizeof d, "%s", mkdir_in("duplicate"));
    write_shard(path_in(d, "s1.safetensors"), "t.a", "t.b", 0);
    write_shard(path_in(d, "s2.safetensors"), "t.b", "t.c", 0);
    write_text(path_in(d, "model.safetensors.index.json"),
               "{\"weight_map\": {\"t.a\": \"s1.safetensors\", \"t.b\": \"s1.safetensors\", \"t.c\": \"s2.safetensors\"}}");
    expect_bad(d, "model.safetensors.index.json", "t.b", "s2.safetensors");

    /* Index that is not JSON / has no weight_map; a malformed shard is reported with the shard's name. */
    snprintf(d, sizeof d, "%s", mkdir_in("bad_index"));
    write_text(path_in(d, "model.safetensors.index.json"), "{\"weight_map\": [1, 2]}");
    expect_bad(d, "model.safetensors.index.json", "weight_map", NULL);
    snprintf(d, sizeof d, "%s", mkdir_in("bad_shard"));
    write_raw(path_in(d, "s1.safetensors"), UINT64_MAX, "{\"t.a\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8);
    write_text(path_in(d, "model.safetensors.index.json"), "{\"weight_map\": {\"t.a\": \"s1.safetensors\"}}");
    expect_bad(d, "s1.safetensors", "t.a", "data_offsets");
    /* A folder with neither file. */
    snprintf(d, sizeof d, "%s", mkdir_in("empty"));
    expect_bad(d, "empty", "model.safetensors", NULL);
}

static void test_malformed(void)
{
    const char *dir = zt_tmpdir();
    /* 1. shorter than the 8-byte length */
    FILE *f = fopen(path_in(dir, "short.st"), "wb");
    fwrite("abcde", 1, 5, f);
    fclose(f);
    expect_bad(path_in(dir, "short.st"), "short.st", "5 bytes", "header length");
    /* 2. empty file */
    fclose(fopen(path_in(dir, "empty.st"), "wb"));
    expect_bad(path_in(dir, "empty.st"), "empty.st", "0 bytes", NULL);
    /* 3. header length beyond EOF */
    bad_case("beyond.st", 1000, "{}", 0, "header length 1000", "end of the file");
    /* 4. absurd header length, refused before allocating */
    bad_case("huge.st", (uint64_t)1 << 62, "{}", 0, "header length 4611686018427387904", "at most");
    /* 5. header not JSON */
    bad_case("notjson.st", UINT64_MAX, "{\"a\": {\"dtype\": ", 0, "header", "JSON");
    /* 6. header JSON but not an object */
    bad_case("array.st", UINT64_MAX, "[1, 2, 3]", 0, "header", "object");
    /* 7. unknown dtype */
    bad_case("dtype.st", UINT64_MAX, "{\"w\": {\"dtype\": \"F8_X\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2,
             "'dtype'", "F8_X");
    /* 8. dtype of the wrong JSON type, and missing */
    bad_case("dtype2.st", UINT64_MAX, "{\"w\": {\"dtype\": 4, \"shape\": [2], \"data_offsets\": [0, 8]}}", 8,
             "'dtype'", "a number");
    bad_case("dtype3.st", UINT64_MAX, "{\"w\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8, "'w'", "'dtype'");
    /* 9. negative shape */
    bad_case("negshape.st", UINT64_MAX, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, -3], \"data_offsets\": [0, 8]}}",
             8, "'shape'[1]", "-3");
    /* 10. non-integer shape, and a string in the shape */
    bad_case("fracshape.st", UINT64_MAX, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 8]}}",
             8, "'shape'[0]", "2.5");
    bad_case("strshape.st", UINT64_MAX, "{\"w\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}",
             8, "'shape'[0]", "a string");
    bad_case("noshape.st", UINT64_MAX, "{\"w\": {\"dtype\": \"F32\", \"shape\": 2, \"data_offsets\": [0, 8]}}",
             8, "'w'", "'shape'");
    /* 11. shape product overflow */
    bad_case("overflow.st", UINT64_MAX,
             "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8,
             "'shape'", "overflow");
    bad_case("overflow2.st", UINT64_MAX,
             "{\"w\": {\"dtype\": \"F64\", \"shape\": [4503599627370496, 1024], \"data_offsets\": [0, 8]}}", 8,
             "'shape'", "overflow the byte size");
    bad_case("overflow3.st", UINT64_MAX,
             "{\"w\": {\"dtype\": \"F32\", \"shape\": [1e300], \"data_offsets\": [0, 8]}}", 8,
             "'shape'[0]", "too large");
    /* 12. end beyond the data region */
    bad_case("beyonddata.st", UINT64_MAX, "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
             8, "'data_offsets'", "beyond the data region");
    /* 13. size mismatch */
    bad_case("sizemis.st", UINT64_MAX, "{\"w\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 16]}}",
             16, "'data_offsets'", "expected 12");
    /* 14. overlapping tensors */
    bad_case("overlap.st", UINT64_MAX,
             "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
             " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12, "overlaps", "'a'");
    /* 15. missing data_offsets; wrong length; begin > end; negative */
    bad_case("nooffsets.st", UINT64_MAX, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2]}}", 8, "'w'", "'data_offsets'");
    bad_case("offsets3.st", UINT64_MAX, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 4, 8]}}",
             8, "'w'", "'data_offsets'");
    bad_case("offsetsrev.st", UINT64_MAX, "{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 0]}}",
             8, "'data_offsets'", "begin 8 > end 0");
    bad_case("offsetsneg.st", UINT64_MAX, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}",
             8, "'data_offsets'", "non-negative");
    /* 16. entry not an object; metadata with a non-string value */
    bad_case("entry.st", UINT64_MAX, "{\"w\": [1, 2]}", 0, "'w'", "an array");
    bad_case("meta.st", UINT64_MAX, "{\"__metadata__\": {\"format\": 1}}", 0, "__metadata__", "format");
    /* 17. NUL byte inside the header */
    {
        const char *p = path_in(dir, "nul.st");
        FILE *g = fopen(p, "wb");
        unsigned char l[8] = {8, 0, 0, 0, 0, 0, 0, 0};
        fwrite(l, 1, 8, g);
        fwrite("{}\0     ", 1, 8, g);
        fclose(g);
        expect_bad(p, "nul.st", "header", "NUL");
    }
    /* 18. too many dimensions */
    bad_case("dims.st", UINT64_MAX,
             "{\"w\": {\"dtype\": \"U8\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 1]}}", 1, "'shape'",
             "9 dimensions");
    /* 19. the same tensor name twice in one header */
    bad_case("dupname.st", UINT64_MAX,
             "{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
             " \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8, "'w'", "twice");
    /* A missing file is an input error naming it. */
    expect_bad(path_in(dir, "does-not-exist.safetensors"), "does-not-exist.safetensors", NULL, NULL);

    /* A valid minimal header with metadata, an empty tensor and trailing spaces is accepted. */
    const char *p = path_in(dir, "ok.st");
    write_raw(p, UINT64_MAX,
              "{\"__metadata__\": {\"format\": \"pt\"}, \"e\": {\"dtype\": \"F32\", \"shape\": [0, 3], "
              "\"data_offsets\": [4, 4]}, \"w\": {\"dtype\": \"BF16\", \"shape\": [2], \"data_offsets\": [0, 4]}}    ",
              4);
    zf_safetensors *st = NULL;
    CHECK_OK(zf_st_open(p, &st));
    if (st) CHECK(zf_st_count(st) == 2);
    zf_st_close(st);
}

/* Random byte flips in a valid header never crash: each open either succeeds or fails cleanly. */
static void test_fuzz(void)
{
    const char *dir = zt_tmpdir();
    const char *src = zt_fixture("stories260k/model.safetensors");
    FILE *f = fopen(src, "rb");
    CHECK(f != NULL);
    if (!f) return;
    static unsigned char buf[1044992];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    CHECK(n == sizeof buf);
    zt_rng r;
    zt_rng_seed(&r, 99);
    int failed = 0, opened = 0;
    const char *p = path_in(dir, "fuzz.st");
    static const char chars[] = "{}[]\",:0123456789-.eE aF";
    for (int it = 0; it < 300; it++) {
        unsigned char *c = malloc(n);
        memcpy(c, buf, n);
        int flips = 1 + (int)(zt_rng_u64(&r) % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(zt_rng_u64(&r) % 4864);
            c[at] = (zt_rng_u64(&r) & 1) ? (unsigned char)chars[zt_rng_u64(&r) % (sizeof chars - 1)]
                                         : (unsigned char)zt_rng_u64(&r);
        }
        size_t len = (zt_rng_u64(&r) % 8 == 0) ? (size_t)(zt_rng_u64(&r) % n) : n; /* sometimes truncated */
        FILE *g = fopen(p, "wb");
        fwrite(c, 1, len, g);
        fclose(g);
        free(c);
        zf_safetensors *st = NULL;
        zf_status s = zf_st_open(p, &st);
        if (s == ZF_OK) {
            opened++;
            /* Whatever was accepted lies inside the file. */
            for (size_t i = 0; i < zf_st_count(st); i++) CHECK(zf_st_at(st, i)->nbytes <= len);
            zf_st_close(st);
        } else {
            failed += s == ZF_ERR_INPUT && strstr(zf_last_error(), "fuzz.st") != NULL;
            CHECK_MSG(s == ZF_ERR_INPUT, "%s", zf_last_error());
        }
    }
    CHECK(failed > 0);
    printf("fuzz: %d opened, %d refused\n", opened, failed);
}

int main(void)
{
    test_fixtures();
    test_round_trip();
    test_sharded();
    test_malformed();
    test_fuzz();
    return zt_finish("test_safetensors");
}
