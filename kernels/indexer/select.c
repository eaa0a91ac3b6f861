/* The lightning indexer's selection on the CPU (model.py Indexer.forward after the projections):
 * for each query t, score every key it may see,
 *     I[t, e] = sum_h w[t, h] * relu(q[t, h] . k[e])        (w already holds the 1/sqrt(d) scale)
 * and keep the k best, best first (ties: the lower index), -1 where fewer than k are visible.
 *
 * Why: at long context this is most of a prefill (16K tokens: 40% of a 128-token chunk; the
 * score tensor is [T, H, N] before the sum over heads). Here the keys are read in blocks of 16,
 * transposed once into registers' layout (d-major), and every query's heads are scored against
 * the block with broadcast multiply-adds: no horizontal sums, no [T, H, N] tensor, one [T, N]
 * row of scores per query, which the top-k then reads while it is in cache.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../vec.h"
#include "select.h"

enum { BLOCK = 16 };

typedef int32_t v16i __attribute__((vector_size(64)));

/* max(s, 0) per lane: the comparison's all-ones lanes keep s's bits */
static inline v16 relu16(v16 s) {
    v16 zero = {0};
    v16i bits;
    memcpy(&bits, &s, sizeof bits);
    bits &= (v16i)(s > zero);
    memcpy(&s, &bits, sizeof s);
    return s;
}

/* strict weak order: higher score first, then lower index */
static int before(const IndexScored *a, const IndexScored *b) {
    return a->score > b->score || (a->score == b->score && a->index < b->index);
}

static int by_score_desc(const void *a, const void *b) {
    const IndexScored *x = a, *y = b;
    return before(x, y) ? -1 : before(y, x) ? 1 : 0;
}

void index_top_k(const float *scores, int64_t n, int64_t k, int64_t *idx, IndexScored *heap) {
    int64_t keep = k < n ? k : n, size = 0;
    for (int64_t i = 0; i < n && keep > 0; i++) {
        IndexScored s = {scores[i], i};
        if (size < keep) { /* sift up while the parent is worse-kept than s */
            int64_t j = size++;
            while (j > 0 && before(&heap[(j - 1) / 2], &s)) {
                heap[j] = heap[(j - 1) / 2];
                j = (j - 1) / 2;
            }
            heap[j] = s;
        } else if (before(&s, &heap[0])) { /* replaces the worst kept: sift down */
            int64_t j = 0;
            for (;;) {
                int64_t l = 2 * j + 1, worst = j;
                const IndexScored *w = &s;
                if (l < keep && before(w, &heap[l])) worst = l, w = &heap[l];
                if (l + 1 < keep && before(w, &heap[l + 1])) worst = l + 1;
                if (worst == j) break;
                heap[j] = heap[worst];
                j = worst;
            }
            heap[j] = s;
        }
    }
    qsort(heap, (size_t)size, sizeof(IndexScored), by_score_desc);
    for (int64_t i = 0; i < k; i++) idx[i] = i < size ? heap[i].index : -1;
}

__attribute__((optimize("fp-contract=fast"))) void index_scores(const float *q, const float *w, const float *keys, int64_t n_keys, int64_t T, int64_t heads,
                  int64_t d, float *scores, int64_t ld_scores) {
    float kt[INDEX_MAX_DIM * BLOCK] __attribute__((aligned(64)));
    for (int64_t e0 = 0; e0 < n_keys; e0 += BLOCK) {
        int64_t m = n_keys - e0 < BLOCK ? n_keys - e0 : BLOCK;
        /* kt[i * 16 + j] = keys[e0 + j][i]; missing keys of the last block are zero */
        if (m < BLOCK) memset(kt, 0, sizeof(float) * (size_t)(d * BLOCK));
        for (int64_t j = 0; j < m; j++)
            for (int64_t i = 0; i < d; i++) kt[i * BLOCK + j] = keys[(e0 + j) * d + i];
        for (int64_t t = 0; t < T; t++) {
            v16 total = {0};
            for (int64_t h = 0; h < heads; h++) {
                const float *qh = q + (t * heads + h) * d;
                v16 a0 = {0}, a1 = {0};
                int64_t i = 0;
                for (; i + 2 <= d; i += 2) { /* two chains: a multiply-add's latency, not its rate */
                    a0 += qh[i] * load16(kt + i * BLOCK);
                    a1 += qh[i + 1] * load16(kt + (i + 1) * BLOCK);
                }
                if (i < d) a0 += qh[i] * load16(kt + i * BLOCK);
                total += w[t * heads + h] * relu16(a0 + a1);
            }
            float out[BLOCK];
            memcpy(out, &total, sizeof out);
            memcpy(scores + t * ld_scores + e0, out, sizeof(float) * (size_t)m);
        }
    }
}

int64_t index_max_dim(void) { return INDEX_MAX_DIM; }

int index_select(const float *q, const float *w, const float *keys, int64_t n_keys, const int64_t *visible, int64_t T,
                 int64_t heads, int64_t d, int64_t k, int64_t *idx, float *scores, IndexScored *heap) {
    if (d > INDEX_MAX_DIM || d < 1 || heads < 1 || k < 0) return -1;
    index_scores(q, w, keys, n_keys, T, heads, d, scores, n_keys);
    for (int64_t t = 0; t < T; t++) {
        int64_t seen = visible[t] < n_keys ? visible[t] : n_keys;
        index_top_k(scores + t * n_keys, seen < 0 ? 0 : seen, k, idx + t * k, heap);
    }
    return 0;
}
