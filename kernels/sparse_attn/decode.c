/* V4 sparse attention for a few queries (decode, speculative verification) on the CPU, float32.
 *
 * Same math as kernels/sparse_attn/ref.py: per query and head one softmax over the raw keys of
 * the sliding window, the compressed entries (all visible ones for HCA, a top-k list for CSA,
 * -1 = none) and a sink logit whose value is zero; K = V. For one query the reference issues
 * ~40 torch ops per layer; here it is one call. Online softmax: a running maximum rescales the
 * accumulated weights and output. Built on first use by cpu.py.
 */
#include <math.h>
#include <stdint.h>

#include "../vec.h"

#define MAX_DIM 1024


typedef struct {
    float max, sum;
    float acc[MAX_DIM];
} Softmax;

static void add_key(Softmax *s, const float *q, const float *key, int64_t d, float scale) {
    float logit = vec_dot(q, key, d) * scale;
    if (logit > s->max) {
        float shrink = expf(s->max - logit); /* 0 for the first key: max starts at -inf */
        s->sum *= shrink;
        for (int64_t i = 0; i < d; i++) s->acc[i] *= shrink;
        s->max = logit;
    }
    float w = expf(logit - s->max);
    s->sum += w;
    for (int64_t i = 0; i < d; i++) s->acc[i] += w * key[i];
}

int sparse_attn_fwd(const float *q, const float *raw, int64_t n_raw, int64_t raw_start, int64_t q_start,
                    int64_t window, const float *comp, int64_t n_comp, const int64_t *visible, const int64_t *topk,
                    int64_t k, const float *sink, float scale, int64_t batch, int64_t tokens, int64_t heads,
                    int64_t d, float *out) {
    if (d > MAX_DIM) return -1;
    Softmax s;
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t t = 0; t < tokens; t++) {
            int64_t pos = q_start + t;
            int64_t lo = pos - window + 1 > raw_start ? pos - window + 1 : raw_start;
            int64_t hi = pos < raw_start + n_raw - 1 ? pos : raw_start + n_raw - 1; /* inclusive */
            for (int64_t h = 0; h < heads; h++) {
                const float *qv = q + ((b * tokens + t) * heads + h) * d;
                s.max = -INFINITY;
                s.sum = 0.f;
                for (int64_t i = 0; i < d; i++) s.acc[i] = 0.f;
                for (int64_t p = lo; p <= hi; p++) add_key(&s, qv, raw + (b * n_raw + p - raw_start) * d, d, scale);
                if (comp != 0 && topk != 0) {
                    const int64_t *sel = topk + (b * tokens + t) * k;
                    for (int64_t j = 0; j < k; j++)
                        if (sel[j] >= 0 && sel[j] < n_comp) add_key(&s, qv, comp + (b * n_comp + sel[j]) * d, d, scale);
                } else if (comp != 0) {
                    int64_t vis = visible[t] < n_comp ? visible[t] : n_comp;
                    for (int64_t e = 0; e < vis; e++) add_key(&s, qv, comp + (b * n_comp + e) * d, d, scale);
                }
                /* the sink: a logit with a zero value, in the denominator only */
                float m = s.max > sink[h] ? s.max : sink[h];
                float keys_scale = s.sum > 0.f ? expf(s.max - m) : 0.f;
                float denom = s.sum * keys_scale + expf(sink[h] - m);
                float *o = out + ((b * tokens + t) * heads + h) * d;
                for (int64_t i = 0; i < d; i++) o[i] = s.acc[i] * keys_scale / denom;
            }
        }
    }
    return 0;
}
