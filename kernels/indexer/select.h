/* kernels/indexer/select.c: the lightning indexer's scores and top-k on the CPU (also linked into
 * kernels/decode_step/step.c, so decode and prefill select alike). */
#ifndef DEEPFIM_INDEX_SELECT_H
#define DEEPFIM_INDEX_SELECT_H

#include <stdint.h>

enum { INDEX_MAX_DIM = 256 };

typedef struct {
    float score;
    int64_t index;
} IndexScored;

/* scores[t * ld_scores + e] = sum_h w[t, h] * relu(q[t, h] . keys[e]) for e < n_keys;
 * q [T, heads, d], w [T, heads] (scale included), keys [n_keys, d]; d <= INDEX_MAX_DIM */
void index_scores(const float *q, const float *w, const float *keys, int64_t n_keys, int64_t T, int64_t heads,
                  int64_t d, float *scores, int64_t ld_scores);

/* the min(k, n) best of scores[0..n), best first (ties: lower index), into idx[0..k), -1 after;
 * kept: scratch of index_top_k_entries(k, n) entries */
void index_top_k(const float *scores, int64_t n, int64_t k, int64_t *idx, IndexScored *kept);

/* the scratch entries index_top_k needs for k of n */
int64_t index_top_k_entries(int64_t k, int64_t n);

/* INDEX_MAX_DIM, for the library's callers */
int64_t index_max_dim(void);

/* both, for T queries: query t sees keys [0, visible[t]); idx [T, k]; scores: T * n_keys floats
 * of scratch; kept: index_top_k_entries(k, n_keys) entries. Returns 0, or -1 for shapes it does not handle. */
int index_select(const float *q, const float *w, const float *keys, int64_t n_keys, const int64_t *visible, int64_t T,
                 int64_t heads, int64_t d, int64_t k, int64_t *idx, float *scores, IndexScored *kept);

#endif
