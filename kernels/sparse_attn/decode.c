/* V4 sparse attention for a few queries (decode, speculative verification) on the CPU, float32.
 *
 * Same math as kernels/sparse_attn/ref.py: per query and head one softmax over the raw keys of
 * the sliding window, the compressed entries (all visible ones for HCA, a top-k list for CSA,
 * -1 = none) and a sink logit whose value is zero; K = V. For one query the reference issues
 * ~40 torch ops per layer; here it is one call. Two passes over a query's keys: the logits, four
 * keys at a time (their lane sums reduced together: vec.h hsumv_x4), then one exponential per
 * key against the final maximum and the weighted sum of the keys. (One pass with a running
 * maximum paid a lane sum per key and rescaled the output whenever the maximum rose.)
 * Built on first use by cpu.py.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../vec.h"

#define MAX_DIM 1024
#define STACK_KEYS 1024 /* keys per query held on the stack; more are allocated */


/* logits[j] = scale * q . keys[j] for n keys (pointers), four at a time (vec.h vec_dot_x4) */
static void key_logits(const float *q, const float *const *keys, int64_t n, int64_t d, float scale, float *logits) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        vec_dot_x4(keys[j], keys[j + 1], keys[j + 2], keys[j + 3], q, d, logits + j);
        for (int r = 0; r < 4; r++) logits[j + r] *= scale;
    }
    for (; j < n; j++) logits[j] = vec_dot(q, keys[j], d) * scale;
}

/* o = sum of w[j] * keys[j] over n keys, summed in key order for every element (as a scalar loop
 * over the keys would), with the output in registers: 4 vectors of it per pass over the keys.
 * (A loop that added each key into o in memory loaded and stored the output once per key.) */
static void weighted_sum(const float *w, const float *const *keys, int64_t n, int64_t d, float *o) {
    int64_t i = 0;
    for (; i + 4 * VL <= d; i += 4 * VL) {
        vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t j = 0; j < n; j++) {
            const float *k = keys[j] + i;
            float wj = w[j];
            a0 += wj * loadv(k), a1 += wj * loadv(k + VL), a2 += wj * loadv(k + 2 * VL), a3 += wj * loadv(k + 3 * VL);
        }
        memcpy(o + i, &a0, sizeof a0), memcpy(o + i + VL, &a1, sizeof a1);
        memcpy(o + i + 2 * VL, &a2, sizeof a2), memcpy(o + i + 3 * VL, &a3, sizeof a3);
    }
    for (; i + VL <= d; i += VL) {
        vf a = {0};
        for (int64_t j = 0; j < n; j++) a += w[j] * loadv(keys[j] + i);
        memcpy(o + i, &a, sizeof a);
    }
    for (; i < d; i++) {
        float a = 0.f;
        for (int64_t j = 0; j < n; j++) a += w[j] * keys[j][i];
        o[i] = a;
    }
}

/* v[j] = exp(v[j] - m), VL keys at a time (vec.h expv) */
static void exp_shifted(float *v, int64_t n, float m) {
    int64_t j = 0;
    for (; j + VL <= n; j += VL) {
        vf e = expv(loadv(v + j) - m);
        memcpy(v + j, &e, sizeof e);
    }
    for (; j < n; j++) v[j] = exps(v[j] - m);
}

int sparse_attn_fwd(const float *q, const float *raw, int64_t n_raw, int64_t raw_start, int64_t q_start,
                    int64_t window, const float *comp, int64_t n_comp, const int64_t *visible, const int64_t *topk,
                    int64_t k, const float *sink, float scale, int64_t batch, int64_t tokens, int64_t heads,
                    int64_t d, float *out) {
    if (d > MAX_DIM) return -1;
    /* a query's keys: its window's raw rows and the compressed entries it sees */
    int64_t most = (n_raw > 0 ? n_raw : 0) + (topk != 0 ? k : n_comp) + 1;
    const float *on_stack_keys[STACK_KEYS], **keys = on_stack_keys;
    float on_stack_logits[STACK_KEYS], *logits = on_stack_logits;
    if (most > STACK_KEYS) { /* HCA at long context: n_comp entries */
        keys = malloc(sizeof(float *) * (size_t)most), logits = malloc(sizeof(float) * (size_t)most);
        if (!keys || !logits) { /* NaN outputs: the caller's check of the logits reports it */
            free(keys), free(logits);
            for (int64_t i = 0; i < batch * tokens * heads * d; i++) out[i] = NAN;
            return -2;
        }
    }
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t t = 0; t < tokens; t++) {
            int64_t pos = q_start + t, n = 0;
            int64_t lo = pos - window + 1 > raw_start ? pos - window + 1 : raw_start;
            int64_t hi = pos < raw_start + n_raw - 1 ? pos : raw_start + n_raw - 1; /* inclusive */
            for (int64_t p = lo; p <= hi; p++) keys[n++] = raw + (b * n_raw + p - raw_start) * d;
            if (comp != 0 && topk != 0) {
                const int64_t *sel = topk + (b * tokens + t) * k;
                for (int64_t j = 0; j < k; j++)
                    if (sel[j] >= 0 && sel[j] < n_comp) keys[n++] = comp + (b * n_comp + sel[j]) * d;
            } else if (comp != 0) {
                int64_t vis = visible[t] < n_comp ? visible[t] : n_comp;
                for (int64_t e = 0; e < vis; e++) keys[n++] = comp + (b * n_comp + e) * d;
            }
            for (int64_t h = 0; h < heads; h++) {
                const float *qv = q + ((b * tokens + t) * heads + h) * d;
                float *o = out + ((b * tokens + t) * heads + h) * d;
                key_logits(qv, keys, n, d, scale, logits);
                /* the sink: a logit with a zero value, in the denominator only */
                float m = sink[h];
                for (int64_t j = 0; j < n; j++) m = logits[j] > m ? logits[j] : m;
                float denom = exps(sink[h] - m);
                exp_shifted(logits, n, m);
                for (int64_t j = 0; j < n; j++) denom += logits[j];
                weighted_sum(logits, keys, n, d, o);
                for (int64_t i = 0; i < d; i++) o[i] /= denom;
            }
        }
    }
    if (keys != on_stack_keys) free(keys), free(logits);
    return 0;
}
