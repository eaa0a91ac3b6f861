/* Float32 vector helpers shared by the CPU C kernels (GCC/Clang vector extensions: AVX-512,
 * AVX2 or SSE, whatever -march=native gives). cbuild hashes this header with each source. */
#ifndef DEEPFIM_VEC_H
#define DEEPFIM_VEC_H

#include <stdint.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));

static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* a tree of vector adds: a scalar loop over the 16 lanes is a 16-add dependency chain per row */
static inline float hsum16(v16 v) {
    v8 lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    v8 s8 = lo + hi;
    v4 a, b;
    memcpy(&a, &s8, sizeof a);
    memcpy(&b, (const char *)&s8 + sizeof a, sizeof b);
    v4 s4 = a + b;
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

/* sum of a[i] * b[i]: 16 independent lanes, no reassociation flags needed */
static inline float vec_dot(const float *a, const float *b, int64_t n) {
    v16 acc = {0};
    int64_t n16 = n & ~(int64_t)15;
    for (int64_t i = 0; i < n16; i += 16) acc += load16(a + i) * load16(b + i);
    float s = hsum16(acc);
    for (int64_t i = n16; i < n; i++) s += a[i] * b[i];
    return s;
}

#endif
