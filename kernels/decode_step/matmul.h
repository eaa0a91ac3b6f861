/* Y = W X for the C decode step (step.c): four weight rows at a time, read from memory once and
 * applied to every row of X while they are in L1, for float32 or bfloat16 weights (bfloat16:
 * half the bytes to read, the same float32 arithmetic).
 *
 * A row of Y depends only on its own row of X, never on how many rows the call has: the sums
 * run in the same order for 1 row as for 256 (bf16: per 256-wide slice of the row, then the
 * slices in order). So a sequence decoded in a batch gets bit for bit the logits it gets alone.
 */
#ifndef DEEPFIM_DECODE_MATMUL_H
#define DEEPFIM_DECODE_MATMUL_H

#include <stdint.h>
#include <string.h>

#include "../vec.h"

#if VL == 8 && defined(__AVX2__)
#include <immintrin.h>
#endif

#ifndef MATMUL_MAX_ROWS
#error "define MATMUL_MAX_ROWS (the most rows of X one call multiplies) before including matmul.h"
#pragma GCC pop_options

#endif

/* matrices of at least this many multiply-adds per call are split across the OpenMP threads
 * (torch's own pool: its libgomp is the one already loaded); smaller ones are not worth a
 * fork-join. Threads that spin at a barrier while the machine is busy stall each other (with a
 * busy process beside it on 2 cores, decode went from 0.7 to 16 ms/token on 2 threads):
 * interactive callers ask for fewer. */
enum { PARALLEL_MIN = 1 << 15, BF16_SLICE = 256 };

/* The multiply-adds of these kernels are fused (one rounding instead of two, and twice the rate:
 * without it a core does half the multiply-adds a cycle it can). Every path through here (1 row,
 * several rows, bf16 widened or read as it is) performs the same fused operations in the same
 * order, so batch invariance holds bit for bit (tests/engine/model/test_decode_step_batch.py). */
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")

typedef uint16_t u16v __attribute__((vector_size(VL * 2)));
typedef uint32_t u32v __attribute__((vector_size(VL * 4)));

/* VL bfloat16 -> float32: the bf16 bits are the high half of the float's */
static inline vf loadv_bf16(const uint16_t *p) {
#if VL == 8 && defined(__AVX2__)
    /* one widening load; GCC builds the generic conversion from two 128-bit halves (6 instructions) */
    __m256i bits = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16);
#else
    u16v h;
    memcpy(&h, p, sizeof h);
    u32v bits = __builtin_convertvector(h, u32v) << 16;
#endif
    vf f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* dot_<name>(w, x, n) and rows4_<name>(w, ldw, x, n, y) for weights of element type W (read VL
 * at a time by LOADV, one at a time by TO_F32) against float32 x. rows4 multiplies the first n
 * elements of four weight rows (`ldw` elements apart) by x: each load of x feeds four
 * independent accumulator chains. */
#define WEIGHT_KERNELS(name, W, LOADV, TO_F32)                                                   \
    static inline float dot_##name(const W *w, const float *x, int64_t n) {                     \
        vf acc = {0};                                                                           \
        int64_t nv = n & ~(int64_t)(VL - 1);                                                    \
        for (int64_t i = 0; i < nv; i += VL) acc += LOADV(w + i) * loadv(x + i);                \
        float s = hsumv(acc);                                                                   \
        for (int64_t i = nv; i < n; i++) s += TO_F32(w[i]) * x[i];                              \
        return s;                                                                               \
    }                                                                                           \
    static inline void rows4_##name(const W *w, int64_t ldw, const float *x, int64_t n, float *y) { \
        const W *w0 = w, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;                        \
        int64_t nv = n & ~(int64_t)(VL - 1);                                                    \
        vf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                              \
        for (int64_t i = 0; i < nv; i += VL) {                                                  \
            vf xv = loadv(x + i);                                                               \
            a0 += LOADV(w0 + i) * xv;                                                           \
            a1 += LOADV(w1 + i) * xv;                                                           \
            a2 += LOADV(w2 + i) * xv;                                                           \
            a3 += LOADV(w3 + i) * xv;                                                           \
        }                                                                                       \
        float s[4];                                                                             \
        hsumv_x4(a0, a1, a2, a3, s);                                                            \
        float s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];                                       \
        for (int64_t i = nv; i < n; i++) {                                                      \
            s0 += TO_F32(w0[i]) * x[i];                                                         \
            s1 += TO_F32(w1[i]) * x[i];                                                         \
            s2 += TO_F32(w2[i]) * x[i];                                                         \
            s3 += TO_F32(w3[i]) * x[i];                                                         \
        }                                                                                       \
        y[0] = s0, y[1] = s1, y[2] = s2, y[3] = s3;                                             \
    }

#define AS_FLOAT(v) (v)
WEIGHT_KERNELS(f32, float, loadv, AS_FLOAT)
WEIGHT_KERNELS(bf16, uint16_t, loadv_bf16, bf16_to_f32)

/* Rows of x a tile takes at once: 4 x TILE_ROWS accumulators, four weight vectors and one of x
 * must stay in registers (32 vector registers with AVX-512 or on ARM, 16 with AVX2 or SSE) */
#if VL == 16 || defined(__aarch64__)
#define TILE_ROWS 4
#else
#define TILE_ROWS 2
#endif

/* rows4_f32 for TILE_ROWS rows of x at once (`ldx` apart) into y[t * ldy + r]: each load of a
 * weight or an x vector feeds several accumulators. Every output is summed exactly as rows4_f32
 * sums it, so results do not depend on whether a row went through here or there. */
static inline void tile4_f32(const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t n, float *y,
                             int64_t ldy) {
    const float *w0 = w, *w1 = w0 + ldw, *w2 = w1 + ldw, *w3 = w2 + ldw;
    int64_t nv = n & ~(int64_t)(VL - 1);
    vf acc[TILE_ROWS][4];
    memset(acc, 0, sizeof acc);
    for (int64_t i = 0; i < nv; i += VL) {
        vf a = loadv(w0 + i), b = loadv(w1 + i), c = loadv(w2 + i), d = loadv(w3 + i);
        for (int t = 0; t < TILE_ROWS; t++) {
            vf xv = loadv(x + t * ldx + i);
            acc[t][0] += a * xv;
            acc[t][1] += b * xv;
            acc[t][2] += c * xv;
            acc[t][3] += d * xv;
        }
    }
    for (int t = 0; t < TILE_ROWS; t++) {
        const float *xt = x + t * ldx;
        float s[4];
        hsumv_x4(acc[t][0], acc[t][1], acc[t][2], acc[t][3], s);
        float s0 = s[0], s1 = s[1], s2 = s[2], s3 = s[3];
        for (int64_t i = nv; i < n; i++) {
            s0 += w0[i] * xt[i];
            s1 += w1[i] * xt[i];
            s2 += w2[i] * xt[i];
            s3 += w3[i] * xt[i];
        }
        float *yt = y + t * ldy;
        yt[0] = s0, yt[1] = s1, yt[2] = s2, yt[3] = s3;
    }
}

/* four f32 weight rows (`ldw` apart, first n elements) times T rows of x, into acc[t][r] */
static inline void block_f32(const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t n, int64_t T,
                             float (*acc)[4]) {
    int64_t t = 0;
    for (; t + TILE_ROWS <= T; t += TILE_ROWS) tile4_f32(w, ldw, x + t * ldx, ldx, n, acc[t], 4);
    for (; t < T; t++) rows4_f32(w, ldw, x + t * ldx, n, acc[t]);
}

/* Y[t, out] = W[out, in] X[t, in] for t < T, rows of X and Y `ldx` / `ldy` floats apart. */
static void matmul(const float *w, const float *x, int64_t ldx, float *y, int64_t ldy, int64_t out, int64_t in,
                   int64_t T, int threads) {
    int64_t blocks = out / 4, o = blocks * 4;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && out * in * T >= PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        float acc[MATMUL_MAX_ROWS][4];
        block_f32(w + b * 4 * in, in, x, ldx, in, T, acc);
        for (int64_t t = 0; t < T; t++) memcpy(y + t * ldy + b * 4, acc[t], sizeof acc[t]);
    }
    for (; o < out; o++)
        for (int64_t t = 0; t < T; t++) y[t * ldy + o] = vec_dot(w + o * in, x + t * ldx, in);
}

/* `matmul` for bfloat16 weights: per BF16_SLICE-wide slice of four rows, widened once (several
 * rows of X) or read as they are (one row), the slices' sums added in order. */
static void matmul_bf16(const uint16_t *w, const float *x, int64_t ldx, float *y, int64_t ldy, int64_t out,
                        int64_t in, int64_t T, int threads) {
    int64_t blocks = out / 4, o = blocks * 4;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && out * in * T >= PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        const uint16_t *wb = w + b * 4 * in;
        float wide[4 * BF16_SLICE], part[MATMUL_MAX_ROWS][4], acc[MATMUL_MAX_ROWS][4];
        memset(acc, 0, sizeof(float) * 4 * (size_t)T);
        for (int64_t c0 = 0; c0 < in; c0 += BF16_SLICE) {
            int64_t len = in - c0 < BF16_SLICE ? in - c0 : BF16_SLICE;
            if (T == 1) {
                rows4_bf16(wb + c0, in, x + c0, len, part[0]);
            } else {
                for (int r = 0; r < 4; r++)
                    for (int64_t i = 0; i < len; i++) wide[r * len + i] = bf16_to_f32(wb[r * in + c0 + i]);
                block_f32(wide, len, x + c0, ldx, len, T, part);
            }
            for (int64_t t = 0; t < T; t++)
                for (int r = 0; r < 4; r++) acc[t][r] += part[t][r];
        }
        for (int64_t t = 0; t < T; t++) memcpy(y + t * ldy + b * 4, acc[t], sizeof acc[t]);
    }
    for (; o < out; o++)
        for (int64_t t = 0; t < T; t++) y[t * ldy + o] = dot_bf16(w + o * in, x + t * ldx, in);
}

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#include <immintrin.h>
#include <stdlib.h>
#define MATMUL_BF16_DOT 1

/* bf16 copies of the T rows of x (`ldx` apart, `in` wide), round to nearest even, each row padded
 * with zeros to a multiple of 32: a per-thread buffer, grown as needed */
/* a calling thread's scratch of at least `bytes` (a multiple of 64), 64-byte aligned, grown as
 * needed; NULL when it cannot be had */
static void *grown(void **buf, int64_t *cap, int64_t bytes) {
    if (bytes > *cap) {
        free(*buf);
        *buf = aligned_alloc(64, (size_t)bytes);
        *cap = *buf ? bytes : 0;
    }
    return *buf;
}

static const uint16_t *bf16_rows(const float *x, int64_t ldx, int64_t in, int64_t T, int64_t *ld) {
    static __thread void *scratch;
    static __thread int64_t cap;
    int64_t width = (in + 31) & ~(int64_t)31;
    uint16_t *buf = grown(&scratch, &cap, T * width * 2);
    if (!buf) return NULL;
    for (int64_t t = 0; t < T; t++) {
        const float *row = x + t * ldx;
        uint16_t *out = buf + t * width;
        for (int64_t i = 0; i < width; i += 32) {
            int64_t left = in - i; /* the last chunk's lanes past `in` are zeros */
            int lo = left >= 16 ? 16 : (int)left, hi = left >= 32 ? 16 : left > 16 ? (int)(left - 16) : 0;
            __m512 a = _mm512_maskz_loadu_ps((__mmask16)((1u << lo) - 1), row + i);
            __m512 b = _mm512_maskz_loadu_ps((__mmask16)((1u << hi) - 1), row + i + 16);
            _mm512_store_si512((void *)(out + i), (__m512i)_mm512_cvtne2ps_pbh(b, a));
        }
    }
    *ld = width;
    return buf;
}

static inline float hsum512(__m512 v) {
    v16 u;
    memcpy(&u, &v, sizeof u);
    return hsum16(u);
}

/* y[t * ldy + r] for four weight rows (`in` apart) and four or one rows of bf16 x (`ldx` apart):
 * one accumulator per output, the row's 32-wide chunks in order, then the lane tree (hsum16).
 * Written out by hand: with arrays GCC keeps the 16 accumulators on the stack. */
#define BF16_CHUNK_MASK(in, i) ((in) - (i) >= 32 ? ~(__mmask32)0 : (((__mmask32)1 << ((in) - (i))) - 1))
#define BF16_W(r)                                                                                    \
    __m512bh w##r = (__m512bh)(full ? _mm512_loadu_si512((const void *)(w + (r) * in + i))            \
                                    : _mm512_maskz_loadu_epi16(m, w + (r) * in + i))
#define BF16_X(t) (__m512bh) _mm512_load_si512((const void *)(x + (t) * ldx + i))
#define BF16_ROW(t)                                                                                  \
    {                                                                                                \
        __m512bh xv = BF16_X(t);                                                                     \
        a##t##0 = _mm512_dpbf16_ps(a##t##0, w0, xv), a##t##1 = _mm512_dpbf16_ps(a##t##1, w1, xv);   \
        a##t##2 = _mm512_dpbf16_ps(a##t##2, w2, xv), a##t##3 = _mm512_dpbf16_ps(a##t##3, w3, xv);   \
    }
#define BF16_OUT(t) hsum512x4(a##t##0, a##t##1, a##t##2, a##t##3, y + (t) * ldy)

static inline void hsum512x4(__m512 a, __m512 b, __m512 c, __m512 d, float *y) {
    v16 u[4];
    memcpy(&u[0], &a, sizeof a), memcpy(&u[1], &b, sizeof b), memcpy(&u[2], &c, sizeof c), memcpy(&u[3], &d, sizeof d);
    hsum16x4(u[0], u[1], u[2], u[3], y);
}

/* the chunk loop of a tile: four weight rows' 32-wide chunks, each applied to the tile's x rows */
#define BF16_CHUNKS(ROWS)                                                                            \
    for (int64_t i = 0; i < in; i += 32) {                                                           \
        __mmask32 m = BF16_CHUNK_MASK(in, i);                                                        \
        int full = in - i >= 32; /* a masked load of a whole chunk is slower on some CPUs */         \
        BF16_W(0);                                                                                   \
        BF16_W(1);                                                                                   \
        BF16_W(2);                                                                                   \
        BF16_W(3);                                                                                   \
        ROWS                                                                                         \
    }

static inline void dot_bf16_tile4(const uint16_t *w, int64_t in, const uint16_t *x, int64_t ldx, float *y,
                                  int64_t ldy) {
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m512 a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    BF16_CHUNKS(BF16_ROW(0) BF16_ROW(1) BF16_ROW(2) BF16_ROW(3))
    BF16_OUT(0), BF16_OUT(1), BF16_OUT(2), BF16_OUT(3);
}

static inline void dot_bf16_tile1(const uint16_t *w, int64_t in, const uint16_t *x, int64_t ldx, float *y,
                                  int64_t ldy) {
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    BF16_CHUNKS(BF16_ROW(0))
    BF16_OUT(0);
}

/* one weight row against one bf16 x row, summed as the tiles sum it */
static inline float dot_bf16_row(const uint16_t *w, int64_t in, const uint16_t *x) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < in; i += 32) {
        __mmask32 m = BF16_CHUNK_MASK(in, i);
        acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_maskz_loadu_epi16(m, w + i),
                               (__m512bh)_mm512_load_si512((const void *)(x + i)));
    }
    return hsum512(acc);
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
#include <sys/syscall.h>
#include <unistd.h>
#define MATMUL_AMX 1

/* AMX (Sapphire Rapids on): TDPBF16PS multiplies a 16 x 32 bf16 tile by a 32 x 16 one into a
 * 16 x 16 float32 tile, 8,192 multiply-adds an instruction (AVX512-BF16: 512), with no lane sums
 * at the end: a 128-token prefill piece's matrices ran at ~15% of the vector units' peak, most
 * of it in the lane sums of rows only 256 long. Here A is 16 weight rows as they lie in memory,
 * B 32 inputs of 16 tokens in the pair-interleaved layout the instruction wants (built once per
 * call from x), C 16 outputs x 16 tokens. C[m][n] takes only weight row m and token n, the
 * row's 32-wide chunks in order: a token's outputs do not depend on the other tokens of the
 * call (nor on which group of 16 it falls in), so batch invariance holds as on the other paths.
 * One process uses one path for every call (`amx_allowed` is decided once), so a token decoded
 * alone and the same token in a prefill piece agree bit for bit. */
enum { AMX_ROWS = 16, AMX_K = 32, AMX_GROUP_TILES = 4 };

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} AmxConfig;

/* Linux hands the tile registers to a process that asks (arch_prctl ARCH_REQ_XCOMP_PERM for
 * XFEATURE_XTILEDATA); a kernel or hypervisor that does not, refuses: then the AVX512-BF16 path */
static int amx_allowed(void) {
    static int allowed = -1;
    if (allowed < 0) allowed = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    return allowed;
}

/* x rounded to bf16 (as bf16_rows rounds it) in B tiles: for each group of 16 tokens and each
 * 32-wide chunk of the inputs, 16 rows (input pairs) of 16 tokens' pairs; tokens past T are zero */
static const uint32_t *amx_b_tiles(const float *x, int64_t ldx, int64_t in, int64_t T, int64_t *groups) {
    static __thread void *scratch;
    static __thread int64_t cap;
    int64_t G = (T + AMX_ROWS - 1) / AMX_ROWS, chunks = in / AMX_K, words = G * chunks * AMX_ROWS * AMX_ROWS;
    uint32_t *buf = grown(&scratch, &cap, words * 4);
    if (!buf) return NULL;
    if (T % AMX_ROWS) memset(buf + (G - 1) * chunks * AMX_ROWS * AMX_ROWS, 0, (size_t)chunks * AMX_ROWS * AMX_ROWS * 4);
    /* a token's 16 pairs of a chunk go down its column of the tile: one scatter */
    const __m512i column = _mm512_set_epi32(240, 224, 208, 192, 176, 160, 144, 128, 112, 96, 80, 64, 48, 32, 16, 0);
    for (int64_t t = 0; t < T; t++) {
        uint32_t *group = buf + (t / AMX_ROWS) * chunks * AMX_ROWS * AMX_ROWS;
        int64_t n = t % AMX_ROWS;
        for (int64_t c = 0; c < chunks; c++) {
            const float *row = x + t * ldx + c * AMX_K;
            __m512i bits = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + 16), _mm512_loadu_ps(row));
            _mm512_i32scatter_epi32(group + c * AMX_ROWS * AMX_ROWS + n, column, bits, 4);
        }
    }
    *groups = G;
    return buf;
}

/* One 16-row weight block against `count` (1..4) groups of 16 tokens: C tiles 0..count-1, the
 * weight chunk in tile 4 (read once for all groups), the tokens' chunks in tiles 5 and 6. */
static inline void amx_block(const uint16_t *w, int64_t in, const uint32_t *b, int64_t group_words, int count,
                             float (*c)[AMX_ROWS * AMX_ROWS]) {
    int64_t chunks = in / AMX_K, stride = in * 2;
    /* the tile intrinsics are statements (macros), not expressions */
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t k = 0; k < chunks; k++) {
        const uint32_t *bk = b + k * AMX_ROWS * AMX_ROWS;
        _tile_loadd(4, w + k * AMX_K, stride);
        _tile_loadd(5, bk, 64);
        _tile_dpbf16ps(0, 4, 5);
        if (count > 1) {
            _tile_loadd(6, bk + group_words, 64);
            _tile_dpbf16ps(1, 4, 6);
        }
        if (count > 2) {
            _tile_loadd(5, bk + 2 * group_words, 64);
            _tile_dpbf16ps(2, 4, 5);
        }
        if (count > 3) {
            _tile_loadd(6, bk + 3 * group_words, 64);
            _tile_dpbf16ps(3, 4, 6);
        }
    }
    _tile_stored(0, c[0], 64);
    if (count > 1) _tile_stored(1, c[1], 64);
    if (count > 2) _tile_stored(2, c[2], 64);
    if (count > 3) _tile_stored(3, c[3], 64);
}

/* matmul_bf16_dot with the tiles, for matrices of whole 16 x 32 tiles (any other shape takes
 * the AVX512-BF16 path, always, so the choice depends on the matrix only). Returns 0 when the
 * B buffer cannot be had. */
static int matmul_bf16_amx(const uint16_t *w, const float *x, int64_t ldx, float *y, int64_t ldy, int64_t out,
                           int64_t in, int64_t T, int threads) {
    int64_t G;
    const uint32_t *b = amx_b_tiles(x, ldx, in, T, &G);
    if (!b) return 0;
    int64_t group_words = in / AMX_K * AMX_ROWS * AMX_ROWS, blocks = out / AMX_ROWS;
    AmxConfig cfg = {.palette = 1};
    for (int i = 0; i < 7; i++) cfg.rows[i] = AMX_ROWS, cfg.colsb[i] = 64;
#pragma omp parallel num_threads(threads) if (threads > 1 && out * in * T >= PARALLEL_MIN)
    {
        _tile_loadconfig(&cfg);
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; blk++) {
            float c[AMX_GROUP_TILES][AMX_ROWS * AMX_ROWS] __attribute__((aligned(64)));
            for (int64_t g0 = 0; g0 < G; g0 += AMX_GROUP_TILES) {
                int count = G - g0 < AMX_GROUP_TILES ? (int)(G - g0) : AMX_GROUP_TILES;
                amx_block(w + blk * AMX_ROWS * in, in, b + g0 * group_words, group_words, count, c);
                for (int g = 0; g < count; g++)
                    for (int64_t n = 0; n < AMX_ROWS && (g0 + g) * AMX_ROWS + n < T; n++) {
                        float *yt = y + ((g0 + g) * AMX_ROWS + n) * ldy + blk * AMX_ROWS;
                        for (int m = 0; m < AMX_ROWS; m++) yt[m] = c[g][m * AMX_ROWS + n];
                    }
            }
        }
        _tile_release();
    }
    return 1;
}
#endif

/* `matmul` for bfloat16 weights with the rows of X rounded to bfloat16 too: the CPU's bf16 dot
 * products (AVX512-BF16: 32 multiply-adds an instruction, sums in float32; AMX tiles where the
 * CPU and the kernel allow them), as torch's bf16 matmul does for the module path on such a CPU.
 * Returns 0 when the x buffer cannot be had. */
static int matmul_bf16_dot(const uint16_t *w, const float *x, int64_t ldx, float *y, int64_t ldy, int64_t out,
                           int64_t in, int64_t T, int threads) {
#ifdef MATMUL_AMX
    if (out % AMX_ROWS == 0 && in % AMX_K == 0 && amx_allowed()) return matmul_bf16_amx(w, x, ldx, y, ldy, out, in, T, threads);
#endif
    int64_t ldb;
    const uint16_t *xb = bf16_rows(x, ldx, in, T, &ldb);
    if (!xb) return 0;
    int64_t blocks = out / 4, o = blocks * 4;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && out * in * T >= PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        const uint16_t *wb = w + b * 4 * in;
        int64_t t = 0;
        for (; t + 4 <= T; t += 4) dot_bf16_tile4(wb, in, xb + t * ldb, ldb, y + t * ldy + b * 4, ldy);
        for (; t < T; t++) dot_bf16_tile1(wb, in, xb + t * ldb, ldb, y + t * ldy + b * 4, ldy);
    }
    for (; o < out; o++)
        for (int64_t t = 0; t < T; t++) y[t * ldy + o] = dot_bf16_row(w + o * in, in, xb + t * ldb);
    return 1;
}
#endif

#pragma GCC pop_options

#endif
