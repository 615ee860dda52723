/* What the tokenizer files share: the vocabulary, string and pair hash maps, the BPE merge engine, the families. */
#ifndef ZF_TOKENIZER_INTERNAL_H
#define ZF_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/tokenizer.h"

/* One vocabulary entry's bytes (not NUL-terminated in general; s is NULL for an id no entry has). */
typedef struct {
    char *s;
    uint32_t len;
} zf_piece;

/* String -> id over a vocabulary; with duplicate strings the lowest id wins. */
typedef struct {
    int32_t *slots; /* id, or -1 */
    size_t mask;
    const zf_piece *pieces;
} zf_strmap;

zf_status zf_strmap_build(zf_strmap *m, const zf_piece *pieces, int32_t n);
int32_t zf_strmap_get(const zf_strmap *m, const char *s, size_t len);
void zf_strmap_free(zf_strmap *m);

/* A merge: the pair (a, b) becomes id; the pair with the lowest prio merges first, the leftmost on ties. prio is
 * compared as a float (llama2.c's scores are floats; merge ranks are exact below 2^24). */
typedef struct {
    uint64_t key; /* a << 32 | b, UINT64_MAX when the slot is empty */
    double prio;
    int32_t id;
} zf_pair_entry;

typedef struct {
    zf_pair_entry *slots;
    size_t mask, count;
} zf_pairmap;

zf_status zf_pairmap_init(zf_pairmap *m, size_t expected);
/* Adds a merge; a pair given twice keeps the last (as Hugging Face's map of a merges list with repeats does). */
zf_status zf_pairmap_put(zf_pairmap *m, int32_t a, int32_t b, double prio, int32_t id);
const zf_pair_entry *zf_pairmap_get(const zf_pairmap *m, int32_t a, int32_t b);
void zf_pairmap_free(zf_pairmap *m);

/* Scratch space of the merge engine, kept between words so that short words allocate nothing. */
typedef struct {
    int32_t *prev, *next;
    struct zf_bpe_heap_entry *heap;
    size_t cap, heap_cap;
} zf_bpe_work;

/* Merges ids[0, *n) in place, by prio then position, with a heap: O(n log n). ids must be >= 0. */
zf_status zf_bpe_merge(const zf_pairmap *m, zf_bpe_work *w, int32_t *ids, size_t *n);
void zf_bpe_work_free(zf_bpe_work *w);

typedef enum { ZF_TOK_LLAMA2C, ZF_TOK_HF } zf_tok_family;

struct zf_hf_tokenizer; /* tokenizer_json.c */

struct zf_tokenizer {
    zf_tok_family family;
    char kind[128];
    char *path;
    zf_piece *pieces; /* [n_pieces], by id */
    int32_t n_pieces;
    bool *special;    /* [n_pieces]: left out by decode with skip_special */
    zf_strmap map;
    zf_pairmap merges;
    int32_t bos, eos;
    float *scores;    /* llama2.c only */
    struct zf_hf_tokenizer *hf;
};

/* Allocates t->pieces, t->special for n ids (zeroed). */
zf_status zf_tok_alloc_pieces(zf_tokenizer *t, int32_t n);
/* Copies bytes into piece id; what names the file and field for the error. */
zf_status zf_tok_set_piece(zf_tokenizer *t, int32_t id, const char *s, size_t len);

/* llama2.c tokenizer.bin (tokenizer_bin.c). */
zf_status zf_tok_bin_load(zf_tokenizer *t, const char *path);
zf_status zf_tok_bin_encode(const zf_tokenizer *t, const char *text, size_t len, bool add_bos, zf_token_ids *out);
zf_status zf_tok_bin_decode(const zf_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text,
                            size_t *len);

/* Hugging Face tokenizer.json (tokenizer_json.c loads, tokenizer_hf.c encodes and decodes). */
zf_status zf_tok_hf_load(zf_tokenizer *t, const char *json_path, const char *config_path);
void zf_tok_hf_free(struct zf_hf_tokenizer *hf);
zf_status zf_tok_hf_encode(const zf_tokenizer *t, const char *text, size_t len, bool add_special, zf_token_ids *out);
zf_status zf_tok_hf_decode(const zf_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text,
                           size_t *len);

/* A growing byte buffer. */
typedef struct {
    char *s;
    size_t len, cap;
} zf_strbuf;

zf_status zf_strbuf_put(zf_strbuf *b, const void *data, size_t len);
void zf_strbuf_free(zf_strbuf *b);

/* The UTF-8 sequence at s[0]: its length when well formed (*valid set), else the length of its maximal ill-formed
 * subpart (at least 1), which a decoder replaces with one U+FFFD (Unicode 3.9, the WHATWG decoder). */
size_t zf_utf8_scan(const unsigned char *s, size_t avail, bool *valid);
/* Appends the UTF-8 of code point cp. */
zf_status zf_utf8_put(zf_strbuf *b, uint32_t cp);
/* Decodes one well-formed sequence of length n. */
uint32_t zf_utf8_decode(const unsigned char *s, size_t n);

#endif
