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
