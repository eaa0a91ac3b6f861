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

/* The heads of a query share its keys (K = V, one kv head): four heads go over the keys together,
 * so each key is read from memory once for the four instead of once per head (a query's keys
 * are ~250 rows of the state, read 8 times per query before). Every logit and output element is
 * summed exactly as key_logits and weighted_sum sum it (the same lane chains, the same lane
 * tree), so the results are bit for bit the per-head ones. For d a multiple of VL. */
enum { HEAD_GROUP = 4 };

/* key_logits for four heads' queries (`qs` apart) into logits[h * ld + j] */
static void key_logits_x4(const float *q, int64_t qs, const float *const *keys, int64_t n, int64_t d, float scale,
                          float *logits, int64_t ld) {
    const float *q0 = q, *q1 = q + qs, *q2 = q + 2 * qs, *q3 = q + 3 * qs;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const float *k0 = keys[j], *k1 = keys[j + 1], *k2 = keys[j + 2], *k3 = keys[j + 3];
        vf a[4][4];
        memset(a, 0, sizeof a);
        for (int64_t i = 0; i < d; i += VL) {
            vf x0 = loadv(q0 + i), x1 = loadv(q1 + i), x2 = loadv(q2 + i), x3 = loadv(q3 + i);
            vf r0 = loadv(k0 + i), r1 = loadv(k1 + i), r2 = loadv(k2 + i), r3 = loadv(k3 + i);
            a[0][0] += r0 * x0, a[0][1] += r1 * x0, a[0][2] += r2 * x0, a[0][3] += r3 * x0;
            a[1][0] += r0 * x1, a[1][1] += r1 * x1, a[1][2] += r2 * x1, a[1][3] += r3 * x1;
            a[2][0] += r0 * x2, a[2][1] += r1 * x2, a[2][2] += r2 * x2, a[2][3] += r3 * x2;
            a[3][0] += r0 * x3, a[3][1] += r1 * x3, a[3][2] += r2 * x3, a[3][3] += r3 * x3;
        }
        for (int h = 0; h < HEAD_GROUP; h++) {
            float *lh = logits + h * ld + j;
            hsumv_x4(a[h][0], a[h][1], a[h][2], a[h][3], lh);
            for (int r = 0; r < 4; r++) lh[r] *= scale;
        }
    }
    for (; j < n; j++)
        for (int h = 0; h < HEAD_GROUP; h++) logits[h * ld + j] = vec_dot(q + h * qs, keys[j], d) * scale;
}

/* weighted_sum for four heads' weights (w[h * ld + j]) into o + h * os */
static void weighted_sum_x4(const float *w, int64_t ld, const float *const *keys, int64_t n, int64_t d, float *o,
                            int64_t os) {
    int64_t i = 0;
    for (; i + 4 * VL <= d; i += 4 * VL) {
        vf a[4][4];
        memset(a, 0, sizeof a);
        for (int64_t j = 0; j < n; j++) {
            const float *k = keys[j] + i;
            vf k0 = loadv(k), k1 = loadv(k + VL), k2 = loadv(k + 2 * VL), k3 = loadv(k + 3 * VL);
            for (int h = 0; h < HEAD_GROUP; h++) {
                float wj = w[h * ld + j];
                a[h][0] += wj * k0, a[h][1] += wj * k1, a[h][2] += wj * k2, a[h][3] += wj * k3;
            }
        }
        for (int h = 0; h < HEAD_GROUP; h++) memcpy(o + h * os + i, a[h], sizeof a[h]);
    }
    for (; i < d; i += VL) {
        vf a[4] = {{0}};
        for (int64_t j = 0; j < n; j++) {
            vf k = loadv(keys[j] + i);
            for (int h = 0; h < HEAD_GROUP; h++) a[h] += w[h * ld + j] * k;
        }
        for (int h = 0; h < HEAD_GROUP; h++) memcpy(o + h * os + i, &a[h], sizeof a[h]);
    }
}

/* the largest of v[0..n) and m, VL lanes at a time (a scalar chain waited on each compare:
 * a sixth of the attention); a maximum does not depend on the order it is taken in */
static float max_of(const float *v, int64_t n, float m) {
    int64_t j = 0;
    if (n >= VL) {
        vf a = loadv(v);
        for (j = VL; j + VL <= n; j += VL) {
            vf x = loadv(v + j);
            a = selectv(x > a, x, a);
        }
        float l[VL];
        memcpy(l, &a, sizeof l);
        for (int i = 0; i < VL; i++) m = l[i] > m ? l[i] : m;
    }
    for (; j < n; j++) m = v[j] > m ? v[j] : m;
    return m;
}

/* v[j] = exp(v[j] - m), VL keys at a time (vec.h expv); returns their sum (VL lane chains and
 * the lane tree, then the tail in order) */
static float exp_shifted(float *v, int64_t n, float m) {
    int64_t j = 0;
    vf sum = {0};
    for (; j + VL <= n; j += VL) {
        vf e = expv(loadv(v + j) - m);
        sum += e;
        memcpy(v + j, &e, sizeof e);
    }
    float total = hsumv(sum);
    for (; j < n; j++) total += v[j] = exps(v[j] - m);
    return total;
}

int sparse_attn_fwd(const float *q, const float *raw, int64_t n_raw, int64_t raw_start, int64_t q_start,
                    int64_t window, const float *comp, int64_t n_comp, const int64_t *visible, const int64_t *topk,
                    int64_t k, const float *sink, float scale, int64_t batch, int64_t tokens, int64_t heads,
                    int64_t d, float *out) {
    if (d > MAX_DIM) return -1;
    /* a query's keys: its window's raw rows and the compressed entries it sees */
    int64_t most = (n_raw > 0 ? n_raw : 0) + (topk != 0 ? k : n_comp) + 1;
    const float *on_stack_keys[STACK_KEYS], **keys = on_stack_keys;
    float on_stack_logits[HEAD_GROUP * STACK_KEYS], *logits = on_stack_logits; /* a head group's */
    if (most > STACK_KEYS) { /* HCA at long context: n_comp entries */
        keys = malloc(sizeof(float *) * (size_t)most), logits = malloc(sizeof(float) * HEAD_GROUP * (size_t)most);
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
            for (int64_t h0 = 0; h0 < heads;) {
                int group = heads - h0 >= HEAD_GROUP && d % VL == 0 ? HEAD_GROUP : 1;
                const float *qv = q + ((b * tokens + t) * heads + h0) * d;
                float *o = out + ((b * tokens + t) * heads + h0) * d;
                if (group == HEAD_GROUP)
                    key_logits_x4(qv, d, keys, n, d, scale, logits, most);
                else
                    key_logits(qv, keys, n, d, scale, logits);
                float denom[HEAD_GROUP];
                for (int g = 0; g < group; g++) {
                    /* the sink: a logit with a zero value, in the denominator only */
                    float *lg = logits + g * most, m = max_of(lg, n, sink[h0 + g]);
                    denom[g] = exps(sink[h0 + g] - m) + exp_shifted(lg, n, m);
                }
                if (group == HEAD_GROUP)
                    weighted_sum_x4(logits, most, keys, n, d, o, d);
                else
                    weighted_sum(logits, keys, n, d, o);
                for (int g = 0; g < group; g++)
                    for (int64_t i = 0; i < d; i++) o[g * d + i] /= denom[g];
                h0 += group;
            }
        }
    }
    if (keys != on_stack_keys) free(keys), free(logits);
    return 0;
}
