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
 * j+4, then (0 + 2) + (1 + 3)), so results do not depend on which path summed them; with AVX-512
 * the four are reduced together (~15 instructions where four hsum16 take ~40: most of a short
 * row's dot product) */
#ifdef __AVX512F__
#include <immintrin.h>
static inline void hsum16x4(v16 a, v16 b, v16 c, v16 d, float *y) {
    __m512 va, vb, vc, vd;
    memcpy(&va, &a, sizeof va), memcpy(&vb, &b, sizeof vb), memcpy(&vc, &c, sizeof vc), memcpy(&vd, &d, sizeof vd);
    __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(va, vb, 0x44), _mm512_shuffle_f32x4(va, vb, 0xEE)); /* a.s8|b.s8 */
    __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(vc, vd, 0x44), _mm512_shuffle_f32x4(vc, vd, 0xEE));
    __m512 s4 = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD)); /* a..d s4 */
    __m512 f = _mm512_add_ps(s4, _mm512_permute_ps(s4, 0x4E)); /* (0 + 2), (1 + 3) in each 128-bit lane */
    __m512 g = _mm512_add_ps(f, _mm512_permute_ps(f, 0xB1));   /* (0 + 2) + (1 + 3) */
    __m512i at = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm_storeu_ps(y, _mm512_castps512_ps128(_mm512_permutexvar_ps(at, g)));
}
#else
static inline void hsum16x4(v16 a, v16 b, v16 c, v16 d, float *y) {
    y[0] = hsum16(a), y[1] = hsum16(b), y[2] = hsum16(c), y[3] = hsum16(d);
}
#endif

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
