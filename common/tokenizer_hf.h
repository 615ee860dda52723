/* The parts of a Hugging Face tokenizer.json that zfold runs: normalizers, pre-tokenizers, BPE options, added
 * tokens, the post-processor's template and the decoder chain. */
#ifndef ZF_TOKENIZER_HF_H
#define ZF_TOKENIZER_HF_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/tokenizer_internal.h"

#define ZF_HF_MAX_STEPS 16

typedef enum { HF_NORM_PREPEND, HF_NORM_REPLACE, HF_NORM_NFC, HF_NORM_NFD, HF_NORM_NFKC, HF_NORM_NFKD,
               HF_NORM_LOWERCASE } zf_hf_norm_kind;

typedef struct {
    zf_hf_norm_kind kind;
    char *text;   /* Prepend: what; Replace: the string pattern (NULL with a regex) */
    size_t text_len;
    pcre2_code *re; /* Replace with a Regex pattern */
    char *content; /* Replace: the replacement */
    size_t content_len;
} zf_hf_norm;

typedef enum { HF_PRE_SPLIT, HF_PRE_BYTELEVEL, HF_PRE_METASPACE, HF_PRE_DIGITS } zf_hf_pre_kind;
typedef enum { HF_SPLIT_ISOLATED, HF_SPLIT_REMOVED } zf_hf_split_behavior;
typedef enum { HF_PREPEND_ALWAYS, HF_PREPEND_FIRST, HF_PREPEND_NEVER } zf_hf_prepend_scheme;

typedef struct {
    zf_hf_pre_kind kind;
    pcre2_code *re;               /* Split; ByteLevel with use_regex (GPT-2's pattern) */
    zf_hf_split_behavior behavior;
    bool invert;
    bool add_prefix_space;        /* ByteLevel */
    char replacement[8];          /* Metaspace */
    size_t replacement_len;
    zf_hf_prepend_scheme prepend; /* Metaspace */
    bool split;                   /* Metaspace */
    bool individual_digits;       /* Digits */
} zf_hf_pre;

typedef struct {
    char *content; /* what the text must hold: the token, or with normalized the token normalized */
    size_t len;
    int32_t id;
    bool special, normalized, lstrip, rstrip;
} zf_hf_added;

/* Added tokens by first byte, longest first: leftmost-longest matching as Hugging Face's splitter does. */
typedef struct {
    int *by_byte[256];
    int n[256];
} zf_hf_splitter;

typedef enum { HF_DEC_BYTELEVEL, HF_DEC_REPLACE, HF_DEC_BYTEFALLBACK, HF_DEC_FUSE, HF_DEC_STRIP,
               HF_DEC_METASPACE } zf_hf_dec_kind;

typedef struct {
    zf_hf_dec_kind kind;
    char *pattern, *content; /* Replace; Strip's content */
    size_t pattern_len, content_len;
    int start, stop;         /* Strip */
    bool prepend;            /* Metaspace: strip the replacement the encoder put first */
} zf_hf_dec;

struct zf_hf_tokenizer {
    zf_hf_norm norm[ZF_HF_MAX_STEPS];
    int n_norm;
    zf_hf_pre pre[ZF_HF_MAX_STEPS];
    int n_pre;
    bool byte_level;      /* the pre-tokenizers end with ByteLevel: the model sees bytes as GPT-2's characters */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t unk;          /* -1: none */
    int32_t byte_ids[256];      /* byte-level: the id of each byte's character; byte fallback: <0xXX> (-1 if absent) */
    zf_hf_added *added;
    int n_added;
    zf_hf_splitter raw_split, norm_split; /* tokens matched before / after normalization */
    /* the post-processor's template for one sequence: ids before and after it */
    int32_t *prefix, *suffix;
    int n_prefix, n_suffix;
    zf_hf_dec dec[ZF_HF_MAX_STEPS];
    int n_dec;
};

/* Runs the normalizers over s[0, n) into out (replacing what it held). */
zf_status zf_hf_normalize(const struct zf_hf_tokenizer *hf, const char *s, size_t n, zf_strbuf *out);
/* Whether code point cp is White_Space (Oniguruma's and Hugging Face's \s). */
bool zf_hf_is_space(uint32_t cp);

/* GPT-2's byte -> character table: the printable Latin-1 bytes are themselves, the others U+0100 onwards. */
uint32_t zf_hf_byte_char(unsigned byte);

#endif
