/* mHC on the CPU: the Sinkhorn-Knopp projection of the mixing logits (forward and backward, one
 * n x n matrix per token) and, for inference on a few tokens, the whole of `hc_pre` fused.
 *
 * Sinkhorn: the same math as kernels/mhc/ref.py `sinkhorn`: row softmax + eps, column normalisation, then
 * iters-1 rounds of row and column normalisation, each dividing by (sum + eps). The torch version
 * issues ~120 tiny ops per call (and ~2x that in backward); on a CPU their dispatch cost, not the
 * arithmetic, dominates both decode latency and training steps. Built on first use by cpu.py.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../vec.h"

#define MAX_N 8
#define MAX_STEPS 128

static void row_normalise(float *m, int n, float eps) {
    for (int i = 0; i < n; i++) {
        float s = 0.f;
        for (int j = 0; j < n; j++) s += m[i * n + j];
        float d = s + eps;
        for (int j = 0; j < n; j++) m[i * n + j] /= d;
    }
}

static void col_normalise(float *m, int n, float eps) {
    for (int j = 0; j < n; j++) {
        float s = 0.f;
        for (int i = 0; i < n; i++) s += m[i * n + j];
        float d = s + eps;
        for (int i = 0; i < n; i++) m[i * n + j] /= d;
    }
}

static void softmax_rows(const float *l, float *s, int n) {
    for (int i = 0; i < n; i++) {
        float mx = l[i * n];
        for (int j = 1; j < n; j++) mx = fmaxf(mx, l[i * n + j]);
        float z = 0.f;
        for (int j = 0; j < n; j++) { s[i * n + j] = expf(l[i * n + j] - mx); z += s[i * n + j]; }
        for (int j = 0; j < n; j++) s[i * n + j] /= z;
    }
}

typedef float f4 __attribute__((vector_size(16)));

/* the iterations for n = 4 (V4's four streams) with a row per vector: a column's sum is the rows
 * added in order, a row's the columns of the transpose; each element is summed, offset by eps
 * and divided exactly as row_normalise and col_normalise do it, the four lanes at once (the
 * scalar divisions were most of the Sinkhorn, 3% of a prefill piece) */
static void sinkhorn_iterations4(float *m, int iters, float eps) {
    f4 r[4], zero = {0, 0, 0, 0};
    memcpy(r, m, sizeof r);
    for (int it = 0; it < iters; it++) {
        if (it > 0) { /* rows: the transpose's columns */
            f4 a = __builtin_shufflevector(r[0], r[1], 0, 4, 1, 5), b = __builtin_shufflevector(r[2], r[3], 0, 4, 1, 5);
            f4 c = __builtin_shufflevector(r[0], r[1], 2, 6, 3, 7), e = __builtin_shufflevector(r[2], r[3], 2, 6, 3, 7);
            f4 c0 = __builtin_shufflevector(a, b, 0, 1, 4, 5), c1 = __builtin_shufflevector(a, b, 2, 3, 6, 7);
            f4 c2 = __builtin_shufflevector(c, e, 0, 1, 4, 5), c3 = __builtin_shufflevector(c, e, 2, 3, 6, 7);
            f4 d = (((zero + c0) + c1) + c2) + c3 + eps; /* lane i: row i's sum + eps */
            for (int i = 0; i < 4; i++) r[i] /= (f4){d[i], d[i], d[i], d[i]};
        }
        f4 d = (((zero + r[0]) + r[1]) + r[2]) + r[3] + eps; /* lane j: column j's sum + eps */
        for (int i = 0; i < 4; i++) r[i] /= d;
    }
    memcpy(m, r, sizeof r);
}

int sinkhorn_fwd(const float *logits, float *out, int64_t count, int n, int iters, float eps) {
    if (n > MAX_N || iters < 1) return -1;
    int nn = n * n;
    for (int64_t t = 0; t < count; t++) {
        float *m = out + t * nn;
        softmax_rows(logits + t * nn, m, n);
        for (int k = 0; k < nn; k++) m[k] += eps;
        if (n == 4) {
            sinkhorn_iterations4(m, iters, eps);
            continue;
        }
        col_normalise(m, n, eps);
        for (int it = 1; it < iters; it++) { row_normalise(m, n, eps); col_normalise(m, n, eps); }
    }
    return 0;
}

/* Backward by replaying the forward and keeping every intermediate matrix (2 * iters of them). */
int sinkhorn_bwd(const float *logits, const float *grad_out, float *grad_in, int64_t count, int n, int iters,
                 float eps) {
    if (n > MAX_N || iters < 1 || 2 * iters > MAX_STEPS) return -1;
    int nn = n * n;
    float soft[MAX_N * MAX_N];
    float states[MAX_STEPS][MAX_N * MAX_N]; /* states[k] = input of normalisation step k */
    float g[MAX_N * MAX_N], gx[MAX_N * MAX_N];
    int steps = 2 * iters - 1; /* col, then (row, col) x (iters - 1) */
    for (int64_t t = 0; t < count; t++) {
        float m[MAX_N * MAX_N];
        softmax_rows(logits + t * nn, soft, n);
        for (int k = 0; k < nn; k++) m[k] = soft[k] + eps;
        for (int s = 0; s < steps; s++) {
            memcpy(states[s], m, sizeof(float) * nn);
            int is_col = (s % 2) == 0;
            if (is_col) col_normalise(m, n, eps); else row_normalise(m, n, eps);
        }
        memcpy(g, grad_out + t * nn, sizeof(float) * nn);
        for (int s = steps - 1; s >= 0; s--) {
            const float *x = states[s];
            int is_col = (s % 2) == 0;
            for (int a = 0; a < n; a++) {
                /* a indexes columns for a column step, rows for a row step */
                float sum = 0.f, dot = 0.f;
                for (int b = 0; b < n; b++) {
                    int k = is_col ? b * n + a : a * n + b;
                    sum += x[k];
                }
                float d = sum + eps;
                for (int b = 0; b < n; b++) {
                    int k = is_col ? b * n + a : a * n + b;
                    dot += g[k] * x[k];
                }
                for (int b = 0; b < n; b++) {
                    int k = is_col ? b * n + a : a * n + b;
                    gx[k] = g[k] / d - dot / (d * d);
                }
            }
            memcpy(g, gx, sizeof(float) * nn);
        }
        /* through softmax: dl = s * (g - sum_j g s) per row (+eps has no gradient) */
        float *out = grad_in + t * nn;
        for (int i = 0; i < n; i++) {
            float dot = 0.f;
            for (int j = 0; j < n; j++) dot += g[i * n + j] * soft[i * n + j];
            for (int j = 0; j < n; j++) out[i * n + j] = soft[i * n + j] * (g[i * n + j] - dot);
        }
    }
    return 0;
}

/* kernels/mhc/ref.py `hc_pre` for T tokens (inference: no backward): RMS-normalised streams
 * projected by fn, then pre/post gates, Sinkhorn'd comb and the pre-weighted stream sum. In
 * torch this is ~15 ops per call, twice per layer per decoded token. */
int hc_pre_fwd(const float *x, const float *fn, const float *base, const float *scale, int64_t count, int n,
               int64_t dim, int iters, float eps, float norm_eps, float *u, float *post, float *comb) {
    if (n > MAX_N || iters < 1) return -1;
    int m = (2 + n) * n, nn = n * n;
    int64_t nd = (int64_t)n * dim;
    float mix[(2 + MAX_N) * MAX_N], pre[MAX_N], logits[MAX_N * MAX_N];
    for (int64_t t = 0; t < count; t++) {
        const float *xt = x + t * nd;
        float inv_rms = 1.0f / sqrtf(vec_dot(xt, xt, nd) / (float)nd + norm_eps);
        int r = 0;
        for (; r + 4 <= m; r += 4) { /* four chains side by side: one alone waits on its adds */
            const float *w = fn + (int64_t)r * nd;
            vec_dot_x4(w, w + nd, w + 2 * nd, w + 3 * nd, xt, nd, mix + r);
            for (int k = r; k < r + 4; k++) mix[k] *= inv_rms;
        }
        for (; r < m; r++) mix[r] = vec_dot(fn + (int64_t)r * nd, xt, nd) * inv_rms;
        for (int i = 0; i < n; i++) {
            pre[i] = 1.0f / (1.0f + expf(-(mix[i] * scale[0] + base[i]))) + eps;
            post[t * n + i] = 2.0f / (1.0f + expf(-(mix[n + i] * scale[1] + base[n + i])));
        }
        for (int k = 0; k < nn; k++) logits[k] = mix[2 * n + k] * scale[2] + base[2 * n + k];
        sinkhorn_fwd(logits, comb + t * nn, 1, n, iters, eps);
        float *ut = u + t * dim;
        int64_t dv = dim & ~(int64_t)(VL - 1), d = 0;
        for (; d < dv; d += VL) { /* VL elements at a time, each summed in the tail's order */
            vf acc = {0};
            for (int i = 0; i < n; i++) acc += pre[i] * loadv(xt + (int64_t)i * dim + d);
            memcpy(ut + d, &acc, sizeof acc);
        }
        for (; d < dim; d++) {
            float acc = 0.f;
            for (int i = 0; i < n; i++) acc += pre[i] * xt[(int64_t)i * dim + d];
            ut[d] = acc;
        }
    }
    return 0;
}
