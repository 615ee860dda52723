/* `zfold tokenize TEXT... --model DIR -o FILE.bin`: text to an llm.c token file with the model's tokenizer; --decode back. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/fsutil.h"
#include "common/textsrc.h"
#include "common/tokenizer.h"
#include "common/tokens.h"
#include "coordinator/commands.h"

#define MAX_INPUTS 256

void zf_cmd_tokenize_help(void)
{
    printf("usage: zfold tokenize TEXT... --model DIR -o FILE.bin [--field NAME] [--join SEP] [--no-special]\n"
           "       zfold tokenize --decode FILE.bin --model DIR [-o FILE.txt] [--keep-special]\n"
           "Tokenizes text with the model's own tokenizer (DIR/tokenizer.json with tokenizer_config.json, else\n"
           "DIR/tokenizer.bin; --model may also name the tokenizer file) and writes an llm.c token file (uint16 ids\n"
           "when the vocabulary has at most 65,536 ids, else uint32; see docs/format.md).\n"
           "Each TEXT is a UTF-8 text file (one document; .gz is read too) or JSON Lines (.jsonl, .jsonl.gz: one\n"
           "document per line, its string member --field, default \"text\"). Every document gets the BOS/EOS the\n"
           "tokenizer's post-processor adds (llama2.c: BOS), unless --no-special. --join SEP first joins all documents\n"
           "into one with SEP (C escapes \\n \\t \\\\), as WikiText-2 (\"\\n\\n\") and PTB (\" \") are prepared.\n"
           "--decode writes the text of a token file (special tokens left out unless --keep-special) to -o or stdout.\n"
           "Prints one line: documents, bytes, tokens, seconds. Exit status: 0 done, 1 failed (the message names the\n"
           "file), 2 wrong command line.\n");
}

typedef struct {
    const char *inputs[MAX_INPUTS];
    int n_inputs;
    const char *model, *out, *field, *decode;
    char join[256];
    bool has_join, no_special, keep_special;
} tok_args;

/* SEP with \n, \t, \r and \\ unescaped. */
static bool unescape(const char *v, char *out, size_t size)
{
    size_t k = 0;
    for (const char *p = v; *p; p++) {
        if (k + 1 >= size) return false;
        if (p[0] == '\\' && p[1]) {
            p++;
            out[k++] = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p == 'r' ? '\r' : *p;
        } else out[k++] = *p;
    }
    out[k] = 0;
    return true;
}

static bool parse_args(int argc, char **argv, tok_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (!strcmp(argv[i], "--model") && has_value) a->model = argv[++i];
        else if (!strcmp(argv[i], "-o") && has_value) a->out = argv[++i];
        else if (!strcmp(argv[i], "--field") && has_value) a->field = argv[++i];
        else if (!strcmp(argv[i], "--decode") && has_value) a->decode = argv[++i];
        else if (!strcmp(argv[i], "--join") && has_value) {
            if (!unescape(argv[++i], a->join, sizeof a->join)) {
                fprintf(stderr, "zfold tokenize: --join: at most %zu bytes\n", sizeof a->join - 1);
                return false;
            }
            a->has_join = true;
        } else if (!strcmp(argv[i], "--no-special")) a->no_special = true;
        else if (!strcmp(argv[i], "--keep-special")) a->keep_special = true;
        else if (argv[i][0] != '-' && a->n_inputs < MAX_INPUTS) a->inputs[a->n_inputs++] = argv[i];
        else {
            fprintf(stderr, "zfold tokenize: unexpected argument '%s'\n", argv[i]);
            return false;
        }
    }
    if (!a->model) fprintf(stderr, "zfold tokenize: --model is required\n");
    else if (!a->decode && (!a->n_inputs || !a->out)) fprintf(stderr, "zfold tokenize: TEXT and -o are required\n");
    else if (a->decode && a->n_inputs) fprintf(stderr, "zfold tokenize: --decode takes no TEXT\n");
    else return true;
    return false;
}

static int decode_file(const tok_args *a, const zf_tokenizer *t)
{
    zf_tokens tok;
    zf_status s = zf_tokens_read(a->decode, zf_tokenizer_vocab_size(t), &tok);
    char *text = NULL;
    size_t len = 0;
    if (s == ZF_OK) s = zf_tokenizer_decode(t, tok.ids, tok.count, !a->keep_special, &text, &len);
    zf_tokens_free(&tok);
    if (s == ZF_OK && a->out) s = zf_write_file_atomic(a->out, text, len);
    else if (s == ZF_OK && fwrite(text, 1, len, stdout) != len) s = zf_fail(ZF_ERR_IO, "cannot write to stdout");
    free(text);
    if (s != ZF_OK) {
        fprintf(stderr, "zfold tokenize: %s\n", zf_last_error());
        return zf_exit_code(s);
    }
    return ZF_EXIT_OK;
}

int zf_cmd_tokenize(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            zf_cmd_tokenize_help();
            return ZF_EXIT_OK;
        }
    tok_args a;
    if (!parse_args(argc, argv, &a)) {
        zf_cmd_tokenize_help();
        return ZF_EXIT_USAGE;
    }
    zf_tokenizer *t;
    zf_status s = zf_tokenizer_load(a.model, &t);
    if (s != ZF_OK) {
        fprintf(stderr, "zfold tokenize: %s\n", zf_last_error());
        return zf_exit_code(s);
    }
    if (a.decode) {
        int rc = decode_file(&a, t);
        zf_tokenizer_free(t);
        return rc;
    }
    double t0 = zf_now();
    zf_documents docs = {0};
    zf_token_ids ids = {0};
    for (int i = 0; i < a.n_inputs && s == ZF_OK; i++) s = zf_textsrc_read(a.inputs[i], a.field, &docs);
    if (s == ZF_OK && a.has_join) s = zf_documents_join(&docs, a.join);
    size_t bytes = 0;
    for (size_t i = 0; i < docs.count; i++) bytes += docs.docs[i].len;
    if (s == ZF_OK) s = zf_documents_tokenize(&docs, t, !a.no_special, &ids);
    if (s == ZF_OK) s = zf_tokens_write_vocab(a.out, ids.ids, ids.count, zf_tokenizer_vocab_size(t));
    if (s == ZF_OK)
        printf("zfold tokenize: %zu document%s, %zu bytes -> %zu tokens (%s), %.2f s -> %s\n", docs.count,
               docs.count == 1 ? "" : "s", bytes, ids.count, zf_tokenizer_kind(t), zf_now() - t0, a.out);
    else fprintf(stderr, "zfold tokenize: %s\n", zf_last_error());
    zf_documents_free(&docs);
    zf_token_ids_free(&ids);
    zf_tokenizer_free(t);
    return s == ZF_OK ? ZF_EXIT_OK : zf_exit_code(s);
}

/* "<output>/tokens/<prefix><file name>.tok.bin" */
static zf_status token_path(const zf_job_config *cfg, const char *prefix, const char *spec, char *out, size_t size)
{
    zf_text_preset preset;
    const char *path;
    ZF_TRY(zf_text_spec_parse(spec, &preset, &path));
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (snprintf(out, size, "%s/tokens/%s%s%s%s.tok.bin", cfg->output, prefix, preset ? zf_text_preset_name(preset) : "",
                 preset ? "." : "", base) >= (int)size)
        return zf_fail(ZF_ERR_INPUT, "%s: the token file's path under output '%s' is too long", spec, cfg->output);
    return ZF_OK;
}

static zf_status tokenize_to(const zf_tokenizer *t, const char *key, const char *spec, const zf_text_use *use,
                             const char *dest)
{
    zf_token_ids ids = {0};
    bool in_order;
    double t0 = zf_now();
    zf_status s = zf_text_tokens(spec, t, use, &ids, &in_order);
    if (s == ZF_OK) s = zf_tokens_write_vocab(dest, ids.ids, ids.count, zf_tokenizer_vocab_size(t));
    if (s == ZF_OK)
        zf_log_info("%s %s: %zu tokens (%s) in %.1f s -> %s", key, spec, ids.count, zf_tokenizer_kind(t),
                    zf_now() - t0, dest);
    else zf_fail_context(s, "%s", key);
    zf_token_ids_free(&ids);
    return s;
}

/* Whether dir may take a tokens/ folder: absent, empty, a run directory, or one that has tokens/ already (a
 * folder of someone else's is refused later, by the run directory, and must not be written into first). */
static bool output_is_ours(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return true;
    bool ours = true;
    struct dirent *de;
    while ((de = readdir(d)))
        if (!strcmp(de->d_name, "manifest.json") || !strcmp(de->d_name, "tokens")) {
            ours = true;
            break;
        } else if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) ours = false;
    closedir(d);
    return ours;
}

zf_status zf_job_prepare_texts(zf_job_config *cfg, int64_t calib_seq, bool lead)
{
    if (!cfg->calib_text[0] && !cfg->n_eval_texts) return ZF_OK;
    zf_status s = ZF_OK;
    zf_tokenizer *t = NULL;
    if (lead && !output_is_ours(cfg->output))
        s = zf_fail(ZF_ERR_INPUT, "%s: the output folder is not empty and is not a zfold run directory (no "
                    "manifest.json); choose an empty or new folder", cfg->output);
    if (lead && s == ZF_OK) {
        char dir[ZF_PATH_MAX + 16];
        snprintf(dir, sizeof dir, "%s/tokens", cfg->output);
        s = zf_mkdirs(dir);
        if (s == ZF_OK) s = zf_tokenizer_load(cfg->model, &t);
        if (s != ZF_OK) zf_fail_context(s, "calibration.text / eval.texts need the model's tokenizer");
    }
    if (s == ZF_OK && cfg->calib_text[0]) {
        zf_text_use use = {true, calib_seq, cfg->calib_windows, (uint64_t)cfg->seed};
        zf_text_preset preset;
        const char *path;
        s = zf_text_spec_parse(cfg->calib_text, &preset, &path);
        if (s == ZF_OK) s = token_path(cfg, "calibration.", cfg->calib_text, cfg->calib_file, sizeof cfg->calib_file);
        if (s == ZF_OK && lead) s = tokenize_to(t, "calibration.text", cfg->calib_text, &use, cfg->calib_file);
        cfg->calib_in_order = preset == ZF_TEXT_C4;
    }
    int64_t eval_seq = cfg->eval_seq_len > 0 ? cfg->eval_seq_len : calib_seq;
    for (int i = 0; i < cfg->n_eval_texts && s == ZF_OK; i++) {
        zf_text_use use = {false, eval_seq, 0, 0};
        char *dest = cfg->eval_files[cfg->n_eval_files];
        s = token_path(cfg, "", cfg->eval_texts[i], dest, ZF_PATH_MAX);
        if (s == ZF_OK && lead) s = tokenize_to(t, "eval.texts", cfg->eval_texts[i], &use, dest);
        if (s == ZF_OK) cfg->n_eval_files++;
    }
    zf_tokenizer_free(t);
    return s;
}
