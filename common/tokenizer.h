/* Text to token ids and back with a model's own tokenizer: Hugging Face tokenizer.json or llama2.c tokenizer.bin. */
#ifndef ZF_TOKENIZER_H
#define ZF_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct zf_tokenizer zf_tokenizer;

/* A growing array of token ids. */
typedef struct {
    int32_t *ids;
    size_t count, cap;
} zf_token_ids;

zf_status zf_token_ids_push(zf_token_ids *v, int32_t id);
void zf_token_ids_free(zf_token_ids *v);

/* Loads path: a model folder (its tokenizer.json with tokenizer_config.json, else its tokenizer.bin), a
 * tokenizer.json, or a llama2.c tokenizer.bin. */
zf_status zf_tokenizer_load(const char *path, zf_tokenizer **out);
void zf_tokenizer_free(zf_tokenizer *t);

/* Largest id + 1 (added tokens included): the vocabulary a token file of this tokenizer needs. */
int64_t zf_tokenizer_vocab_size(const zf_tokenizer *t);
/* "tokenizer.json (BPE, byte-level)", "tokenizer.bin (llama2.c)", ... for logs. */
const char *zf_tokenizer_kind(const zf_tokenizer *t);
/* The id of BOS / EOS, or -1 when the tokenizer has none. */
int32_t zf_tokenizer_bos(const zf_tokenizer *t);
int32_t zf_tokenizer_eos(const zf_tokenizer *t);

/* Appends the ids of text[0, len) to out, as the tokenizer does for one document: with add_special the
 * BOS/EOS its post-processor (or llama2.c's BOS) adds. Text that is not valid UTF-8 is read as a browser or
 * Hugging Face's JavaScript tokenizer reads a file: each invalid sequence becomes U+FFFD (tokenizer.json); a
 * tokenizer.bin takes the bytes as they are, as run.c does. */
zf_status zf_tokenizer_encode(const zf_tokenizer *t, const char *text, size_t len, bool add_special,
                              zf_token_ids *out);

/* The text of ids (NUL-terminated, *len without the NUL; free() it); special tokens (BOS, EOS, added
 * special tokens) are left out when skip_special. An id outside the vocabulary is an error naming it. */
zf_status zf_tokenizer_decode(const zf_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text,
                              size_t *len);

#endif
