/* Loading a Hugging Face tokenizer.json (and tokenizer_config.json): vocabulary, merges, added tokens, pipeline. */
#include "common/tokenizer_hf.h"
#include "common/fsutil.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_BYTES ((size_t)1 << 30)

/* Oniguruma's \s (White_Space) as a PCRE2 class body: PCRE2's own \s leaves out U+0085 */
#define ONIG_SPACE_CLASS "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* GPT-2's pre-tokenizer pattern (ByteLevel with use_regex) */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    const char *path; /* for messages */
    zf_tokenizer *t;
    struct zf_hf_tokenizer *hf;
} loader;

uint32_t zf_hf_byte_char(unsigned byte)
{
    if ((byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF)) return byte;
    /* the others, in byte order, from U+0100 */
    uint32_t n = 0;
    for (unsigned b = 0; b < byte; b++)
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) n++;
    return 256 + n;
}

bool zf_hf_is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static bool valid_utf8(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        bool ok;
        size_t k = zf_utf8_scan((const unsigned char *)s + i, n - i, &ok);
        if (!ok) return false;
        i += k;
    }
    return true;
}

/* A string member; NULL (after recording why) when absent or not a string, unless optional. */
static const char *get_str(loader *L, const cJSON *obj, const char *field, const char *where, bool optional)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (cJSON_IsString(v)) return v->valuestring;
    if (!optional || (v && !cJSON_IsNull(v)))
        zf_fail(ZF_ERR_INPUT, "%s: %s.%s: expected a string", L->path, where, field);
    return NULL;
}

static bool get_bool(const cJSON *obj, const char *field, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, field);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* Oniguruma's pattern as PCRE2 reads it the same way: \s and \S spelled as White_Space classes. */
static zf_status compile_regex(loader *L, const char *pattern, bool literal, const char *where, pcre2_code **out)
{
    zf_strbuf b = {0};
    zf_status s = zf_strbuf_put(&b, "", 0);
    if (literal) s = zf_strbuf_put(&b, pattern, strlen(pattern));
    else {
        int in_class = 0;
        for (const char *p = pattern; *p && s == ZF_OK; p++) {
            if (p[0] == '\\' && p[1]) {
                if (p[1] == 's') s = zf_strbuf_put(&b, in_class ? ONIG_SPACE_CLASS : "[" ONIG_SPACE_CLASS "]",
                                                   strlen(ONIG_SPACE_CLASS) + (in_class ? 0 : 2));
                else if (p[1] == 'S' && !in_class) s = zf_strbuf_put(&b, "[^" ONIG_SPACE_CLASS "]",
                                                                      strlen(ONIG_SPACE_CLASS) + 3);
                else s = zf_strbuf_put(&b, p, 2);
                p++;
                continue;
            }
            if (*p == '[') in_class++;
            else if (*p == ']' && in_class) in_class--;
            s = zf_strbuf_put(&b, p, 1);
        }
    }
    if (s != ZF_OK) {
        zf_strbuf_free(&b);
        return s;
    }
    int err;
    PCRE2_SIZE at;
    *out = pcre2_compile((PCRE2_SPTR)b.s, b.len, PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0), &err, &at,
                         NULL);
    zf_strbuf_free(&b);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return zf_fail(ZF_ERR_INPUT, "%s: %s: the pattern '%s' does not compile: %s at offset %zu", L->path, where,
                       pattern, (const char *)msg, (size_t)at);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* without JIT (not built for this CPU) the interpreter runs */
    return ZF_OK;
}

/* {"String": s} or {"Regex": r} */
static zf_status get_pattern(loader *L, const cJSON *obj, const char *where, const char **text, bool *regex)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "pattern");
    const cJSON *str = cJSON_GetObjectItemCaseSensitive(p, "String"), *re = cJSON_GetObjectItemCaseSensitive(p, "Regex");
    if (cJSON_IsString(str)) {
        *text = str->valuestring;
        *regex = false;
    } else if (cJSON_IsString(re)) {
        *text = re->valuestring;
        *regex = true;
    } else return zf_fail(ZF_ERR_INPUT, "%s: %s.pattern: expected {\"String\": ...} or {\"Regex\": ...}", L->path, where);
    return ZF_OK;
}

static zf_status dup_text(const char *s, char **out, size_t *len)
{
    *len = strlen(s);
    *out = zf_strdup(s, "tokenizer.json text");
    return *out ? ZF_OK : ZF_ERR_NOMEM;
}

typedef zf_status (*parse_fn)(loader *L, const cJSON *n, const char *where);

/* {"type": "Sequence", field: [...]}: each element parsed by fn, named where.field[i] in messages. */
static zf_status parse_sequence(loader *L, const cJSON *n, const char *field, const char *where, parse_fn fn)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, field), *e;
    if (!cJSON_IsArray(list)) return zf_fail(ZF_ERR_INPUT, "%s: %s.%s: expected a list", L->path, where, field);
    int i = 0;
    cJSON_ArrayForEach(e, list)
    {
        char w[256];
        snprintf(w, sizeof w, "%s.%s[%d]", where, field, i++);
        ZF_TRY(fn(L, e, w));
    }
    return ZF_OK;
}

static zf_status parse_normalizer(loader *L, const cJSON *n, const char *where)
{
    if (!n || cJSON_IsNull(n)) return ZF_OK;
    const char *type = get_str(L, n, "type", where, false);
    if (!type) return ZF_ERR_INPUT;
    if (!strcmp(type, "Sequence")) return parse_sequence(L, n, "normalizers", where, parse_normalizer);
    if (L->hf->n_norm == ZF_HF_MAX_STEPS)
        return zf_fail(ZF_ERR_INPUT, "%s: %s: more than %d normalizers", L->path, where, ZF_HF_MAX_STEPS);
    zf_hf_norm *d = &L->hf->norm[L->hf->n_norm++]; /* counted now, so that a failure below frees it */
    memset(d, 0, sizeof *d);
    if (!strcmp(type, "Prepend")) {
        const char *p = get_str(L, n, "prepend", where, false);
        if (!p) return ZF_ERR_INPUT;
        d->kind = HF_NORM_PREPEND;
        ZF_TRY(dup_text(p, &d->text, &d->text_len));
    } else if (!strcmp(type, "Replace")) {
        const char *pat = NULL, *content = get_str(L, n, "content", where, false);
        bool regex = false;
        if (!content) return ZF_ERR_INPUT;
        ZF_TRY(get_pattern(L, n, where, &pat, &regex));
        d->kind = HF_NORM_REPLACE;
        if (regex) ZF_TRY(compile_regex(L, pat, false, where, &d->re));
        else {
            if (!*pat) return zf_fail(ZF_ERR_INPUT, "%s: %s.pattern: the string is empty", L->path, where);
            ZF_TRY(dup_text(pat, &d->text, &d->text_len));
        }
        ZF_TRY(dup_text(content, &d->content, &d->content_len));
    } else if (!strcmp(type, "NFC")) d->kind = HF_NORM_NFC;
    else if (!strcmp(type, "NFD")) d->kind = HF_NORM_NFD;
    else if (!strcmp(type, "NFKC")) d->kind = HF_NORM_NFKC;
    else if (!strcmp(type, "NFKD")) d->kind = HF_NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) d->kind = HF_NORM_LOWERCASE;
    else
        return zf_fail(ZF_ERR_INPUT, "%s: %s.type: '%s' is not supported (expected Sequence, Prepend, Replace, NFC, "
                       "NFD, NFKC, NFKD or Lowercase)", L->path, where, type);
    return ZF_OK;
}

static zf_status parse_prepend_scheme(loader *L, const cJSON *n, const char *where, zf_hf_prepend_scheme *out)
{
    const char *scheme = get_str(L, n, "prepend_scheme", where, true);
    if (!scheme) {
        if (zf_last_error()[0] && cJSON_GetObjectItemCaseSensitive(n, "prepend_scheme")) return ZF_ERR_INPUT;
        *out = get_bool(n, "add_prefix_space", true) ? HF_PREPEND_ALWAYS : HF_PREPEND_NEVER; /* older files */
    } else if (!strcmp(scheme, "always")) *out = HF_PREPEND_ALWAYS;
    else if (!strcmp(scheme, "first")) *out = HF_PREPEND_FIRST;
    else if (!strcmp(scheme, "never")) *out = HF_PREPEND_NEVER;
    else return zf_fail(ZF_ERR_INPUT, "%s: %s.prepend_scheme: '%s', expected always, first or never", L->path, where,
                        scheme);
    return ZF_OK;
}

static zf_status parse_replacement(loader *L, const cJSON *n, const char *where, char *out, size_t *len)
{
    const char *r = get_str(L, n, "replacement", where, true);
    if (!r) r = "\xe2\x96\x81"; /* ▁ */
    bool ok;
    *len = strlen(r);
    if (!*len || *len >= 8 || zf_utf8_scan((const unsigned char *)r, *len, &ok) != *len || !ok)
        return zf_fail(ZF_ERR_INPUT, "%s: %s.replacement: expected one character", L->path, where);
    memcpy(out, r, *len + 1);
    return ZF_OK;
}

static zf_status parse_pre(loader *L, const cJSON *n, const char *where)
{
    if (!n || cJSON_IsNull(n)) return ZF_OK;
    const char *type = get_str(L, n, "type", where, false);
    if (!type) return ZF_ERR_INPUT;
    if (!strcmp(type, "Sequence")) return parse_sequence(L, n, "pretokenizers", where, parse_pre);
    if (L->hf->byte_level)
        return zf_fail(ZF_ERR_INPUT, "%s: %s: a pre-tokenizer after ByteLevel is not supported", L->path, where);
    if (L->hf->n_pre == ZF_HF_MAX_STEPS)
        return zf_fail(ZF_ERR_INPUT, "%s: %s: more than %d pre-tokenizers", L->path, where, ZF_HF_MAX_STEPS);
    zf_hf_pre *d = &L->hf->pre[L->hf->n_pre++];
    memset(d, 0, sizeof *d);
    if (!strcmp(type, "Split")) {
        const char *pat = NULL, *behavior = get_str(L, n, "behavior", where, false);
        bool regex = false;
        if (!behavior) return ZF_ERR_INPUT;
        ZF_TRY(get_pattern(L, n, where, &pat, &regex));
        d->kind = HF_PRE_SPLIT;
        if (!strcmp(behavior, "Isolated")) d->behavior = HF_SPLIT_ISOLATED;
        else if (!strcmp(behavior, "Removed")) d->behavior = HF_SPLIT_REMOVED;
        else return zf_fail(ZF_ERR_INPUT, "%s: %s.behavior: '%s' is not supported (expected Isolated or Removed)",
                            L->path, where, behavior);
        d->invert = get_bool(n, "invert", false);
        ZF_TRY(compile_regex(L, pat, !regex, where, &d->re));
    } else if (!strcmp(type, "ByteLevel")) {
        d->kind = HF_PRE_BYTELEVEL;
        d->add_prefix_space = get_bool(n, "add_prefix_space", false);
        if (get_bool(n, "use_regex", true)) ZF_TRY(compile_regex(L, GPT2_PATTERN, false, where, &d->re));
        L->hf->byte_level = true;
    } else if (!strcmp(type, "Metaspace")) {
        d->kind = HF_PRE_METASPACE;
        ZF_TRY(parse_replacement(L, n, where, d->replacement, &d->replacement_len));
        ZF_TRY(parse_prepend_scheme(L, n, where, &d->prepend));
        d->split = get_bool(n, "split", true);
    } else if (!strcmp(type, "Digits")) {
        d->kind = HF_PRE_DIGITS;
        d->individual_digits = get_bool(n, "individual_digits", false);
        ZF_TRY(compile_regex(L, d->individual_digits ? "\\p{N}" : "\\p{N}+", false, where, &d->re));
    } else
        return zf_fail(ZF_ERR_INPUT, "%s: %s.type: '%s' is not supported (expected Sequence, Split, ByteLevel, "
                       "Metaspace or Digits)", L->path, where, type);
    return ZF_OK;
}

static zf_status parse_decoder(loader *L, const cJSON *n, const char *where)
{
    if (!n || cJSON_IsNull(n)) return ZF_OK;
    const char *type = get_str(L, n, "type", where, false);
    if (!type) return ZF_ERR_INPUT;
    if (!strcmp(type, "Sequence")) return parse_sequence(L, n, "decoders", where, parse_decoder);
    if (L->hf->n_dec == ZF_HF_MAX_STEPS)
        return zf_fail(ZF_ERR_INPUT, "%s: %s: more than %d decoders", L->path, where, ZF_HF_MAX_STEPS);
    zf_hf_dec *d = &L->hf->dec[L->hf->n_dec++];
    memset(d, 0, sizeof *d);
    if (!strcmp(type, "ByteLevel")) d->kind = HF_DEC_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback")) d->kind = HF_DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse")) d->kind = HF_DEC_FUSE;
    else if (!strcmp(type, "Replace")) {
        const char *pat = NULL, *content = get_str(L, n, "content", where, false);
        bool regex = false;
        if (!content) return ZF_ERR_INPUT;
        ZF_TRY(get_pattern(L, n, where, &pat, &regex));
        if (regex || !*pat)
            return zf_fail(ZF_ERR_INPUT, "%s: %s.pattern: expected a non-empty String", L->path, where);
        d->kind = HF_DEC_REPLACE;
        ZF_TRY(dup_text(pat, &d->pattern, &d->pattern_len));
        ZF_TRY(dup_text(content, &d->content, &d->content_len));
    } else if (!strcmp(type, "Strip")) {
        const char *content = get_str(L, n, "content", where, false);
        if (!content) return ZF_ERR_INPUT;
        d->kind = HF_DEC_STRIP;
        ZF_TRY(dup_text(content, &d->content, &d->content_len));
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(n, "start"), *b = cJSON_GetObjectItemCaseSensitive(n, "stop");
        d->start = cJSON_IsNumber(a) ? a->valueint : 0;
        d->stop = cJSON_IsNumber(b) ? b->valueint : 0;
    } else if (!strcmp(type, "Metaspace")) {
        zf_hf_prepend_scheme scheme;
        char repl[8];
        size_t repl_len;
        d->kind = HF_DEC_METASPACE;
        ZF_TRY(parse_replacement(L, n, where, repl, &repl_len));
        ZF_TRY(dup_text(repl, &d->pattern, &d->pattern_len));
        ZF_TRY(parse_prepend_scheme(L, n, where, &scheme));
        d->prepend = scheme != HF_PREPEND_NEVER;
    } else
        return zf_fail(ZF_ERR_INPUT, "%s: %s.type: '%s' is not supported (expected Sequence, ByteLevel, Replace, "
                       "ByteFallback, Fuse, Strip or Metaspace)", L->path, where, type);
    return ZF_OK;
}

/* model.vocab and the added tokens give the ids; model.merges the merge table. */
static zf_status parse_model(loader *L, const cJSON *root)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) return zf_fail(ZF_ERR_INPUT, "%s: model: expected an object", L->path);
    const char *type = get_str(L, model, "type", "model", true);
    if (!type && zf_last_error()[0] && cJSON_GetObjectItemCaseSensitive(model, "type")) return ZF_ERR_INPUT;
    if (type && strcmp(type, "BPE"))
        return zf_fail(ZF_ERR_INPUT, "%s: model.type: '%s' is not supported (expected BPE)", L->path, type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab)) return zf_fail(ZF_ERR_INPUT, "%s: model.vocab: expected an object of token: id", L->path);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return zf_fail(ZF_ERR_INPUT, "%s: added_tokens: expected a list", L->path);
    /* ids: the largest of the vocabulary's and the added tokens' */
    double max_id = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= (1 << 30) || e->valuedouble != (int)e->valuedouble)
            return zf_fail(ZF_ERR_INPUT, "%s: model.vocab[\"%s\"]: expected an id in [0, 2^30)", L->path, e->string);
        if (e->valuedouble > max_id) max_id = e->valuedouble;
    }
    int i = 0;
    cJSON_ArrayForEach(e, added)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 30))
            return zf_fail(ZF_ERR_INPUT, "%s: added_tokens[%d].id: expected an id in [0, 2^30)", L->path, i);
        if (id->valuedouble > max_id) max_id = id->valuedouble;
        i++;
    }
    if (max_id < 0) return zf_fail(ZF_ERR_INPUT, "%s: model.vocab: empty", L->path);
    zf_tokenizer *t = L->t;
    ZF_TRY(zf_tok_alloc_pieces(t, (int32_t)max_id + 1));
    cJSON_ArrayForEach(e, vocab)
    {
        size_t len = strlen(e->string);
        if (!len || !valid_utf8(e->string, len))
            return zf_fail(ZF_ERR_INPUT, "%s: model.vocab: the token of id %d is %s", L->path, e->valueint,
                           len ? "not valid UTF-8" : "empty");
        if (t->pieces[e->valueint].s)
            return zf_fail(ZF_ERR_INPUT, "%s: model.vocab: id %d is given to two tokens", L->path, e->valueint);
        ZF_TRY(zf_tok_set_piece(t, e->valueint, e->string, len));
    }
    struct zf_hf_tokenizer *hf = L->hf;
    hf->n_added = cJSON_GetArraySize(added);
    hf->added = zf_calloc((size_t)hf->n_added + 1, sizeof *hf->added, "added tokens");
    if (!hf->added) return ZF_ERR_NOMEM;
    i = 0;
    cJSON_ArrayForEach(e, added)
    {
        char w[64];
        snprintf(w, sizeof w, "added_tokens[%d]", i);
        const char *content = get_str(L, e, "content", w, false);
        if (!content) return ZF_ERR_INPUT;
        size_t len = strlen(content);
        if (!len || !valid_utf8(content, len))
            return zf_fail(ZF_ERR_INPUT, "%s: %s.content: expected non-empty UTF-8", L->path, w);
        if (get_bool(e, "single_word", false))
            return zf_fail(ZF_ERR_INPUT, "%s: %s.single_word: true is not supported", L->path, w);
        zf_hf_added *a = &hf->added[i++];
        a->id = cJSON_GetObjectItemCaseSensitive(e, "id")->valueint;
        a->special = get_bool(e, "special", false);
        a->normalized = get_bool(e, "normalized", !a->special);
        a->lstrip = get_bool(e, "lstrip", false);
        a->rstrip = get_bool(e, "rstrip", false);
        ZF_TRY(zf_tok_set_piece(t, a->id, content, len));
        t->special[a->id] = a->special;
    }
    ZF_TRY(zf_strmap_build(&t->map, t->pieces, t->n_pieces));

    hf->byte_fallback = get_bool(model, "byte_fallback", false);
    hf->fuse_unk = get_bool(model, "fuse_unk", false);
    hf->ignore_merges = get_bool(model, "ignore_merges", false);
    const char *unk = get_str(L, model, "unk_token", "model", true);
    if (!unk && zf_last_error()[0] && cJSON_GetObjectItemCaseSensitive(model, "unk_token")) return ZF_ERR_INPUT;
    hf->unk = unk ? zf_strmap_get(&t->map, unk, strlen(unk)) : -1;
    if (unk && hf->unk < 0)
        return zf_fail(ZF_ERR_INPUT, "%s: model.unk_token: '%s' is not in the vocabulary", L->path, unk);
    const char *prefix = get_str(L, model, "continuing_subword_prefix", "model", true);
    const char *suffix = get_str(L, model, "end_of_word_suffix", "model", true);
    if ((prefix && *prefix) || (suffix && *suffix))
        return zf_fail(ZF_ERR_INPUT, "%s: model.%s: '%s' is not supported (expected null or \"\")", L->path,
                       prefix && *prefix ? "continuing_subword_prefix" : "end_of_word_suffix",
                       prefix && *prefix ? prefix : suffix);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return zf_fail(ZF_ERR_INPUT, "%s: model.dropout: %g, expected null (zfold encodes deterministically)", L->path,
                       dropout->valuedouble);

    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsArray(merges))
        return zf_fail(ZF_ERR_INPUT, "%s: model.merges: %s, expected a list of \"a b\" strings or [a, b] pairs",
                       L->path, merges ? "not a list" : "missing");
    if (cJSON_GetArraySize(merges) >= (1 << 24)) /* ranks are kept as floats, exact below 2^24 */
        return zf_fail(ZF_ERR_INPUT, "%s: model.merges: %d merges, at most %d are supported", L->path,
                       cJSON_GetArraySize(merges), (1 << 24) - 1);
    ZF_TRY(zf_pairmap_init(&t->merges, (size_t)cJSON_GetArraySize(merges)));
    zf_strbuf joined = {0};
    zf_status s = ZF_OK;
    int rank = 0;
    cJSON_ArrayForEach(e, merges)
    {
        const char *a, *b;
        size_t alen, blen;
        if (cJSON_IsString(e)) {
            const char *sp = strchr(e->valuestring, ' ');
            if (!sp) {
                s = zf_fail(ZF_ERR_INPUT, "%s: model.merges[%d]: '%s' has no space between the two tokens", L->path,
                            rank, e->valuestring);
                break;
            }
            a = e->valuestring;
            alen = (size_t)(sp - a);
            b = sp + 1;
            const char *sp2 = strchr(b, ' ');
            blen = sp2 ? (size_t)(sp2 - b) : strlen(b);
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(e, 1))) {
            a = cJSON_GetArrayItem(e, 0)->valuestring;
            b = cJSON_GetArrayItem(e, 1)->valuestring;
            alen = strlen(a);
            blen = strlen(b);
        } else {
            s = zf_fail(ZF_ERR_INPUT, "%s: model.merges[%d]: expected \"a b\" or [a, b]", L->path, rank);
            break;
        }
        int32_t ia = zf_strmap_get(&t->map, a, alen), ib = zf_strmap_get(&t->map, b, blen);
        joined.len = 0;
        if ((s = zf_strbuf_put(&joined, a, alen)) != ZF_OK || (s = zf_strbuf_put(&joined, b, blen)) != ZF_OK) break;
        int32_t ij = zf_strmap_get(&t->map, joined.s, joined.len);
        if (ia < 0 || ib < 0 || ij < 0) {
            const char *what = ia < 0 ? a : ib < 0 ? b : joined.s;
            int what_len = (int)(ia < 0 ? alen : ib < 0 ? blen : joined.len);
            s = zf_fail(ZF_ERR_INPUT, "%s: model.merges[%d]: '%.*s' is not in model.vocab", L->path, rank, what_len,
                        what);
            break;
        }
        if ((s = zf_pairmap_put(&t->merges, ia, ib, rank, ij)) != ZF_OK) break;
        rank++;
    }
    zf_strbuf_free(&joined);
    return s;
}

/* Added-token index by first byte, longest first. */
static const zf_hf_added *sort_added; /* qsort has no context: the table being sorted */
static int cmp_added(const void *x, const void *y)
{
    const zf_hf_added *a = &sort_added[*(const int *)x], *b = &sort_added[*(const int *)y];
    return a->len != b->len ? (a->len < b->len ? 1 : -1) : (*(const int *)x - *(const int *)y);
}

static zf_status build_splitters(loader *L)
{
    struct zf_hf_tokenizer *hf = L->hf;
    zf_strbuf nb = {0};
    for (int i = 0; i < hf->n_added; i++) {
        zf_hf_added *a = &hf->added[i];
        const zf_piece *p = &L->t->pieces[a->id];
        bool norm = a->normalized && hf->n_norm > 0;
        if (norm) ZF_TRY(zf_hf_normalize(hf, p->s, p->len, &nb));
        const char *src = norm ? nb.s : p->s;
        size_t len = norm ? nb.len : p->len;
        a->content = zf_malloc(len + 1, "added token");
        if (!a->content) return ZF_ERR_NOMEM;
        memcpy(a->content, src, len);
        a->content[len] = 0;
        a->len = len;
        if (!len) continue;
        zf_hf_splitter *sp = norm ? &hf->norm_split : &hf->raw_split;
        unsigned first = (unsigned char)src[0];
        int *grown = realloc(sp->by_byte[first], (size_t)(sp->n[first] + 1) * sizeof *grown);
        if (!grown) return zf_fail(ZF_ERR_NOMEM, "out of memory for the added-token index");
        sp->by_byte[first] = grown;
        grown[sp->n[first]++] = i;
    }
    zf_strbuf_free(&nb);
    sort_added = hf->added;
    for (int k = 0; k < 2; k++) {
        zf_hf_splitter *sp = k ? &hf->norm_split : &hf->raw_split;
        for (int c = 0; c < 256; c++)
            if (sp->n[c] > 1) qsort(sp->by_byte[c], (size_t)sp->n[c], sizeof(int), cmp_added);
    }
    return ZF_OK;
}

static zf_status token_id(loader *L, const char *tok, const char *where, int32_t *id)
{
    *id = zf_strmap_get(&L->t->map, tok, strlen(tok));
    if (*id < 0) return zf_fail(ZF_ERR_INPUT, "%s: %s: '%s' is not in the vocabulary", L->path, where, tok);
    return ZF_OK;
}

static zf_status push_id(int32_t **v, int *n, int32_t id)
{
    int32_t *g = realloc(*v, (size_t)(*n + 1) * sizeof *g);
    if (!g) return zf_fail(ZF_ERR_NOMEM, "out of memory for the post-processor");
    *v = g;
    g[(*n)++] = id;
    return ZF_OK;
}

static zf_status parse_post(loader *L, const cJSON *n, const char *where)
{
    if (!n || cJSON_IsNull(n)) return ZF_OK;
    struct zf_hf_tokenizer *hf = L->hf;
    const char *type = get_str(L, n, "type", where, false);
    if (!type) return ZF_ERR_INPUT;
    if (!strcmp(type, "Sequence")) return parse_sequence(L, n, "processors", where, parse_post);
    if (!strcmp(type, "ByteLevel")) return ZF_OK; /* offsets only */
    if (!strcmp(type, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(n, "single"), *e;
        const cJSON *specials = cJSON_GetObjectItemCaseSensitive(n, "special_tokens");
        if (!cJSON_IsArray(single)) return zf_fail(ZF_ERR_INPUT, "%s: %s.single: expected a list", L->path, where);
        bool seen_a = false;
        int i = 0;
        cJSON_ArrayForEach(e, single)
        {
            char w[256];
            snprintf(w, sizeof w, "%s.single[%d]", where, i++);
            const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
            const cJSON *seq = cJSON_GetObjectItemCaseSensitive(e, "Sequence");
            if (seq) {
                seen_a = true;
                continue;
            }
            const char *name = sp ? get_str(L, sp, "id", w, false) : NULL;
            if (!name) return zf_fail(ZF_ERR_INPUT, "%s: %s: expected {\"SpecialToken\": {\"id\": ...}} or "
                                      "{\"Sequence\": ...}", L->path, w);
            const cJSON *entry = cJSON_GetObjectItemCaseSensitive(specials, name);
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(entry, "ids"), *x;
            if (cJSON_IsArray(ids)) {
                cJSON_ArrayForEach(x, ids)
                {
                    if (!cJSON_IsNumber(x) || x->valueint < 0 || x->valueint >= L->t->n_pieces)
                        return zf_fail(ZF_ERR_INPUT, "%s: %s.special_tokens[\"%s\"].ids: expected ids < %d", L->path,
                                       where, name, L->t->n_pieces);
                    ZF_TRY(push_id(seen_a ? &hf->suffix : &hf->prefix, seen_a ? &hf->n_suffix : &hf->n_prefix,
                                   x->valueint));
                }
            } else {
                int32_t id;
                ZF_TRY(token_id(L, name, w, &id));
                ZF_TRY(push_id(seen_a ? &hf->suffix : &hf->prefix, seen_a ? &hf->n_suffix : &hf->n_prefix, id));
            }
        }
        return ZF_OK;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(n, "cls"), *sep = cJSON_GetObjectItemCaseSensitive(n, "sep");
        if (!cJSON_IsArray(cls) || !cJSON_IsNumber(cJSON_GetArrayItem(cls, 1)) || !cJSON_IsArray(sep) ||
            !cJSON_IsNumber(cJSON_GetArrayItem(sep, 1)))
            return zf_fail(ZF_ERR_INPUT, "%s: %s.cls, .sep: expected [token, id]", L->path, where);
        ZF_TRY(push_id(&hf->prefix, &hf->n_prefix, cJSON_GetArrayItem(cls, 1)->valueint));
        return push_id(&hf->suffix, &hf->n_suffix, cJSON_GetArrayItem(sep, 1)->valueint);
    }
    return zf_fail(ZF_ERR_INPUT, "%s: %s.type: '%s' is not supported (expected Sequence, TemplateProcessing, "
                   "ByteLevel, RobertaProcessing or BertProcessing)", L->path, where, type);
}

/* bos_token / eos_token of tokenizer_config.json: a string or {"content": ...}. */
static const char *config_token(const cJSON *cfg, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, field);
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

/* tokenizer_config.json: the BOS and EOS tokens; for LLaMA's tokenizer classes add_bos_token and add_eos_token
 * rebuild the template, as transformers' LlamaTokenizerFast does. */
static zf_status apply_config(loader *L, const char *config_path)
{
    if (!config_path) return ZF_OK;
    char *text;
    ZF_TRY(zf_read_small_file(config_path, JSON_MAX_BYTES, "tokenizer_config.json", &text));
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return zf_fail(ZF_ERR_INPUT, "%s: not a JSON object", config_path);
    }
    zf_status s = ZF_OK;
    const char *bos = config_token(cfg, "bos_token"), *eos = config_token(cfg, "eos_token");
    if (bos) L->t->bos = zf_strmap_get(&L->t->map, bos, strlen(bos));
    if (eos) L->t->eos = zf_strmap_get(&L->t->map, eos, strlen(eos));
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(cfg, "tokenizer_class");
    const char *class = cJSON_IsString(cls) ? cls->valuestring : "";
    bool llama = !strcmp(class, "LlamaTokenizer") || !strcmp(class, "LlamaTokenizerFast") ||
                 !strcmp(class, "CodeLlamaTokenizer") || !strcmp(class, "CodeLlamaTokenizerFast");
    const cJSON *add_bos = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    const cJSON *add_eos = cJSON_GetObjectItemCaseSensitive(cfg, "add_eos_token");
    if (llama && (cJSON_IsBool(add_bos) || cJSON_IsBool(add_eos))) {
        struct zf_hf_tokenizer *hf = L->hf;
        bool want_bos = cJSON_IsBool(add_bos) ? cJSON_IsTrue(add_bos) : true;
        bool want_eos = cJSON_IsBool(add_eos) && cJSON_IsTrue(add_eos);
        hf->n_prefix = hf->n_suffix = 0;
        if (want_bos && L->t->bos < 0) s = zf_fail(ZF_ERR_INPUT, "%s: add_bos_token is true but bos_token is not "
                                                   "in the vocabulary", config_path);
        else if (want_eos && L->t->eos < 0) s = zf_fail(ZF_ERR_INPUT, "%s: add_eos_token is true but eos_token is "
                                                        "not in the vocabulary", config_path);
        if (s == ZF_OK && want_bos) s = push_id(&hf->prefix, &hf->n_prefix, L->t->bos);
        if (s == ZF_OK && want_eos) s = push_id(&hf->suffix, &hf->n_suffix, L->t->eos);
    }
    cJSON_Delete(cfg);
    return s;
}

zf_status zf_tok_hf_load(zf_tokenizer *t, const char *json_path, const char *config_path)
{
    t->family = ZF_TOK_HF;
    t->hf = zf_calloc(1, sizeof *t->hf, "tokenizer.json pipeline");
    if (!t->hf) return ZF_ERR_NOMEM;
    loader L = {json_path, t, t->hf};
    char *text;
    ZF_TRY(zf_read_small_file(json_path, JSON_MAX_BYTES, "tokenizer.json", &text));
    cJSON *root = cJSON_Parse(text);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= text ? (long)(at - text) : -1;
        free(text);
        return zf_fail(ZF_ERR_INPUT, "%s: not valid JSON (near byte %ld)", json_path, off);
    }
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return zf_fail(ZF_ERR_INPUT, "%s: not a JSON object (a Hugging Face tokenizer.json was expected)", json_path);
    }
    zf_clear_error();
    zf_status s = parse_model(&L, root);
    if (s == ZF_OK) s = parse_normalizer(&L, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizer");
    if (s == ZF_OK) s = parse_pre(&L, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pre_tokenizer");
    if (s == ZF_OK) s = parse_post(&L, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), "post_processor");
    if (s == ZF_OK) s = parse_decoder(&L, cJSON_GetObjectItemCaseSensitive(root, "decoder"), "decoder");
    cJSON_Delete(root);
    if (s == ZF_OK) s = build_splitters(&L);
    struct zf_hf_tokenizer *hf = t->hf;
    for (int b = 0; b < 256 && s == ZF_OK; b++) {
        char buf[8];
        zf_strbuf u = {0};
        if (hf->byte_level) {
            s = zf_utf8_put(&u, zf_hf_byte_char((unsigned)b));
            hf->byte_ids[b] = s == ZF_OK ? zf_strmap_get(&t->map, u.s, u.len) : -1;
        } else {
            snprintf(buf, sizeof buf, "<0x%02X>", b);
            hf->byte_ids[b] = zf_strmap_get(&t->map, buf, strlen(buf));
        }
        zf_strbuf_free(&u);
    }
    if (s == ZF_OK) s = apply_config(&L, config_path);
    if (s == ZF_OK && t->bos < 0 && hf->n_prefix == 1) t->bos = hf->prefix[0];
    if (s == ZF_OK && t->eos < 0 && hf->n_suffix == 1) t->eos = hf->suffix[0];
    if (s == ZF_OK)
        snprintf(t->kind, sizeof t->kind, "tokenizer.json (BPE, %s, vocab %d)",
                 hf->byte_level ? "byte-level" : hf->byte_fallback ? "SentencePiece-style, byte fallback"
                                                                   : "SentencePiece-style",
                 t->n_pieces);
    return s;
}

void zf_tok_hf_free(struct zf_hf_tokenizer *hf)
{
    if (!hf) return;
    for (int i = 0; i < hf->n_norm; i++) {
        free(hf->norm[i].text);
        free(hf->norm[i].content);
        pcre2_code_free(hf->norm[i].re);
    }
    for (int i = 0; i < hf->n_pre; i++) pcre2_code_free(hf->pre[i].re);
    for (int i = 0; i < hf->n_dec; i++) {
        free(hf->dec[i].pattern);
        free(hf->dec[i].content);
    }
    for (int i = 0; i < hf->n_added; i++) free(hf->added[i].content);
    free(hf->added);
    for (int c = 0; c < 256; c++) {
        free(hf->raw_split.by_byte[c]);
        free(hf->norm_split.by_byte[c]);
    }
    free(hf->prefix);
    free(hf->suffix);
    free(hf);
}
