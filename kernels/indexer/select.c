/* The lightning indexer's selection on the CPU (model.py Indexer.forward after the projections):
 * for each query t, score every key it may see,
 *     I[t, e] = sum_h w[t, h] * relu(q[t, h] . k[e])        (w already holds the 1/sqrt(d) scale)
 * and keep the k best, best first (ties: the lower index), -1 where fewer than k are visible.
 *
 * Why: at long context this is most of a prefill (16K tokens: 40% of a 128-token chunk; the
 * score tensor is [T, H, N] before the sum over heads). Here the keys are read in blocks of VL
 * (a vector's lanes, vec.h), transposed once into registers' layout (d-major), and every query's
 * heads are scored against the block with broadcast multiply-adds, eight heads' chains at a time:
 * no horizontal sums, no [T, H, N] tensor, one [T, N] row of scores per query, which the top-k
 * then reads while it is in cache (README.md: how the top-k skips most keys).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../vec.h"

#if VL == 16 && defined(__AVX512F__)
#include <immintrin.h>
#endif
#include "select.h"

enum { BLOCK = VL };

/* strict weak order: higher score first, then lower index */
static int before(const IndexScored *a, const IndexScored *b) {
    return a->score > b->score || (a->score == b->score && a->index < b->index);
}

/* whether any lane of a comparison's result is set: one mask test with AVX-512, else an OR
 * tree over its lanes (which cost 16 lane extractions a block, a tenth of the top-k) */
static inline int anyv(vfi m) {
#if VL == 16 && defined(__AVX512F__)
    return _mm512_test_epi32_mask((__m512i)m, (__m512i)m) != 0;
#else
    int32_t l[VL];
    memcpy(l, &m, sizeof l);
    int32_t any = 0;
    for (int j = 0; j < VL; j++) any |= l[j];
    return any != 0;
#endif
}

/* the largest lane, by a tree (depth log2 VL; the scalar chain waited on every compare). A
 * maximum does not depend on the order it is taken in. */
static inline float maxv(vf v) {
#if VL == 16 /* in registers: GCC kept the array version's lanes on the stack */
    vf h = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    v = selectv(h > v, h, v);
    h = __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
    v = selectv(h > v, h, v);
    h = __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    v = selectv(h > v, h, v);
    h = __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    v = selectv(h > v, h, v);
    return v[0];
#else
    float l[VL];
    memcpy(l, &v, sizeof l);
    for (int w = VL / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) l[i] = l[i + w] > l[i] ? l[i + w] : l[i];
    return l[0];
#endif
}

/* sorts c[0..n) best first (`before`): insertion, for the k kept (64 for V4): qsort's calls
 * through a comparison pointer were a fifth of the top-k */
static void sort_best_first(IndexScored *c, int64_t n) {
    for (int64_t i = 1; i < n; i++) {
        IndexScored x = c[i];
        int64_t j = i;
        for (; j > 0 && before(&x, &c[j - 1]); j--) c[j] = c[j - 1];
        c[j] = x;
    }
}

/* `name`(c, n, k): moves the k best of c[0..n) (T, `first(a, b)`: a strictly before b) to c[0..k),
 * the k-th best at c[k - 1]; returns it. Quickselect (Hoare partition around the middle one). */
#define QUICKSELECT(name, T, first)                                                                  \
    static T name(T *c, int64_t n, int64_t k) {                                                      \
        int64_t lo = 0, hi = n - 1, want = k - 1;                                                    \
        while (lo < hi) {                                                                            \
            T pivot = c[lo + (hi - lo) / 2];                                                         \
            int64_t i = lo, j = hi;                                                                  \
            while (i <= j) {                                                                         \
                while (i <= hi && first(c[i], pivot)) i++;                                           \
                while (j >= lo && first(pivot, c[j])) j--;                                           \
                if (i <= j) {                                                                        \
                    T t = c[i];                                                                      \
                    c[i++] = c[j];                                                                   \
                    c[j--] = t;                                                                      \
                }                                                                                    \
            }                                                                                        \
            if (want <= j) hi = j;                                                                   \
            else if (want >= i) lo = i;                                                              \
            else break;                                                                              \
        }                                                                                            \
        return c[want];                                                                              \
    }
#define SCORED_FIRST(a, b) before(&(a), &(b)) /* a strict total order: indices are distinct */
#define LARGER_FIRST(a, b) ((a) > (b))
QUICKSELECT(keep_best, IndexScored, SCORED_FIRST)
QUICKSELECT(kth_largest, float, LARGER_FIRST)

int64_t index_top_k_entries(int64_t k, int64_t n) {
    int64_t entries = 2 * (k > 0 ? k : 1), floats = n / BLOCK; /* candidates, then block maxima */
    return entries + (floats + 3) / 4;
}

void index_top_k(const float *scores, int64_t n, int64_t k, int64_t *idx, IndexScored *kept) {
    /* The bar a score must pass to be a candidate: with at least k whole blocks, each of the
     * k blocks with the highest maxima holds a key scoring at least the k-th highest maximum, so
     * no key below it is among the k best (keys scoring it exactly may be). Candidates go into
     * `kept` (2k entries); when it is full, the k best stay and the k-th best score is the bar:
     * a later index never wins a tie, so now a score must be above it. Whole blocks below the
     * bar are skipped at once: most of them. */
    int64_t keep = k < n ? k : n, size = 0, room = 2 * (keep > 0 ? keep : 1), blocks = n / BLOCK;
    float bar = 0;
    int rule = 0; /* 0: every key is a candidate, 1: scores >= bar, 2: scores > bar */
    if (keep > 0 && blocks >= keep) {
        float *maxima = (float *)(kept + room);
        for (int64_t b = 0; b < blocks; b++) {
            maxima[b] = maxv(loadv(scores + b * BLOCK));
        }
        bar = kth_largest(maxima, blocks, keep), rule = 1;
    }
    for (int64_t i = 0; i < n && keep > 0; i += BLOCK) {
        int64_t m = n - i < BLOCK ? n - i : BLOCK;
        if (rule && m == BLOCK) {
            vf v = loadv(scores + i), x = v - v + bar;
            if (!anyv(rule == 1 ? (vfi)(v >= x) : (vfi)(v > x))) continue;
        }
        for (int64_t j = i; j < i + m; j++) {
            if (rule == 1 ? !(scores[j] >= bar) : rule == 2 ? !(scores[j] > bar) : 0) continue;
            kept[size++] = (IndexScored){scores[j], j};
            if (size == room) {
                keep_best(kept, size, keep);
                size = keep, bar = kept[keep - 1].score, rule = 2;
            }
        }
    }
    if (size > keep) keep_best(kept, size, keep);
    sort_best_first(kept, keep);
    for (int64_t j = 0; j < k; j++) idx[j] = j < keep ? kept[j].index : -1;
}

/* A group of G heads of query t against two transposed key blocks: G independent chains of
 * multiply-adds per block (one per head; one or two chains wait on the multiply-add's latency,
 * eight keep both of a core's FMA units busy), and each broadcast of a query element feeds
 * both blocks (one load per multiply-add kept the loads, not the FMA units, the limit). */
#define INDEX_HEAD_GROUP_PAIR(G)                                                                     \
    static inline __attribute__((always_inline, optimize("fp-contract=fast"))) void index_pair##G(   \
        const float *q, const float *w, const float *k0, const float *k1, int64_t d, vf *t0, vf *t1) { \
        vf a[G], b[G];                                                                              \
        for (int j = 0; j < G; j++) a[j] = (vf){0}, b[j] = (vf){0};                                  \
        for (int64_t i = 0; i < d; i++) {                                                            \
            vf x0 = loadv(k0 + i * BLOCK), x1 = loadv(k1 + i * BLOCK);                               \
            _Pragma("GCC unroll 8") for (int j = 0; j < G; j++) {                                    \
                float qj = q[j * d + i];                                                             \
                a[j] += qj * x0;                                                                     \
                b[j] += qj * x1;                                                                     \
            }                                                                                        \
        }                                                                                            \
        vf s0 = {0}, s1 = {0};                                                                       \
        for (int j = 0; j < G; j++) s0 += w[j] * reluv(a[j]), s1 += w[j] * reluv(b[j]);               \
        *t0 += s0, *t1 += s1;                                                                        \
    }
INDEX_HEAD_GROUP_PAIR(8)
INDEX_HEAD_GROUP_PAIR(4)
INDEX_HEAD_GROUP_PAIR(1)

/* kt[i * BLOCK + j] = keys[e0 + j][i] for the m keys of a block from e0; missing keys are zero */
static void transpose_block(const float *keys, int64_t e0, int64_t m, int64_t d, float *kt) {
    if (m < BLOCK) memset(kt, 0, sizeof(float) * (size_t)(d * BLOCK));
    for (int64_t j = 0; j < m; j++)
        for (int64_t i = 0; i < d; i++) kt[i * BLOCK + j] = keys[(e0 + j) * d + i];
}

__attribute__((optimize("fp-contract=fast"))) void index_scores(const float *q, const float *w, const float *keys,
                                                                int64_t n_keys, int64_t T, int64_t heads, int64_t d,
                                                                float *scores, int64_t ld_scores) {
    float kt[INDEX_MAX_DIM * BLOCK] __attribute__((aligned(64)));
    float kt2[INDEX_MAX_DIM * BLOCK] __attribute__((aligned(64)));
    for (int64_t e0 = 0; e0 < n_keys; e0 += 2 * BLOCK) { /* two blocks; the last may be partial or empty */
        int64_t left = n_keys - e0, m0 = left < BLOCK ? left : BLOCK;
        int64_t m1 = left - m0 < BLOCK ? left - m0 : BLOCK;
        transpose_block(keys, e0, m0, d, kt);
        transpose_block(keys, e0 + BLOCK, m1, d, kt2);
        for (int64_t t = 0; t < T; t++) {
            const float *qt = q + t * heads * d, *wt = w + t * heads;
            vf t0 = {0}, t1 = {0};
            int64_t h = 0;
            for (; h + 8 <= heads; h += 8) index_pair8(qt + h * d, wt + h, kt, kt2, d, &t0, &t1);
            for (; h + 4 <= heads; h += 4) index_pair4(qt + h * d, wt + h, kt, kt2, d, &t0, &t1);
            for (; h < heads; h++) index_pair1(qt + h * d, wt + h, kt, kt2, d, &t0, &t1);
            float out[2 * BLOCK];
            memcpy(out, &t0, sizeof t0);
            memcpy(out + BLOCK, &t1, sizeof t1);
            memcpy(scores + t * ld_scores + e0, out, sizeof(float) * (size_t)m0);
            if (m1) memcpy(scores + t * ld_scores + e0 + BLOCK, out + BLOCK, sizeof(float) * (size_t)m1);
        }
    }
}

int64_t index_max_dim(void) { return INDEX_MAX_DIM; }

int index_select(const float *q, const float *w, const float *keys, int64_t n_keys, const int64_t *visible, int64_t T,
                 int64_t heads, int64_t d, int64_t k, int64_t *idx, float *scores, IndexScored *kept) {
    if (d > INDEX_MAX_DIM || d < 1 || heads < 1 || k < 0) return -1;
    index_scores(q, w, keys, n_keys, T, heads, d, scores, n_keys);
    for (int64_t t = 0; t < T; t++) {
        int64_t seen = visible[t] < n_keys ? visible[t] : n_keys;
        index_top_k(scores + t * n_keys, seen < 0 ? 0 : seen, k, idx + t * k, kept);
    }
    return 0;
}
