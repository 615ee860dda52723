/* The effective config text a run directory records: line parsing, the fingerprint and the resume comparison. */
#define _GNU_SOURCE
#include "coordinator/rundir_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* a state on the stack: nothing to allocate */
#include <xxhash.h>

#include "coordinator/config.h"

typedef struct {
    const char *next;
    char section[128];
} zf_cfg_iter;

static void zf_cfg_iter_init(zf_cfg_iter *it, const char *text)
{
    it->next = text;
    it->section[0] = '\0';
}

/* The next key line (section headers and comments skipped); false at the end. Sections are one level deep with a
 * two-space indent, as zf_config_write_yaml writes them. */
static bool zf_cfg_iter_next(zf_cfg_iter *it, zf_cfg_line *out)
{
    while (it->next && *it->next) {
        const char *p = it->next, *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        it->next = eol ? eol + 1 : NULL;
        bool indented = len > 0 && p[0] == ' ';
        const char *k = p;
        while (k < p + len && *k == ' ') k++;
        const char *colon = memchr(k, ':', (size_t)(p + len - k));
        if (!colon || colon == k || *k == '#') continue;
        size_t klen = (size_t)(colon - k);
        const char *v = colon + 1;
        while (v < p + len && *v == ' ') v++;
        size_t vlen = (size_t)(p + len - v);
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\r')) vlen--;
        if (!indented && vlen == 0) {
            snprintf(it->section, sizeof it->section, "%.*s", (int)klen, k);
            continue;
        }
        if (!indented) it->section[0] = '\0';
        int w = indented && it->section[0]
                    ? snprintf(out->key, sizeof out->key, "%s.%.*s", it->section, (int)klen, k)
                    : snprintf(out->key, sizeof out->key, "%.*s", (int)klen, k);
        if (w < 0 || (size_t)w >= sizeof out->key) continue; /* longer than any key */
        out->value = v;
        out->vlen = vlen;
        return true;
    }
    return false;
}

bool zf_cfg_find(const char *text, const char *key, zf_cfg_line *out)
{
    zf_cfg_iter it;
    zf_cfg_iter_init(&it, text);
    while (zf_cfg_iter_next(&it, out))
        if (!strcmp(out->key, key)) return true;
    return false;
}

uint64_t zf_cfg_fingerprint(const char *text)
{
    XXH64_state_t st;
    XXH64_reset(&st, 0);
    zf_cfg_iter it;
    zf_cfg_line l;
    zf_cfg_iter_init(&it, text);
    while (zf_cfg_iter_next(&it, &l)) {
        if (!zf_config_key_affects(l.key)) continue;
        XXH64_update(&st, l.key, strlen(l.key));
        XXH64_update(&st, ": ", 2);
        XXH64_update(&st, l.value, l.vlen);
        XXH64_update(&st, "\n", 1);
    }
    return XXH64_digest(&st);
}

/* The methods (ZF_AFFECTS bits) of a config text; every method when the name is unknown. */
static unsigned text_method(const char *text, const char *defaults)
{
    zf_cfg_line l;
    char name[32];
    zf_method m;
    if (!zf_cfg_find(text, "method", &l) && !zf_cfg_find(defaults, "method", &l)) return ZF_AFFECTS_ALL;
    snprintf(name, sizeof name, "%.*s", (int)l.vlen, l.value);
    return zf_method_parse(name, &m) == 0 ? ZF_AFFECTS(m) : ZF_AFFECTS_ALL;
}

static bool same(const zf_cfg_line *a, const zf_cfg_line *b)
{
    return a->vlen == b->vlen && !memcmp(a->value, b->value, a->vlen);
}

/* Appends the differences of the keys of xs; with skip_common, keys ys also has were compared already. */
static void diff_pass(const char *xs, const char *ys, const char *defaults, bool xs_is_new, bool skip_common,
                      unsigned methods, char *buf, size_t cap, int *ndiff)
{
    zf_cfg_iter it;
    zf_cfg_line x, y, d;
    zf_cfg_iter_init(&it, xs);
    while (zf_cfg_iter_next(&it, &x)) {
        if (!(zf_config_key_affects(x.key) & methods)) continue;
        bool in_y = zf_cfg_find(ys, x.key, &y);
        if (skip_common && in_y) continue;
        if (in_y ? same(&x, &y) : zf_cfg_find(defaults, x.key, &d) && same(&x, &d)) continue;
        const zf_cfg_line *o = xs_is_new ? (in_y ? &y : NULL) : &x, *nw = xs_is_new ? &x : (in_y ? &y : NULL);
        size_t used = strlen(buf);
        snprintf(buf + used, cap - used, "%s%s was %.*s, now %.*s", *ndiff ? "; " : "", x.key, o ? (int)o->vlen : 8,
                 o ? o->value : "(absent)", nw ? (int)nw->vlen : 8, nw ? nw->value : "(absent)");
        (*ndiff)++;
    }
}

zf_status zf_cfg_diff(const char *old_text, const char *new_text, char *buf, size_t cap, int *ndiff)
{
    ZF_ASSERT(cap > 0);
    *ndiff = 0;
    zf_job_config dc;
    zf_config_defaults(&dc);
    char *defaults = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&defaults, &len);
    if (!f) return zf_fail(ZF_ERR_NOMEM, "no memory for the default configuration");
    zf_config_write_yaml(&dc, f);
    if (fclose(f) != 0) {
        free(defaults);
        return zf_fail(ZF_ERR_NOMEM, "no memory for the default configuration");
    }
    /* a key that only changes another method's result (alpha for rtn) is no difference */
    unsigned methods = text_method(old_text, defaults) | text_method(new_text, defaults);
    diff_pass(old_text, new_text, defaults, false, false, methods, buf, cap, ndiff);
    diff_pass(new_text, old_text, defaults, true, true, methods, buf, cap, ndiff);
    free(defaults);
    return ZF_OK;
}
