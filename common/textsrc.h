/* Text sources: documents from UTF-8 text files or JSON Lines (.jsonl, .jsonl.gz), and their tokenization. */
#ifndef ZF_TEXTSRC_H
#define ZF_TEXTSRC_H

#include <stddef.h>

#include "common/status.h"
#include "common/tokenizer.h"

typedef struct {
    char *text;
    size_t len;
} zf_document;

typedef struct {
    zf_document *docs;
    size_t count, cap;
} zf_documents;

/* Appends the documents of path: a text file (read through zlib, so .gz works too) is one document; a .jsonl or
 * .jsonl.gz file gives one document per non-empty line, its string member field (default "text"). */
zf_status zf_textsrc_read(const char *path, const char *field, zf_documents *out);
void zf_documents_free(zf_documents *d);

/* Joins the documents with sep into one document (WikiText-2's "\n\n", PTB's " "), replacing them. */
zf_status zf_documents_join(zf_documents *d, const char *sep);

/* Tokenizes every document (each with the tokenizer's BOS/EOS when add_special) into one stream. */
zf_status zf_documents_tokenize(const zf_documents *d, const zf_tokenizer *t, bool add_special, zf_token_ids *out);

/* How a text becomes evaluation or calibration tokens: each document on its own, or a GPTQ protocol. */
typedef enum { ZF_TEXT_PLAIN, ZF_TEXT_WIKITEXT2, ZF_TEXT_PTB, ZF_TEXT_C4 } zf_text_preset;

/* "[preset:]path": the preset (wikitext2, ptb, c4; none = plain) and where the path starts. */
zf_status zf_text_spec_parse(const char *spec, zf_text_preset *preset, const char **path);
const char *zf_text_preset_name(zf_text_preset p);

typedef struct {
    bool calibration;    /* else evaluation */
    int64_t seq;         /* window length */
    int64_t windows;     /* calibration: how many */
    uint64_t seed;       /* calibration: the C4 document and window draw */
} zf_text_use;

/* The token stream of spec for its use:
 *   plain      every document with the tokenizer's BOS/EOS, one after another
 *   wikitext2  the documents (JSON Lines field "text") joined with "\n\n", tokenized once
 *   ptb        the documents (field "sentence") joined with " ", tokenized once
 *   c4         evaluation: the first 1100 documents joined with " ", tokenized once, cut to 256 windows;
 *              calibration: use->windows windows of use->seq tokens back to back, each from a random document
 *              longer than a window at a random offset (seeded); *in_order is set: take them as they are. */
zf_status zf_text_tokens(const char *spec, const zf_tokenizer *t, const zf_text_use *use, zf_token_ids *out,
                         bool *in_order);

#endif
