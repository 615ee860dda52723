/* Tokenizer speed: tokens/s and MB/s of zfold's tokenizer on a large text, one document per line, beside Hugging
 * Face's JavaScript tokenizer on the same text in the same run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/textsrc.h"
#include "common/tokenizer.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: zfold_bench_tokenizer --text FILE [--mb N] [--js NPM_DIR] TOKENIZER...\n"
            "Repeats FILE (several files: --text each) up to N MB (default 100; 0 = the files once) and encodes it\n"
            "one line at a time (each line a document with the tokenizer's special tokens) with each TOKENIZER (a\n"
            "model folder, tokenizer.json or tokenizer.bin). With --js, NPM_DIR/node_modules holding\n"
            "@huggingface/tokenizers (tests/tokenizer/npm_reference.sh installs it), the same text is encoded by\n"
            "the JavaScript tokenizer too (tokenizer.json only). One table row per tokenizer and implementation.\n");
}

/* The texts repeated up to mb MB (whole files, the last one cut at a line end). */
static char *build_text(char **files, int n, double mb, size_t *len)
{
    zf_documents d = {0};
    for (int i = 0; i < n; i++)
        if (zf_textsrc_read(files[i], NULL, &d) != ZF_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", zf_last_error());
            exit(1);
        }
    size_t once = 0;
    for (size_t i = 0; i < d.count; i++) once += d.docs[i].len;
    size_t want = mb > 0 ? (size_t)(mb * 1e6) : once;
    char *text = malloc(want + 1);
    if (!text || !once) {
        fprintf(stderr, "bench_tokenizer: %s\n", once ? "out of memory" : "empty text");
        exit(1);
    }
    size_t k = 0;
    for (size_t r = 0; k < want; r++) {
        const zf_document *doc = &d.docs[r % d.count];
        size_t take = doc->len < want - k ? doc->len : want - k;
        memcpy(text + k, doc->text, take);
        k += take;
    }
    while (k > 0 && text[k - 1] != '\n') k--; /* end on a whole line */
    text[k] = 0;
    *len = k;
    zf_documents_free(&d);
    return text;
}

static void row(const char *impl, const char *name, size_t tokens, size_t bytes, double s)
{
    printf("| %-6s | %-60.60s | %12zu | %8.2f | %12.0f | %8.2f |\n", impl, name, tokens, s, tokens / s, bytes / s / 1e6);
}

int main(int argc, char **argv)
{
    char *files[64];
    int nfiles = 0, ntok = 0;
    const char *toks[64], *js = NULL;
    double mb = 100;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--text") && i + 1 < argc && nfiles < 64) files[nfiles++] = argv[++i];
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--js") && i + 1 < argc) js = argv[++i];
        else if (argv[i][0] != '-' && ntok < 64) toks[ntok++] = argv[i];
        else {
            usage();
            return 2;
        }
    }
    if (!nfiles || !ntok) {
        usage();
        return 2;
    }
    size_t len;
    char *text = build_text(files, nfiles, mb, &len);
    char tmp[] = "/tmp/zf_bench_tokenizer.XXXXXX";
    if (js) {
        int fd = mkstemp(tmp);
        FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (!f || fwrite(text, 1, len, f) != len || fclose(f)) {
            fprintf(stderr, "bench_tokenizer: cannot write %s\n", tmp);
            return 1;
        }
    }
    printf("# text: %.1f MB (%d file%s repeated), one document per line\n", len / 1e6, nfiles, nfiles > 1 ? "s" : "");
    printf("| impl   | tokenizer                                                    |       tokens |        s |     tokens/s |     MB/s |\n");
    printf("|--------|--------------------------------------------------------------|--------------|----------|--------------|----------|\n");
    fflush(stdout);
    int rc = 0;
    for (int k = 0; k < ntok; k++) {
        zf_tokenizer *t;
        if (zf_tokenizer_load(toks[k], &t) != ZF_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", zf_last_error());
            rc = 1;
            continue;
        }
        zf_token_ids ids = {0};
        size_t tokens = 0;
        bool failed = false;
        double t0 = zf_now();
        for (size_t i = 0; i < len && !failed;) {
            const char *nl = memchr(text + i, '\n', len - i);
            size_t end = nl ? (size_t)(nl - text) + 1 : len;
            ids.count = 0;
            if (zf_tokenizer_encode(t, text + i, end - i, true, &ids) != ZF_OK) {
                fprintf(stderr, "bench_tokenizer: %s\n", zf_last_error());
                failed = true;
                rc = 1;
            }
            tokens += ids.count;
            i = end;
        }
        row("C", toks[k], tokens, len, zf_now() - t0);
        fflush(stdout);
        zf_token_ids_free(&ids);
        bool json = strstr(zf_tokenizer_kind(t), "tokenizer.json") != NULL;
        zf_tokenizer_free(t);
        if (!js || !json) continue;
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "ZF_NPM_DIR='%s' node '%s/tests/tokenizer/reference.mjs' bench '%s' '%s'", js,
                 ZF_SOURCE_DIR, toks[k], tmp);
        FILE *p = popen(cmd, "r");
        char line[512] = "";
        size_t jt = 0, jb = 0;
        double js_s = 0;
        if (p && fgets(line, sizeof line, p) &&
            sscanf(line, "{\"tokens\":%zu,\"seconds\":%lf,\"bytes\":%zu}", &jt, &js_s, &jb) == 3)
            row("JS", toks[k], jt, jb, js_s);
        else {
            fprintf(stderr, "bench_tokenizer: the JavaScript tokenizer gave '%s'\n", line);
            rc = 1;
        }
        if (p) pclose(p);
        fflush(stdout);
    }
    if (js) remove(tmp);
    free(text);
    return rc;
}
