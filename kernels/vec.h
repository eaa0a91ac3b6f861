/* Float32 vector helpers shared by the CPU C kernels (GCC/Clang vector extensions: AVX-512,
 * AVX2 or SSE/NEON, whatever -march=native gives). cbuild hashes this header with each source.
 *
 * The kernels compute on `vf`, a vector of the machine's own width: VL = 16 lanes with AVX-512,
 * 8 with AVX, 4 otherwise. A generic vector wider than the machine's is no register type for
 * GCC (v16 on AVX2): every operation on it went through the stack, and the kernels, written in
 * v16, ran 5-15x slower on an AVX2 core than their arithmetic needs. Sums run in VL-lane chains
 * reduced by one lane tree (`hsumv`), so a build gives the same results on every path through
 * it (batch invariance); builds for other widths differ from it by float32 rounding. */
#ifndef DEEPFIM_VEC_H
#define DEEPFIM_VEC_H

#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX__)
#define VL 8
#else
#define VL 4
#endif

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vfi __attribute__((vector_size(VL * 4)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

static inline vf loadv(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

#if VL == 16
typedef vf v16;

/* a tree of vector adds: a scalar loop over the 16 lanes is a 16-add dependency chain per row.
 * The halves are taken by shuffles, not by memcpy from the vector's address: an address-taken
 * accumulator stays in memory, and a dot product's loop then stored and reloaded it every step
 * (vec_dot in hc_pre: ~10 cycles a step instead of 4) */
static inline float hsum16(v16 v) {
    v8 s8 = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
            __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    v4 s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) + __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* hsum16 of four vectors into y[0..3], each by exactly hsum16's tree (lane i + lane i+8, then j +
 * j+4, then (0 + 2) + (1 + 3)), so results do not depend on which path summed them; the four are
 * reduced together (with AVX-512: ~15 instructions where four hsum16 take ~40, most of a short
 * row's dot product) */
static inline void hsum16x4(v16 a, v16 b, v16 c, v16 d, float *y) {
    v16 ab = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
             __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    v16 cd = __builtin_shufflevector(c, d, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
             __builtin_shufflevector(c, d, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    v16 s4 = __builtin_shufflevector(ab, cd, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
             __builtin_shufflevector(ab, cd, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    v16 f = s4 + __builtin_shufflevector(s4, s4, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
    v16 g = f + __builtin_shufflevector(f, f, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
    y[0] = g[0], y[1] = g[4], y[2] = g[8], y[3] = g[12];
}

#endif

/* the lanes of a vf summed by a fixed tree: halves added until four lanes are left, then
 * (0 + 2) + (1 + 3) (with VL = 16, hsum16's tree) */
static inline float hsumv(vf v) {
#if VL == 16
    return hsum16(v);
#else
#if VL == 8
    v4 s4 = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
#else
    v4 s4 = v;
#endif
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
#endif
}

/* hsumv of four vectors into y[0..3], each by exactly hsumv's tree */
static inline void hsumv_x4(vf a, vf b, vf c, vf d, float *y) {
#if VL == 16
    hsum16x4(a, b, c, d, y);
#else
    y[0] = hsumv(a), y[1] = hsumv(b), y[2] = hsumv(c), y[3] = hsumv(d);
#endif
}

/* max(s, 0) per lane: the comparison's all-ones lanes keep s's bits */
static inline vf reluv(vf s) {
    vf zero = {0};
    vfi bits;
    memcpy(&bits, &s, sizeof bits);
    bits &= (vfi)(s > zero);
    memcpy(&s, &bits, sizeof s);
    return s;
}

/* sum of a[i] * b[i]: VL independent lanes, no reassociation flags needed */
static inline float vec_dot(const float *a, const float *b, int64_t n) {
    vf acc = {0};
    int64_t nv = n & ~(int64_t)(VL - 1);
    for (int64_t i = 0; i < nv; i += VL) acc += loadv(a + i) * loadv(b + i);
    float s = hsumv(acc);
    for (int64_t i = nv; i < n; i++) s += a[i] * b[i];
    return s;
}

/* vec_dot(r_k, x, n) for four rows into y[0..3], each summed exactly as vec_dot sums it; the four
 * chains run side by side (a single chain waits on its adds) and share each load of x */
static inline void vec_dot_x4(const float *r0, const float *r1, const float *r2, const float *r3, const float *x,
                              int64_t n, float *y) {
    vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    int64_t nv = n & ~(int64_t)(VL - 1);
    for (int64_t i = 0; i < nv; i += VL) {
        vf xv = loadv(x + i);
        a0 += loadv(r0 + i) * xv, a1 += loadv(r1 + i) * xv, a2 += loadv(r2 + i) * xv, a3 += loadv(r3 + i) * xv;
    }
    hsumv_x4(a0, a1, a2, a3, y);
    for (int64_t i = nv; i < n; i++) y[0] += r0[i] * x[i], y[1] += r1[i] * x[i], y[2] += r2[i] * x[i], y[3] += r3[i] * x[i];
}

/* a where m's lane is set (all ones, as comparisons give), else b */
static inline vf selectv(vfi m, vf a, vf b) { return (vf)((m & (vfi)a) | (~m & (vfi)b)); }

/* exp per lane (Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, a degree-7 polynomial in r, times
 * 2^n by the exponent bits), within 2 float32 ulps of libm's expf. Why: the softmax weights of the
 * attention and the SiLU of the experts call expf once per key and per hidden unit (~7% of a
 * prefill piece, one call at a time). Inputs are clamped to [-87.3, 88.4] (below: ~1e-38, not 0).
 * A lane's result depends only on its own input, so every path that calls it agrees. */
static inline vf expv(vf x) {
    vf zero = {0}, lo = zero - 87.3365478515625f, hi = zero + 88.3762626647949f; /* broadcasts */
    x = selectv(x < lo, lo, x); /* -inf too (x - x, a NaN for it, made NaN bounds) */
    x = selectv(x > hi, hi, x);
    vf magic = zero + 12582912.0f; /* 1.5 * 2^23: adding it rounds to the nearest integer */
    vf n = (x * 1.44269504088896341f + magic) - magic;
    vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vf p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    vfi bits = (__builtin_convertvector(n, vfi) + 127) << 23;
    vf scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* expv for one value (the same polynomial, so a scalar tail agrees with the vector body) */
static inline float exps(float x) {
    vf v = {0};
    return expv(v + x)[0];
}

#endif
