/* The BPE merge engine: adjacent pairs in a 4-ary min-heap by (prio, position), merged until none is in the merge
 * table. */
#include "common/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

/* 12 bytes, so that a long word's heap stays in cache; a popped entry is checked against the merge table */
struct zf_bpe_heap_entry {
    float prio;
    int32_t left; /* the symbol slot: the position of the symbol's first original piece */
    int32_t id;   /* what the pair became */
};

#define ARITY 4

/* a before b: lower prio, then further left */
static bool before(const struct zf_bpe_heap_entry *a, const struct zf_bpe_heap_entry *b)
{
    return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}

static void heap_push(struct zf_bpe_heap_entry *h, size_t *n, struct zf_bpe_heap_entry e)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / ARITY;
        if (!before(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static struct zf_bpe_heap_entry heap_pop(struct zf_bpe_heap_entry *h, size_t *n)
{
    struct zf_bpe_heap_entry top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = ARITY * i + 1;
        if (c >= *n) break;
        size_t end = c + ARITY < *n ? c + ARITY : *n;
        for (size_t k = c + 1; k < end; k++)
            if (before(&h[k], &h[c])) c = k;
        if (!before(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static zf_status reserve(zf_bpe_work *w, size_t n)
{
    if (n > w->cap) {
        size_t cap = n < 64 ? 64 : n;
        int32_t *prev = realloc(w->prev, cap * sizeof *prev);
        if (prev) w->prev = prev;
        int32_t *next = realloc(w->next, cap * sizeof *next);
        if (next) w->next = next;
        if (!prev || !next) return zf_fail(ZF_ERR_NOMEM, "out of memory for BPE over %zu symbols", n);
        w->cap = cap;
    }
    return ZF_OK;
}

static zf_status push_pair(const zf_pairmap *m, zf_bpe_work *w, size_t *heap_n, const int32_t *ids, int32_t l,
                           int32_t r)
{
    const zf_pair_entry *e = zf_pairmap_get(m, ids[l], ids[r]);
    if (!e) return ZF_OK;
    if (*heap_n == w->heap_cap) {
        size_t cap = w->heap_cap ? 2 * w->heap_cap : 64;
        struct zf_bpe_heap_entry *h = realloc(w->heap, cap * sizeof *h);
        if (!h) return zf_fail(ZF_ERR_NOMEM, "out of memory for a BPE heap of %zu pairs", cap);
        w->heap = h;
        w->heap_cap = cap;
    }
    heap_push(w->heap, heap_n, (struct zf_bpe_heap_entry){(float)e->prio, l, e->id});
    return ZF_OK;
}

zf_status zf_bpe_merge(const zf_pairmap *m, zf_bpe_work *w, int32_t *ids, size_t *n)
{
    size_t len = *n;
    if (len < 2) return ZF_OK;
    ZF_TRY(reserve(w, len));
    int32_t *prev = w->prev, *next = w->next;
    size_t heap_n = 0;
    for (size_t i = 0; i < len; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < len ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < len; i++) ZF_TRY(push_pair(m, w, &heap_n, ids, (int32_t)i, (int32_t)i + 1));
    while (heap_n) {
        struct zf_bpe_heap_entry e = heap_pop(w->heap, &heap_n);
        /* stale when the symbol or its neighbour changed since: the pair there now must make the same merge (one
         * with the same prio and result at the same place is pushed too and would merge here anyway) */
        int32_t right = ids[e.left] >= 0 ? next[e.left] : -1;
        if (right < 0) continue;
        const zf_pair_entry *now = zf_pairmap_get(m, ids[e.left], ids[right]);
        if (!now || now->id != e.id || (float)now->prio != e.prio) continue;
        ids[e.left] = e.id;
        ids[right] = -1;
        int32_t after = next[right];
        next[e.left] = after;
        if (after >= 0) prev[after] = e.left;
        if (prev[e.left] >= 0) ZF_TRY(push_pair(m, w, &heap_n, ids, prev[e.left], e.left));
        if (after >= 0) ZF_TRY(push_pair(m, w, &heap_n, ids, e.left, after));
    }
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        if (ids[i] >= 0) ids[k++] = ids[i];
    *n = k;
    return ZF_OK;
}

void zf_bpe_work_free(zf_bpe_work *w)
{
    free(w->prev);
    free(w->next);
    free(w->heap);
    memset(w, 0, sizeof *w);
}
