/* Tokenizers: llama2.c tokenizer.bin against the fixture token files and a quadratic run.c-style reference; a small
 * tokenizer.json by hand; malformed tokenizer.json files refused naming the field; text sources. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/textsrc.h"
#include "common/tokenizer.h"
#include "common/tokenizer_internal.h"
#include "common/tokens.h"
#include "tests/testutil.h"

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    if (b && fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

static const char *write_text(const char *name, const char *text, size_t len)
{
    static char path[8][1024];
    static int slot;
    char *p = path[slot++ % 8];
    snprintf(p, 1024, "%s/%s", zt_tmpdir(), name);
    FILE *f = fopen(p, "wb");
    fwrite(text, 1, len, f);
    fclose(f);
    return p;
}

/* ---- run.c's encode, as written there: a quadratic scan for the best adjacent pair ---- */

typedef struct {
    char **vocab;
    float *scores;
    int n;
} ref_vocab;

static void ref_load(const char *path, ref_vocab *v)
{
    size_t size;
    unsigned char *d = (unsigned char *)slurp(path, &size);
    v->n = 0;
    v->vocab = NULL;
    v->scores = NULL;
    for (size_t off = 4; off + 8 <= size; v->n++) {
        int len;
        memcpy(&len, d + off + 4, 4);
        v->vocab = realloc(v->vocab, (size_t)(v->n + 1) * sizeof *v->vocab);
        v->scores = realloc(v->scores, (size_t)(v->n + 1) * sizeof *v->scores);
        memcpy(&v->scores[v->n], d + off, 4);
        v->vocab[v->n] = calloc((size_t)len + 1, 1);
        memcpy(v->vocab[v->n], d + off + 8, (size_t)len);
        off += 8 + (size_t)len;
    }
    free(d);
}

static int ref_lookup(const ref_vocab *v, const char *s)
{
    for (int i = 0; i < v->n; i++)
        if (!strcmp(v->vocab[i], s)) return i;
    return -1;
}

static size_t ref_encode(const ref_vocab *v, const char *text, int *out)
{
    size_t n = 0;
    out[n++] = 1;
    if (!*text) return n;
    out[n++] = ref_lookup(v, " ");
    char buf[64];
    size_t len = 0;
    for (const char *c = text; *c; c++) {
        if ((*c & 0xC0) != 0x80) len = 0;
        buf[len++] = *c;
        buf[len] = 0;
        if ((c[1] & 0xC0) == 0x80 && len < 4) continue;
        int id = ref_lookup(v, buf);
        if (id >= 0) out[n++] = id;
        else
            for (size_t i = 0; i < len; i++) out[n++] = (unsigned char)buf[i] + 3;
        len = 0;
    }
    for (;;) {
        float best = -1e10f;
        int best_id = -1;
        size_t best_at = 0;
        char *pair = malloc(256);
        for (size_t i = 1; i < n; i++) {
            snprintf(pair, 256, "%s%s", v->vocab[out[i - 1]], v->vocab[out[i]]);
            int id = ref_lookup(v, pair);
            if (id >= 0 && v->scores[id] > best) {
                best = v->scores[id];
                best_id = id;
                best_at = i - 1;
            }
        }
        free(pair);
        if (best_id < 0) break;
        out[best_at] = best_id;
        memmove(out + best_at + 1, out + best_at + 2, (n - best_at - 2) * sizeof *out);
        n--;
    }
    return n;
}

static void check_fixture(const zf_tokenizer *t, const char *token_file, const char *const *raw, int n_raw)
{
    zf_token_ids ids = {0};
    size_t total = 0;
    char *joined = NULL;
    for (int i = 0; i < n_raw; i++) {
        size_t n;
        char *text = slurp(zt_fixture(raw[i]), &n);
        CHECK_MSG(text != NULL, "cannot read %s", raw[i]);
        if (!text) return;
        CHECK_OK(zf_tokenizer_encode(t, text, n, true, &ids));
        joined = realloc(joined, total + n + 1);
        memcpy(joined + total, text, n);
        total += n;
        free(text);
    }
    zf_tokens ref;
    CHECK_OK(zf_tokens_read(zt_fixture(token_file), 512, &ref));
    size_t first_diff = ref.count;
    for (size_t i = 0; i < ref.count && i < ids.count; i++)
        if (ref.ids[i] != ids.ids[i]) {
            first_diff = i;
            break;
        }
    CHECK_MSG(ids.count == ref.count && first_diff == ref.count, "%s: %zu tokens (want %zu), first difference at %zu",
              token_file, ids.count, ref.count, first_diff);
    /* decoding gives back the source bytes */
    char *text;
    size_t len;
    CHECK_OK(zf_tokenizer_decode(t, ids.ids, ids.count, true, &text, &len));
    CHECK_MSG(len == total && !memcmp(text, joined, total), "%s: decoded %zu bytes, want the %zu source bytes",
              token_file, len, total);
    free(text);
    free(joined);
    zf_tokens_free(&ref);
    zf_token_ids_free(&ids);
}

static void test_llama2c(void)
{
    zf_tokenizer *t;
    CHECK_OK(zf_tokenizer_load(zt_fixture("stories260k"), &t)); /* the folder: its tokenizer.bin */
    if (!t) return;
    CHECK(zf_tokenizer_vocab_size(t) == 512);
    CHECK(zf_tokenizer_bos(t) == 1 && zf_tokenizer_eos(t) == 2);
    const char *ts[] = {"data/raw/tinystories_sample.txt", "data/raw/TinyStories-valid-excerpt30k.txt"};
    check_fixture(t, "data/tinystories.tok512.bin", ts, 2);
    const char *wt[] = {"data/raw/wiki.test.raw"}, *wv[] = {"data/raw/wiki.valid.tokens"};
    const char *pt[] = {"data/raw/ptb.test.txt"}, *pv[] = {"data/raw/ptb.valid.txt"};
    check_fixture(t, "data/wikitext2-test.tok512.bin", wt, 1);
    check_fixture(t, "data/wikitext2-valid.tok512.bin", wv, 1);
    check_fixture(t, "data/ptb-test.tok512.bin", pt, 1);
    check_fixture(t, "data/ptb-valid.tok512.bin", pv, 1);

    /* the heap merge against run.c's quadratic scan: random text of ASCII, UTF-8 and stray bytes, and the hard cases */
    ref_vocab rv;
    ref_load(zt_fixture("stories260k/tokenizer.bin"), &rv);
    CHECK(rv.n == 512);
    static const char *alphabet[] = {"a", "e", "t", "h", " ", "  ", "\n", "\r\n", "the", "Once", ".", ",", "é", "中",
                                     "😀", "\xff", "\x80", "\xc3", "'", "Lily", "0", "12"};
    zt_rng r;
    zt_rng_seed(&r, 7);
    int *ref_ids = malloc(sizeof(int) * 40000);
    for (int trial = 0; trial < 60; trial++) {
        char text[3000] = "";
        size_t len = 0;
        int words = 1 + (int)(zt_rng_uniform(&r) * 300);
        for (int w = 0; w < words; w++) {
            const char *p = alphabet[zt_rng_u64(&r) % (sizeof alphabet / sizeof *alphabet)];
            if (len + strlen(p) + 1 >= sizeof text) break;
            strcpy(text + len, p);
            len += strlen(p);
        }
        size_t n_ref = ref_encode(&rv, text, ref_ids);
        zf_token_ids ids = {0};
        CHECK_OK(zf_tokenizer_encode(t, text, len, true, &ids));
        bool same = ids.count == n_ref;
        for (size_t i = 0; same && i < n_ref; i++) same = ids.ids[i] == ref_ids[i];
        CHECK_MSG(same, "random text %d: %zu ids, reference %zu", trial, ids.count, n_ref);
        zf_token_ids_free(&ids);
    }
    free(ref_ids);
    for (int i = 0; i < rv.n; i++) free(rv.vocab[i]);
    free(rv.vocab);
    free(rv.scores);
    /* an empty text is BOS alone; an id outside the vocabulary does not decode */
    zf_token_ids ids = {0};
    CHECK_OK(zf_tokenizer_encode(t, "", 0, true, &ids));
    CHECK(ids.count == 1 && ids.ids[0] == 1);
    int32_t bad[] = {1, 512};
    char *text;
    size_t len;
    CHECK(zf_tokenizer_decode(t, bad, 2, true, &text, &len) == ZF_ERR_INPUT);
    CHECK(strstr(zf_last_error(), "512") != NULL);
    zf_token_ids_free(&ids);
    zf_tokenizer_free(t);
    /* a tokenizer.bin cut short, or with a length past max_token_length, is refused naming the entry */
    size_t n;
    char *bin = slurp(zt_fixture("stories260k/tokenizer.bin"), &n);
    const char *cut = write_text("cut.bin", bin, n - 3);
    zf_tokenizer *bad_t = (zf_tokenizer *)0x1;
    CHECK(zf_tokenizer_load(cut, &bad_t) == ZF_ERR_INPUT && bad_t == NULL);
    CHECK_MSG(strstr(zf_last_error(), "cut.bin") && strstr(zf_last_error(), "entry 511"), "%s", zf_last_error());
    int32_t huge = 1 << 20;
    memcpy(bin + 4 + 4, &huge, 4); /* entry 0's length */
    const char *longp = write_text("long.bin", bin, n);
    CHECK(zf_tokenizer_load(longp, &bad_t) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "entry 0") && strstr(zf_last_error(), "length 1048576"), "%s", zf_last_error());
    free(bin);
}

/* The merge engine against the plain loop: repeatedly merge the adjacent pair of lowest prio, leftmost on ties, over
 * random merge tables (with repeated prios, so that ties happen) and random words. */
static void test_merge_engine(void)
{
    zt_rng r;
    zt_rng_seed(&r, 11);
    for (int table = 0; table < 20; table++) {
        zf_pairmap m;
        CHECK_OK(zf_pairmap_init(&m, 64));
        int next_id = 6; /* ids 0..5 are the letters */
        for (int k = 0; k < 60; k++) {
            int32_t a = (int32_t)(zt_rng_u64(&r) % (uint64_t)next_id), b = (int32_t)(zt_rng_u64(&r) % (uint64_t)next_id);
            double prio = (double)(zt_rng_u64(&r) % 20);
            if (!zf_pairmap_get(&m, a, b)) CHECK_OK(zf_pairmap_put(&m, a, b, prio, next_id++));
        }
        zf_bpe_work w = {0};
        for (int trial = 0; trial < 20; trial++) {
            int32_t ids[200], ref[200];
            size_t n = 1 + zt_rng_u64(&r) % 200, nref = n;
            for (size_t i = 0; i < n; i++) ids[i] = ref[i] = (int32_t)(zt_rng_u64(&r) % 6);
            for (;;) {
                const zf_pair_entry *best = NULL;
                size_t at = 0;
                for (size_t i = 0; i + 1 < nref; i++) {
                    const zf_pair_entry *e = zf_pairmap_get(&m, ref[i], ref[i + 1]);
                    if (e && (!best || e->prio < best->prio)) {
                        best = e;
                        at = i;
                    }
                }
                if (!best) break;
                ref[at] = best->id;
                memmove(ref + at + 1, ref + at + 2, (nref - at - 2) * sizeof *ref);
                nref--;
            }
            CHECK_OK(zf_bpe_merge(&m, &w, ids, &n));
            CHECK_MSG(n == nref && !memcmp(ids, ref, n * sizeof *ids), "table %d trial %d: %zu symbols, reference %zu",
                      table, trial, n, nref);
        }
        zf_bpe_work_free(&w);
        zf_pairmap_free(&m);
    }
}

/* ---- a tokenizer.json by hand ---- */

/* Byte-level: vocab of the characters a, b, c, space (Ġ) and merges "a b" (rank 0), "Ġ a" (1), "ab c" (2),
 * "Ġa b" (3); BOS <s> by the template. */
static const char BYTE_LEVEL_JSON[] =
    "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 9, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"
    " {\"id\": 10, \"content\": \"<|x|>\", \"special\": false, \"normalized\": false}],"
    " \"normalizer\": null,"
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true},"
    " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", "
    "\"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {\"<s>\": {\"id\": "
    "\"<s>\", \"ids\": [9], \"tokens\": [\"<s>\"]}}},"
    " \"decoder\": {\"type\": \"ByteLevel\"},"
    " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"ab\": 4, \"\\u0120a\": 5,"
    " \"abc\": 6, \"\\u0120ab\": 7, \"!\": 8}, \"merges\": [\"a b\", \"\\u0120 a\", \"ab c\", \"\\u0120a b\"]}}";

static void test_byte_level_json(void)
{
    const char *path = write_text("tokenizer.json", BYTE_LEVEL_JSON, strlen(BYTE_LEVEL_JSON));
    zf_tokenizer *t;
    CHECK_OK(zf_tokenizer_load(path, &t));
    if (!t) return;
    CHECK(zf_tokenizer_vocab_size(t) == 11);
    CHECK(zf_tokenizer_bos(t) == 9);
    /* "abc ab!<|x|>ca": words "abc", " ab", "!", then the added token, then "ca".
     * abc: a+b (rank 0) -> ab, ab+c (rank 2) -> abc = 6; " ab": Ġ+a (1) and a+b (0): a+b first -> Ġ ab, which has
     * no merge ("Ġ ab" is not listed; "Ġa b" needs Ġa) -> 3 4; "!" -> 8; ca -> 2 0 */
    const char text[] = "abc ab!<|x|>ca";
    zf_token_ids ids = {0};
    CHECK_OK(zf_tokenizer_encode(t, text, strlen(text), true, &ids));
    int32_t want[] = {9, 6, 3, 4, 8, 10, 2, 0};
    CHECK_MSG(ids.count == 8 && !memcmp(ids.ids, want, sizeof want), "got %zu ids", ids.count);
    /* " a b": Ġ+a (rank 1) -> Ġa; then "Ġa b"? the words are " a" and " b" (GPT-2 split), so Ġa = 5 and Ġ b = 3 1 */
    zf_token_ids ids2 = {0};
    CHECK_OK(zf_tokenizer_encode(t, " a b", 4, false, &ids2));
    int32_t want2[] = {5, 3, 1};
    CHECK_MSG(ids2.count == 3 && !memcmp(ids2.ids, want2, sizeof want2), "got %zu ids", ids2.count);
    char *back;
    size_t len;
    CHECK_OK(zf_tokenizer_decode(t, ids.ids, ids.count, true, &back, &len));
    CHECK_MSG(len == strlen(text) && !memcmp(back, text, len), "decoded '%s'", back);
    free(back);
    /* invalid UTF-8 reads as U+FFFD, which this vocabulary lacks (no unk): nothing comes out for it */
    zf_token_ids ids3 = {0};
    CHECK_OK(zf_tokenizer_encode(t, "a\xff", 2, false, &ids3));
    CHECK(ids3.count == 1 && ids3.ids[0] == 0);
    zf_token_ids_free(&ids);
    zf_token_ids_free(&ids2);
    zf_token_ids_free(&ids3);
    zf_tokenizer_free(t);
}

/* A tokenizer.json with `from` replaced by `to` must be refused with a message holding each of the words. */
static void expect_refused(const char *from, const char *to, const char *w1, const char *w2)
{
    char json[sizeof BYTE_LEVEL_JSON + 256];
    const char *at = strstr(BYTE_LEVEL_JSON, from);
    CHECK_MSG(at != NULL, "'%s' not in the test file", from);
    if (!at) return;
    int head = (int)(at - BYTE_LEVEL_JSON);
    snprintf(json, sizeof json, "%.*s%s%s", head, BYTE_LEVEL_JSON, to, at + strlen(from));
    const char *path = write_text("bad-tokenizer.json", json, strlen(json));
    zf_tokenizer *t = (zf_tokenizer *)0x1;
    zf_status s = zf_tokenizer_load(path, &t);
    const char *m = zf_last_error();
    if (getenv("ZT_VERBOSE")) printf("  refused: %s\n", m);
    CHECK_MSG(s == ZF_ERR_INPUT && t == NULL, "'%s' -> '%s' was accepted", from, to);
    CHECK_MSG(strstr(m, "bad-tokenizer.json") != NULL, "message does not name the file: %s", m);
    CHECK_MSG(strstr(m, w1) != NULL, "message lacks '%s': %s", w1, m);
    if (w2) CHECK_MSG(strstr(m, w2) != NULL, "message lacks '%s': %s", w2, m);
}

static void test_malformed_json(void)
{
    expect_refused("\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "model.type", "WordPiece");
    expect_refused(", \"merges\": [\"a b\", \"\\u0120 a\", \"ab c\", \"\\u0120a b\"]", "", "model.merges", "missing");
    expect_refused("\"ab c\"", "\"ab z\"", "model.merges[2]", "'z' is not in model.vocab");
    expect_refused("\"a b\", \"\\u0120 a\"", "\"ab\", \"\\u0120 a\"", "model.merges[0]", "no space");
    expect_refused("\"c\": 2", "\"c\\udc00\": 2", "not valid JSON", NULL); /* a lone surrogate */
    expect_refused("\"normalizer\": null", "\"normalizer\": {\"type\": \"BertNormalizer\"}", "normalizer.type",
                   "BertNormalizer");
    expect_refused("\"type\": \"ByteLevel\", \"add_prefix_space\"", "\"type\": \"Whitespace\", \"add_prefix_space\"",
                   "pre_tokenizer.type", "Whitespace");
    expect_refused("\"ids\": [9]", "\"ids\": [99]", "special_tokens", "ids");
    expect_refused("{\"version\"", "[{\"version\"", "not valid JSON", NULL);
    /* bad UTF-8 in the vocabulary, as raw bytes in the file */
    char json[sizeof BYTE_LEVEL_JSON];
    strcpy(json, BYTE_LEVEL_JSON);
    char *c = strstr(json, "\"c\": 2");
    c[1] = (char)0xC3; /* a lead byte followed by '"' */
    const char *path = write_text("bad-utf8.json", json, strlen(json));
    zf_tokenizer *t;
    zf_status s = zf_tokenizer_load(path, &t);
    CHECK(s == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "model.vocab") && strstr(zf_last_error(), "UTF-8"), "%s", zf_last_error());
}

/* ---- text sources ---- */

static void test_textsrc(void)
{
    const char jsonl[] = "{\"text\": \"first doc\", \"id\": 1}\n\n{\"text\": \"second\\ndoc\"}\n";
    const char *p = write_text("docs.jsonl", jsonl, strlen(jsonl));
    zf_documents d = {0};
    CHECK_OK(zf_textsrc_read(p, NULL, &d));
    CHECK(d.count == 2 && d.docs[0].len == 9 && !strcmp(d.docs[1].text, "second\ndoc"));
    /* the same lines gzip-compressed */
    char gz[1024];
    snprintf(gz, sizeof gz, "%s/docs.jsonl.gz", zt_tmpdir());
    gzFile g = gzopen(gz, "wb");
    gzwrite(g, jsonl, (unsigned)strlen(jsonl));
    gzclose(g);
    CHECK_OK(zf_textsrc_read(gz, "text", &d));
    CHECK(d.count == 4 && !strcmp(d.docs[3].text, "second\ndoc"));
    CHECK_OK(zf_documents_join(&d, "\n\n"));
    CHECK(d.count == 1 && !strcmp(d.docs[0].text, "first doc\n\nsecond\ndoc\n\nfirst doc\n\nsecond\ndoc"));
    zf_documents_free(&d);
    /* a line without the field is refused, naming the file, the line and the field */
    const char bad[] = "{\"text\": \"ok\"}\n{\"body\": \"x\"}\n";
    p = write_text("bad.jsonl", bad, strlen(bad));
    CHECK(zf_textsrc_read(p, NULL, &d) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "bad.jsonl:2") && strstr(zf_last_error(), "\"text\""), "%s", zf_last_error());
    zf_documents_free(&d);
    CHECK(zf_textsrc_read("/nonexistent/file.txt", NULL, &d) == ZF_ERR_INPUT);
    /* a plain text file is one document, byte for byte */
    p = write_text("plain.txt", "a\r\nb\n", 5);
    CHECK_OK(zf_textsrc_read(p, NULL, &d));
    CHECK(d.count == 1 && d.docs[0].len == 5 && !memcmp(d.docs[0].text, "a\r\nb\n", 5));
    zf_documents_free(&d);
}

static void test_token_width(void)
{
    int32_t ids[] = {1, 2, 3};
    char p[1024];
    snprintf(p, sizeof p, "%s/w.bin", zt_tmpdir());
    zf_tokens t;
    CHECK_OK(zf_tokens_write_vocab(p, ids, 3, 65536));
    CHECK_OK(zf_tokens_read(p, 0, &t));
    size_t n;
    free(slurp(p, &n));
    CHECK(n == 1024 + 2 * 3 && t.count == 3);
    zf_tokens_free(&t);
    CHECK_OK(zf_tokens_write_vocab(p, ids, 3, 128256)); /* a vocabulary past uint16: uint32 whatever the ids */
    CHECK_OK(zf_tokens_read(p, 0, &t));
    free(slurp(p, &n));
    CHECK(n == 1024 + 4 * 3 && t.count == 3 && t.ids[2] == 3);
    zf_tokens_free(&t);
}

/* true when needle[0, n) occurs in hay[0, m) */
static bool contains(const int32_t *hay, size_t m, const int32_t *needle, size_t n)
{
    for (size_t i = 0; i + n <= m; i++)
        if (!memcmp(hay + i, needle, n * sizeof *hay)) return true;
    return false;
}

static void test_presets(void)
{
    zf_tokenizer *t;
    CHECK_OK(zf_tokenizer_load(zt_fixture("stories260k/tokenizer.bin"), &t));
    if (!t) return;
    /* three documents of different lengths, as JSON Lines with both field names */
    const char *docs[] = {"Once upon a time there was a little girl named Lily who liked to play outside.",
                          "The end.",
                          "Tom had a big red ball. He threw it to his dog, and the dog ran after it very fast."};
    char jsonl[1024] = "";
    for (int i = 0; i < 3; i++)
        snprintf(jsonl + strlen(jsonl), sizeof jsonl - strlen(jsonl), "{\"text\": \"%s\", \"sentence\": \"%s\"}\n",
                 docs[i], docs[i]);
    const char *path = write_text("docs3.jsonl", jsonl, strlen(jsonl));
    char spec[1200];
    zf_text_use eval = {false, 8, 0, 0};
    bool in_order;
    /* wikitext2 / ptb: one BOS, the documents joined */
    const char *joins[] = {"wikitext2", "\n\n", "ptb", " ", "c4", " "};
    for (int k = 0; k < 3; k++) {
        char joined[1024] = "";
        for (int i = 0; i < 3; i++) snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s",
                                             i ? joins[2 * k + 1] : "", docs[i]);
        zf_token_ids want = {0}, got = {0};
        CHECK_OK(zf_tokenizer_encode(t, joined, strlen(joined), true, &want));
        snprintf(spec, sizeof spec, "%s:%s", joins[2 * k], path);
        CHECK_OK(zf_text_tokens(spec, t, &eval, &got, &in_order));
        size_t n = want.count;
        if (k == 2 && n > 256 * 8) n = 256 * 8; /* c4: 256 windows at most */
        CHECK_MSG(got.count == n && !memcmp(got.ids, want.ids, n * sizeof *got.ids) && !in_order, "%s: %zu ids, want %zu",
                  joins[2 * k], got.count, n);
        zf_token_ids_free(&want);
        zf_token_ids_free(&got);
    }
    /* plain: each document with its BOS */
    zf_token_ids got = {0};
    CHECK_OK(zf_text_tokens(path, t, &eval, &got, &in_order));
    size_t bos = 0;
    for (size_t i = 0; i < got.count; i++) bos += got.ids[i] == 1;
    CHECK(bos == 3 && got.ids[0] == 1);
    zf_token_ids_free(&got);
    /* c4 calibration: windows of seq tokens back to back, each a slice of one document longer than a window */
    zf_token_ids doc[3] = {{0}};
    for (int i = 0; i < 3; i++) CHECK_OK(zf_tokenizer_encode(t, docs[i], strlen(docs[i]), true, &doc[i]));
    int64_t seq = 12;
    CHECK((int64_t)doc[1].count <= seq); /* "The end." is too short: never drawn */
    zf_text_use cal = {true, seq, 20, 5};
    snprintf(spec, sizeof spec, "c4:%s", path);
    zf_token_ids a = {0}, b = {0}, c = {0};
    CHECK_OK(zf_text_tokens(spec, t, &cal, &a, &in_order));
    CHECK(in_order && a.count == 20 * (size_t)seq);
    int from0 = 0, from2 = 0;
    for (int w = 0; w < 20; w++) {
        bool in0 = contains(doc[0].ids, doc[0].count, a.ids + w * seq, (size_t)seq);
        bool in2 = contains(doc[2].ids, doc[2].count, a.ids + w * seq, (size_t)seq);
        CHECK_MSG(in0 || in2, "window %d is not a slice of a long document", w);
        from0 += in0;
        from2 += in2;
    }
    CHECK(from0 > 0 && from2 > 0); /* 20 draws between two documents: both come up */
    CHECK_OK(zf_text_tokens(spec, t, &cal, &b, &in_order));
    CHECK(b.count == a.count && !memcmp(a.ids, b.ids, a.count * sizeof *a.ids)); /* seeded */
    cal.seed = 6;
    CHECK_OK(zf_text_tokens(spec, t, &cal, &c, &in_order));
    CHECK(c.count == a.count && memcmp(a.ids, c.ids, a.count * sizeof *a.ids));
    /* a window longer than every document is refused */
    zf_token_ids d = {0};
    cal.seq = 1000;
    CHECK(zf_text_tokens(spec, t, &cal, &d, &in_order) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "longer than a window of 1000"), "%s", zf_last_error());
    /* an unknown preset names itself */
    snprintf(spec, sizeof spec, "wiki2:%s", "x.jsonl");
    CHECK(zf_text_tokens(spec, t, &eval, &d, &in_order) == ZF_ERR_INPUT);
    CHECK_MSG(strstr(zf_last_error(), "unknown preset 'wiki2'"), "%s", zf_last_error());
    for (int i = 0; i < 3; i++) zf_token_ids_free(&doc[i]);
    zf_token_ids_free(&a);
    zf_token_ids_free(&b);
    zf_token_ids_free(&c);
    zf_token_ids_free(&d);
    zf_tokenizer_free(t);
}

int main(void)
{
    test_llama2c();
    test_merge_engine();
    test_byte_level_json();
    test_malformed_json();
    test_textsrc();
    test_token_width();
    test_presets();
    return zt_finish("test_tokenizer");
}
