/* A few tokens (decode, speculative verification) through a whole V4 model on the CPU, float32,
 * in one call.
 *
 * The same math as engine/model/transformer.py (see ../shared/design/v4-model.md) for T consecutive tokens
 * from position `pos`, batch 1, no autograd: per block mHC pre -> attention (low-rank query,
 * shared K=V row, sliding window, HCA/CSA compressors, lightning indexer top-k, sinks, inverse
 * RoPE, grouped output projection) -> mHC post -> mHC pre -> MoE (hash or scored routing, SwiGLU
 * experts, shared expert) -> mHC post; then the hc head, the final norm and the vocabulary head.
 *
 * Why: a torch decode step of a small model is ~600 tiny ops whose dispatch costs several times
 * the arithmetic; here the cost is reading the weights once per call, whatever T is (every
 * weight row is applied to the T tokens while it is in L1), which is what makes verifying
 * speculative drafts nearly free. The caller (deepfim.engine.model.decode_step) owns every state
 * tensor: this file reads the previous state and writes the next one into buffers it is handed,
 * so snapshots that share the old tensors stay valid. The attention itself and the mHC pre-mix
 * are the kernels of sparse_attn/decode.c and mhc/mhc.c, linked into the same library.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../vec.h"

int sparse_attn_fwd(const float *q, const float *raw, int64_t n_raw, int64_t raw_start, int64_t q_start,
                    int64_t window, const float *comp, int64_t n_comp, const int64_t *visible, const int64_t *topk,
                    int64_t k, const float *sink, float scale, int64_t batch, int64_t tokens, int64_t heads,
                    int64_t d, float *out);
int hc_pre_fwd(const float *x, const float *fn, const float *base, const float *scale, int64_t count, int n,
               int64_t dim, int iters, float eps, float norm_eps, float *u, float *post, float *comb);

enum { SCORE_SOFTMAX = 0, SCORE_SIGMOID = 1, SCORE_SQRTSOFTPLUS = 2 };
enum { MAX_TOKENS = 16, MAX_ACTIVE = 64, MAX_STREAMS = 8, MAX_HEAD_DIM = 1024 };
/* matrices of at least this many weights are split across the OpenMP threads (torch's own pool:
 * its libgomp is the one already loaded); smaller ones are not worth a fork-join. Threads that
 * spin at a barrier while the machine is busy stall each other (with a busy process beside it on
 * 2 cores, decode went from 0.7 to 16 ms/token on 2 threads): interactive callers ask for fewer. */
enum { PARALLEL_MIN = 1 << 15 };

/* ---- weights (filled once per model by the caller; row-major, as the torch parameters) ---- */

typedef struct {
    const void *wkv, *wgate;  /* [width, dim] (matrices: float32, or bfloat16 if ModelWeights.bf16) */
    const float *ape;         /* [ratio, width] */
    const float *norm;        /* [out_dim] */
    int64_t ratio, width, out_dim;
    int64_t overlap; /* CSA: overlapping windows, width = 2 * out_dim (HCA: width = out_dim) */
} CompressorWeights;

typedef struct {
    int64_t ratio; /* 0: sliding only; else the compression ratio of the CSA or HCA layer */
    int64_t csa;   /* compressed sparse attention: overlapping compressor and a lightning indexer */
    const float *hc_attn_fn, *hc_attn_base, *hc_attn_scale, *hc_ffn_fn, *hc_ffn_base, *hc_ffn_scale;
    const float *attn_norm, *ffn_norm;
    const void *wq_a, *wq_b, *wkv, *wo_a, *wo_b; /* matrices: float32, or bfloat16 if ModelWeights.bf16 */
    const float *q_norm, *kv_norm, *attn_sink;
    CompressorWeights comp, index_comp;
    const void *index_wq_b, *index_weights_proj;
    const void *gate;              /* [E, dim] */
    const float *gate_bias;        /* [E] (NULL for hash layers) */
    const int64_t *tid2eid;        /* [vocab, K] for hash layers, else NULL */
    const void *w1, *w2, *w3;      /* [E, inter, dim], [E, dim, inter], [E, inter, dim] */
    const void *sw1, *sw2, *sw3;   /* shared expert [S, dim], [dim, S], [S, dim] or NULL */
    /* RoPE of this layer: (cos, sin) pairs [table_rows, rope_dim / 2] and the inverse frequencies
     * for positions past the table */
    const float *cis_table, *inv_freq;
    int64_t table_rows;
} LayerWeights;

typedef struct {
    int64_t dim, n_hc, n_heads, head_dim, rope_dim, q_lora, o_groups, o_lora, window;
    int64_t index_heads, index_dim, index_topk;
    int64_t n_experts, n_active, inter, shared_inter, vocab, n_layers;
    int64_t sinkhorn_iters, score_func;
    int64_t bf16;    /* the matrices `linear` reads hold bfloat16 (lossless when every value is one) */
    int64_t threads; /* OpenMP threads for the big matrices (the caller's torch.get_num_threads()) */
    float hc_eps, norm_eps, route_scale, swiglu_limit;
    const float *embed, *hc_head_fn, *hc_head_base, *hc_head_scale, *norm;
    const void *head;
    const LayerWeights *layers;
} ModelWeights;

/* ---- per-call state, in and out ---- */

typedef struct {
    const float *pending_kv, *pending_gate; /* [n_pending, width]: the open window's tokens */
    int64_t n_pending;                      /* must be pos % ratio */
    const float *prev_kv, *prev_gate;       /* CSA: [ratio, out_dim] A-halves of the last closed window, or NULL */
    float *next_pending_kv, *next_pending_gate; /* [(n_pending + T) % ratio, width] */
    float *next_prev_kv, *next_prev_gate;       /* CSA: [ratio, out_dim], written when a window closes */
    float *chunk_kv, *chunk_gate;               /* [T, width] this call's rows (gate incl. ape), or NULL */
    float *entries; /* rows [n_entries + (n_pending + T) / ratio, out_dim]: new entries from row n_entries */
    int64_t n_entries;
} CompressorStep;

typedef struct {
    const float *window; /* [n_window, head_dim] raw kv rows of positions pos - n_window .. pos - 1 */
    int64_t n_window;
    float *next_window;  /* [min(n_window + T, window - 1), head_dim] */
    float *chunk_kv;     /* [T, head_dim] this call's raw kv rows, or NULL */
    CompressorStep comp, index_comp;
} LayerStep;

/* ---- small dense helpers ---- */

typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));

/* 16 bfloat16 -> float32: the bf16 bits are the high half of the float's */
static inline v16 load16_bf16(const uint16_t *p) {
    u16x16 h;
    memcpy(&h, p, sizeof h);
    u32x16 bits = __builtin_convertvector(h, u32x16) << 16;
    v16 f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* dot_<name>(w, x, n) and rows4_<name>(w, x, in, y) for weights of element type W (read 16 at a
 * time by LOAD16, one at a time by TO_F32) against float32 x. rows4 multiplies four weight rows
 * (`in` elements apart) by x: each load of x feeds four independent accumulator chains. */
#define WEIGHT_KERNELS(name, W, LOAD16, TO_F32)                                                  \
    static inline float dot_##name(const W *w, const float *x, int64_t n) {                     \
        v16 acc = {0};                                                                          \
        int64_t n16 = n & ~(int64_t)15;                                                         \
        for (int64_t i = 0; i < n16; i += 16) acc += LOAD16(w + i) * load16(x + i);             \
        float s = hsum16(acc);                                                                  \
        for (int64_t i = n16; i < n; i++) s += TO_F32(w[i]) * x[i];                             \
        return s;                                                                               \
    }                                                                                           \
    static inline void rows4_##name(const W *w, const float *x, int64_t in, float *y) {         \
        const W *w0 = w, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;                          \
        int64_t in16 = in & ~(int64_t)15;                                                       \
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};                                             \
        for (int64_t i = 0; i < in16; i += 16) {                                                \
            v16 xv = load16(x + i);                                                             \
            a0 += LOAD16(w0 + i) * xv;                                                          \
            a1 += LOAD16(w1 + i) * xv;                                                          \
            a2 += LOAD16(w2 + i) * xv;                                                          \
            a3 += LOAD16(w3 + i) * xv;                                                          \
        }                                                                                       \
        float s0 = hsum16(a0), s1 = hsum16(a1), s2 = hsum16(a2), s3 = hsum16(a3);               \
        for (int64_t i = in16; i < in; i++) {                                                   \
            s0 += TO_F32(w0[i]) * x[i];                                                         \
            s1 += TO_F32(w1[i]) * x[i];                                                         \
            s2 += TO_F32(w2[i]) * x[i];                                                         \
            s3 += TO_F32(w3[i]) * x[i];                                                         \
        }                                                                                       \
        y[0] = s0, y[1] = s1, y[2] = s2, y[3] = s3;                                             \
    }

#define AS_FLOAT(v) (v)
WEIGHT_KERNELS(f32, float, load16, AS_FLOAT)
WEIGHT_KERNELS(bf16, uint16_t, load16_bf16, bf16_to_f32)
#define dot vec_dot /* activations against activations (norms, attention, indexer) */

/* Y[t, out] = W[out, in] X[t, in] for t < T, rows of X and Y `ldx` / `ldy` floats apart. Four
 * weight rows at a time are read from memory once and applied to every token while in L1. */
static void matmul(const float *w, const float *x, int64_t ldx, float *y, int64_t ldy, int64_t out, int64_t in,
                   int64_t T, int threads) {
    int64_t blocks = out / 4, o = blocks * 4;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && out * in >= PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++)
        for (int64_t t = 0; t < T; t++) {
            float four[4];
            rows4_f32(w + b * 4 * in, x + t * ldx, in, four);
            memcpy(y + t * ldy + b * 4, four, sizeof four);
        }
    for (; o < out; o++)
        for (int64_t t = 0; t < T; t++) y[t * ldy + o] = dot(w + o * in, x + t * ldx, in);
}

/* `matmul` for bfloat16 weights: half the bytes to read, the same float32 arithmetic. */
static void matmul_bf16(const uint16_t *w, const float *x, int64_t ldx, float *y, int64_t ldy, int64_t out,
                        int64_t in, int64_t T, int threads) {
    int64_t blocks = out / 4, o = blocks * 4;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && out * in >= PARALLEL_MIN)
    for (int64_t b = 0; b < blocks; b++) {
        const uint16_t *wb = w + b * 4 * in;
        if (T == 1) {
            float four[4];
            rows4_bf16(wb, x, in, four);
            memcpy(y + b * 4, four, sizeof four);
            continue;
        }
        /* several tokens: widen a 4 x 256 slice once, then apply it to every token */
        float wide[4 * 256], part[4], acc[MAX_TOKENS][4] = {{0}};
        for (int64_t c0 = 0; c0 < in; c0 += 256) {
            int64_t len = in - c0 < 256 ? in - c0 : 256;
            for (int r = 0; r < 4; r++)
                for (int64_t i = 0; i < len; i++) wide[r * len + i] = bf16_to_f32(wb[r * in + c0 + i]);
            for (int64_t t = 0; t < T; t++) {
                rows4_f32(wide, x + t * ldx + c0, len, part);
                for (int r = 0; r < 4; r++) acc[t][r] += part[r];
            }
        }
        for (int64_t t = 0; t < T; t++) memcpy(y + t * ldy + b * 4, acc[t], sizeof acc[t]);
    }
    for (; o < out; o++)
        for (int64_t t = 0; t < T; t++) y[t * ldy + o] = dot_bf16(w + o * in, x + t * ldx, in);
}

/* A model matrix from element `offset` on (an expert, a group): float32 or bfloat16 (M->bf16). */
static const void *at(const ModelWeights *M, const void *w, int64_t offset) {
    return (const char *)w + offset * (M->bf16 ? 2 : 4);
}

/* Y = W X (see matmul) for the model's matrices, in whichever precision they are held. */
static void linear(const ModelWeights *M, const void *w, const float *x, int64_t ldx, float *y, int64_t ldy,
                   int64_t out, int64_t in, int64_t T) {
    int threads = M->threads > 1 ? (int)M->threads : 1;
    if (M->bf16)
        matmul_bf16(w, x, ldx, y, ldy, out, in, T, threads);
    else
        matmul(w, x, ldx, y, ldy, out, in, T, threads);
}

/* F.rms_norm(x, weight, eps) in place; weight NULL = unweighted */
static void rms_norm(float *x, const float *weight, int64_t n, float eps) {
    float inv = 1.0f / sqrtf(dot(x, x, n) / (float)n + eps);
    if (weight)
        for (int64_t i = 0; i < n; i++) x[i] = x[i] * inv * weight[i];
    else
        for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

/* (cos, sin) pairs of a layer's RoPE at `pos`: a table row, or computed like model.py Rotary.at */
static const float *cis_at(const LayerWeights *L, int64_t pos, int64_t rope_dim, float *buf) {
    if (pos < L->table_rows) return L->cis_table + pos * rope_dim;
    for (int64_t i = 0; i < rope_dim / 2; i++) {
        float angle = (float)pos * L->inv_freq[i];
        buf[2 * i] = cosf(angle);
        buf[2 * i + 1] = sinf(angle);
    }
    return buf;
}

/* model.py apply_rope: the trailing rope_dim dims of x are (re, im) pairs rotated by cis */
static void rope(float *x, int64_t len, const float *cis, int64_t rope_dim, int inverse) {
    float *p = x + len - rope_dim;
    for (int64_t i = 0; i < rope_dim / 2; i++) {
        float c = cis[2 * i], s = inverse ? -cis[2 * i + 1] : cis[2 * i + 1];
        float re = p[2 * i], im = p[2 * i + 1];
        p[2 * i] = re * c - im * s;
        p[2 * i + 1] = re * s + im * c;
    }
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* kernels/moe/ref.py swiglu (times the routing weight), into gate */
static void swiglu(float *gate, const float *up, int64_t n, float limit, float weight) {
    for (int64_t i = 0; i < n; i++) {
        float g = gate[i], u = up[i];
        if (limit > 0.f) {
            g = g < limit ? g : limit;
            u = u < -limit ? -limit : (u > limit ? limit : u);
        }
        gate[i] = g / (1.0f + expf(-g)) * u * weight;
    }
}

/* ---- compressor, indexer, attention ---- */

/* kernels/compressor/ref.py pool_windows for one window: rows kv/gate [m, c]; prev: CSA A-halves
 * of the window before ([m, d], or NULL for none) */
static void pool_window(const CompressorWeights *cw, const float *kv, const float *gate, const float *prev_kv,
                        const float *prev_gate, int64_t prev_ld, float *entry) {
    int64_t m = cw->ratio, c = cw->width, d = cw->out_dim;
    int overlap = cw->overlap != 0;
    int64_t off = overlap ? d : 0; /* CSA: B-halves of this window */
    for (int64_t ch = 0; ch < d; ch++) {
        float mx = -INFINITY;
        if (overlap && prev_kv)
            for (int64_t s = 0; s < m; s++) mx = fmaxf(mx, prev_gate[s * prev_ld + ch]);
        for (int64_t s = 0; s < m; s++) mx = fmaxf(mx, gate[s * c + off + ch]);
        float z = 0.f, acc = 0.f;
        if (overlap && prev_kv)
            for (int64_t s = 0; s < m; s++) {
                float e = expf(prev_gate[s * prev_ld + ch] - mx);
                z += e;
                acc += e * prev_kv[s * prev_ld + ch];
            }
        for (int64_t s = 0; s < m; s++) {
            float e = expf(gate[s * c + off + ch] - mx);
            z += e;
            acc += e * kv[s * c + off + ch];
        }
        entry[ch] = acc / z;
    }
}

/* model.py Compressor.forward for T tokens x [T, dim]; returns the number of windows closed (new
 * entries written from row n_entries). scratch: 2 * (ratio + T) * width floats. */
static int64_t compressor_step(const ModelWeights *M, const LayerWeights *L, const CompressorWeights *cw,
                               CompressorStep *cs, const float *x, int64_t pos, int64_t T, float *scratch) {
    int64_t dim = M->dim, rope_dim = M->rope_dim;
    float norm_eps = M->norm_eps;
    int64_t m = cw->ratio, c = cw->width, d = cw->out_dim, r = cs->n_pending, rows = r + T;
    float *kv = scratch, *gate = scratch + rows * c; /* the open window's rows, then this call's */
    if (r) {
        memcpy(kv, cs->pending_kv, sizeof(float) * r * c);
        memcpy(gate, cs->pending_gate, sizeof(float) * r * c);
    }
    linear(M, cw->wkv, x, dim, kv + r * c, c, c, dim, T);
    linear(M, cw->wgate, x, dim, gate + r * c, c, c, dim, T);
    for (int64_t t = 0; t < T; t++) {
        const float *ape = cw->ape + ((pos + t) % m) * c;
        for (int64_t i = 0; i < c; i++) gate[(r + t) * c + i] += ape[i];
    }
    if (cs->chunk_kv) {
        memcpy(cs->chunk_kv, kv + r * c, sizeof(float) * T * c);
        memcpy(cs->chunk_gate, gate + r * c, sizeof(float) * T * c);
    }
    int64_t closed = rows / m, rest = rows % m;
    if (rest) {
        memcpy(cs->next_pending_kv, kv + closed * m * c, sizeof(float) * rest * c);
        memcpy(cs->next_pending_gate, gate + closed * m * c, sizeof(float) * rest * c);
    }
    int64_t first_window = (pos - r) / m;
    float cis_buf[MAX_HEAD_DIM];
    for (int64_t w = 0; w < closed; w++) {
        const float *wkv = kv + w * m * c, *wgate = gate + w * m * c;
        float *entry = cs->entries + (cs->n_entries + w) * d;
        if (w == 0)
            pool_window(cw, wkv, wgate, cs->prev_kv, cs->prev_gate, d, entry);
        else /* the A-halves of the window before are the first d of its rows */
            pool_window(cw, wkv, wgate, wkv - m * c, wgate - m * c, c, entry);
        rms_norm(entry, cw->norm, d, norm_eps);
        rope(entry, d, cis_at(L, (first_window + w) * m, rope_dim, cis_buf), rope_dim, 0);
    }
    if (cw->overlap && closed > 0) {
        const float *last_kv = kv + (closed - 1) * m * c, *last_gate = gate + (closed - 1) * m * c;
        for (int64_t s = 0; s < m; s++) {
            memcpy(cs->next_prev_kv + s * d, last_kv + s * c, sizeof(float) * d);
            memcpy(cs->next_prev_gate + s * d, last_gate + s * c, sizeof(float) * d);
        }
    }
    return closed;
}

typedef struct {
    float score;
    int64_t index;
} Scored;

/* strict weak order: higher score first, then lower index */
static int before(const Scored *a, const Scored *b) {
    return a->score > b->score || (a->score == b->score && a->index < b->index);
}

static int by_score_desc(const void *a, const void *b) {
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

/* The min(k, n) best of n scores, best first, into idx; the rest of idx[0..k) gets -1.
 * heap: a min-heap (worst kept at the root) of up to k entries. */
static void top_k(const float *scores, int64_t n, int64_t k, int64_t *idx, Scored *heap) {
    int64_t keep = k < n ? k : n, size = 0;
    for (int64_t i = 0; i < n && keep > 0; i++) {
        Scored s = {scores[i], i};
        if (size < keep) { /* sift up while the parent is better than s */
            int64_t j = size++;
            while (j > 0 && before(&heap[(j - 1) / 2], &s)) {
                heap[j] = heap[(j - 1) / 2];
                j = (j - 1) / 2;
            }
            heap[j] = s;
        } else if (before(&s, &heap[0])) { /* replaces the worst kept: sift down */
            int64_t j = 0;
            for (;;) {
                int64_t l = 2 * j + 1, worst = j;
                const Scored *w = &s;
                if (l < keep && before(w, &heap[l])) worst = l, w = &heap[l];
                if (l + 1 < keep && before(w, &heap[l + 1])) worst = l + 1;
                if (worst == j) break;
                heap[j] = heap[worst];
                j = worst;
            }
            heap[j] = s;
        }
    }
    qsort(heap, (size_t)size, sizeof(Scored), by_score_desc);
    for (int64_t i = 0; i < k; i++) idx[i] = i < size ? heap[i].index : -1;
}

/* model.py Indexer.forward: for each token the top-k of its visible keys, k = min(topk, n_keys). */
static void indexer_select(const ModelWeights *M, const LayerWeights *L, const float *x, const float *c_q,
                           const float *const *cis, const float *keys, int64_t n_keys, int64_t pos, int64_t T,
                           int64_t k, int64_t *selected, float *scratch) {
    int64_t h = M->index_heads, d = M->index_dim;
    float *q = scratch, *w = q + T * h * d, *scores = w + T * h;
    Scored *heap = (Scored *)(((uintptr_t)(scores + n_keys) + 15) & ~(uintptr_t)15);
    linear(M, L->index_wq_b, c_q, M->q_lora, q, h * d, h * d, M->q_lora, T);
    linear(M, L->index_weights_proj, x, M->dim, w, h, h, M->dim, T);
    float head_scale = 1.0f / sqrtf((float)h), dot_scale = 1.0f / sqrtf((float)d);
    for (int64_t t = 0; t < T; t++) {
        float *qt = q + t * h * d, *wt = w + t * h;
        for (int64_t i = 0; i < h; i++) {
            rope(qt + i * d, d, cis[t], M->rope_dim, 0);
            wt[i] *= head_scale;
        }
        int64_t visible = (pos + t + 1) / 4;
        if (visible > n_keys) visible = n_keys;
        for (int64_t e = 0; e < visible; e++) {
            float total = 0.f;
            for (int64_t i = 0; i < h; i++) {
                float s = dot(qt + i * d, keys + e * d, d);
                total += (s > 0.f ? s * dot_scale : 0.f) * wt[i];
            }
            scores[e] = total;
        }
        top_k(scores, visible, k, selected + t * k, heap);
    }
}

static void attention(const ModelWeights *M, const LayerWeights *L, LayerStep *st, const float *x, int64_t pos,
                      int64_t T, float *out, float *scratch) {
    int64_t dim = M->dim, hd = M->head_dim, heads = M->n_heads, r = M->rope_dim, ql = M->q_lora;
    int64_t n_raw = st->n_window + T;
    float *c_q = scratch, *q = c_q + T * ql, *raw = q + T * heads * hd, *o = raw + n_raw * hd;
    float *low = o + T * heads * hd, *cis_buf = low + T * M->o_groups * M->o_lora;
    float *rest = cis_buf + T * r;
    const float *cis[MAX_TOKENS];
    for (int64_t t = 0; t < T; t++) cis[t] = cis_at(L, pos + t, r, cis_buf + t * r);

    linear(M, L->wq_a, x, dim, c_q, ql, ql, dim, T);
    for (int64_t t = 0; t < T; t++) rms_norm(c_q + t * ql, L->q_norm, ql, M->norm_eps);
    linear(M, L->wq_b, c_q, ql, q, heads * hd, heads * hd, ql, T);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < heads; h++) {
            float *qh = q + (t * heads + h) * hd;
            rms_norm(qh, NULL, hd, M->norm_eps);
            rope(qh, hd, cis[t], r, 0);
        }
    /* raw rows: the window before this call, then the calls' own kv rows */
    if (st->n_window) memcpy(raw, st->window, sizeof(float) * st->n_window * hd);
    float *kv = raw + st->n_window * hd;
    linear(M, L->wkv, x, dim, kv, hd, hd, dim, T);
    for (int64_t t = 0; t < T; t++) {
        rms_norm(kv + t * hd, L->kv_norm, hd, M->norm_eps);
        rope(kv + t * hd, hd, cis[t], r, 0);
    }
    if (st->chunk_kv) memcpy(st->chunk_kv, kv, sizeof(float) * T * hd);
    int64_t keep = M->window - 1 < n_raw ? M->window - 1 : n_raw;
    if (keep > 0) memcpy(st->next_window, raw + (n_raw - keep) * hd, sizeof(float) * keep * hd);

    const float *comp = NULL;
    int64_t n_comp = 0, visible[MAX_TOKENS], k = 0, *selected = NULL;
    if (L->ratio) {
        CompressorStep *cs = &st->comp;
        n_comp = cs->n_entries + compressor_step(M, L, &L->comp, cs, x, pos, T, rest);
        comp = n_comp ? cs->entries : NULL;
        for (int64_t t = 0; t < T; t++) visible[t] = (pos + t + 1) / L->ratio;
        if (L->csa) {
            CompressorStep *is = &st->index_comp;
            int64_t n_keys = is->n_entries + compressor_step(M, L, &L->index_comp, is, x, pos, T, rest);
            k = M->index_topk < n_comp ? M->index_topk : n_comp;
            selected = (int64_t *)rest;
            indexer_select(M, L, x, c_q, cis, is->entries, n_keys, pos, T, k, selected,
                           rest + 2 * T * (M->index_topk + 1));
        }
    }
    sparse_attn_fwd(q, raw, n_raw, pos - st->n_window, pos, M->window, comp, n_comp, visible, selected, k,
                    L->attn_sink, 1.0f / sqrtf((float)hd), 1, T, heads, hd, o);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < heads; h++) rope(o + (t * heads + h) * hd, hd, cis[t], r, 1);
    int64_t group_in = heads * hd / M->o_groups, lr = M->o_groups * M->o_lora;
    for (int64_t g = 0; g < M->o_groups; g++)
        linear(M, at(M, L->wo_a, g * M->o_lora * group_in), o + g * group_in, heads * hd, low + g * M->o_lora, lr, M->o_lora,
               group_in, T);
    linear(M, L->wo_b, low, lr, out, dim, dim, lr, T);
}

/* ---- MoE ---- */

static void route(const ModelWeights *M, const LayerWeights *L, const float *x, int64_t token, int64_t *idx,
                  float *weight, float *scores) {
    int64_t E = M->n_experts, K = M->n_active;
    linear(M, L->gate, x, M->dim, scores, E, E, M->dim, 1);
    if (M->score_func == SCORE_SQRTSOFTPLUS) {
        for (int64_t e = 0; e < E; e++) scores[e] = sqrtf(scores[e] > 20.f ? scores[e] : log1pf(expf(scores[e])));
    } else if (M->score_func == SCORE_SIGMOID) {
        for (int64_t e = 0; e < E; e++) scores[e] = sigmoidf(scores[e]);
    } else {
        float mx = -INFINITY, z = 0.f;
        for (int64_t e = 0; e < E; e++) mx = fmaxf(mx, scores[e]);
        for (int64_t e = 0; e < E; e++) z += (scores[e] = expf(scores[e] - mx));
        for (int64_t e = 0; e < E; e++) scores[e] /= z;
    }
    if (L->tid2eid) {
        for (int64_t j = 0; j < K; j++) idx[j] = L->tid2eid[token * K + j];
    } else { /* the K best biased scores; the bias selects, it does not weigh */
        for (int64_t j = 0; j < K; j++) {
            int64_t best = -1;
            float best_score = -INFINITY;
            for (int64_t e = 0; e < E; e++) {
                int taken = 0;
                for (int64_t i = 0; i < j; i++) taken |= idx[i] == e;
                float s = scores[e] + (L->gate_bias ? L->gate_bias[e] : 0.f);
                if (!taken && (best < 0 || s > best_score)) best = e, best_score = s;
            }
            idx[j] = best;
        }
    }
    float total = 0.f;
    for (int64_t j = 0; j < K; j++) total += (weight[j] = scores[idx[j]]);
    for (int64_t j = 0; j < K; j++) weight[j] = weight[j] / (total + 1e-20f) * M->route_scale;
}

/* model.py MoE.forward for T tokens x [T, dim] into out [T, dim]. Tokens routed to the same
 * expert go through it together (one read of its weights). */
static void moe(const ModelWeights *M, const LayerWeights *L, const float *x, const int64_t *tokens, int64_t T,
                float *out, float *scratch) {
    int64_t dim = M->dim, E = M->n_experts, K = M->n_active, inter = M->inter;
    int64_t wide = inter > M->shared_inter ? inter : M->shared_inter;
    float *scores = scratch, *xs = scores + E, *h1 = xs + T * dim, *h3 = h1 + T * wide, *y = h3 + T * wide;
    int64_t idx[MAX_TOKENS][MAX_ACTIVE];
    float weight[MAX_TOKENS][MAX_ACTIVE];
    for (int64_t t = 0; t < T; t++) route(M, L, x + t * dim, tokens[t], idx[t], weight[t], scores);
    memset(out, 0, sizeof(float) * T * dim);
    for (int64_t e = 0; e < E; e++) {
        int64_t users[MAX_TOKENS], n = 0;
        float uw[MAX_TOKENS];
        for (int64_t t = 0; t < T; t++)
            for (int64_t j = 0; j < K; j++)
                if (idx[t][j] == e) users[n] = t, uw[n++] = weight[t][j];
        if (n == 0) continue;
        for (int64_t i = 0; i < n; i++) memcpy(xs + i * dim, x + users[i] * dim, sizeof(float) * dim);
        linear(M, at(M, L->w1, e * inter * dim), xs, dim, h1, inter, inter, dim, n);
        linear(M, at(M, L->w3, e * inter * dim), xs, dim, h3, inter, inter, dim, n);
        for (int64_t i = 0; i < n; i++) swiglu(h1 + i * inter, h3 + i * inter, inter, M->swiglu_limit, uw[i]);
        linear(M, at(M, L->w2, e * dim * inter), h1, inter, y, dim, dim, inter, n);
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < dim; c++) out[users[i] * dim + c] += y[i * dim + c];
    }
    if (L->sw1) {
        int64_t s = M->shared_inter;
        linear(M, L->sw1, x, dim, h1, s, s, dim, T);
        linear(M, L->sw3, x, dim, h3, s, s, dim, T);
        for (int64_t t = 0; t < T; t++) swiglu(h1 + t * s, h3 + t * s, s, M->swiglu_limit, 1.0f);
        linear(M, L->sw2, h1, s, y, dim, dim, s, T);
        for (int64_t i = 0; i < T * dim; i++) out[i] += y[i];
    }
}

/* mhc/ref.py hc_post in place for one token: X'_j = post_j * f + sum_i comb[i, j] * X_i */
static void hc_post(float *x, const float *f, const float *post, const float *comb, int64_t n, int64_t dim,
                    float *copy) {
    memcpy(copy, x, sizeof(float) * n * dim);
    for (int64_t j = 0; j < n; j++) {
        float *xj = x + j * dim;
        for (int64_t i = 0; i < dim; i++) {
            float acc = 0.f;
            for (int64_t s = 0; s < n; s++) acc += comb[s * n + j] * copy[s * dim + i];
            xj[i] = post[j] * f[i] + acc;
        }
    }
}

/* The limits above, for the caller: [max tokens per call, max active experts, max mHC streams,
 * max head dim]. The Python side reads them instead of repeating them. */
void v4_step_limits(int64_t *out) {
    out[0] = MAX_TOKENS;
    out[1] = MAX_ACTIVE;
    out[2] = MAX_STREAMS;
    out[3] = MAX_HEAD_DIM;
}

/* Floats of scratch a call of T tokens needs with up to max_keys indexer keys. */
int64_t v4_step_scratch(const ModelWeights *M, int64_t T, int64_t max_keys) {
    int64_t wide = M->inter > M->shared_inter ? M->inter : M->shared_inter, max_ratio = 1;
    for (int64_t l = 0; l < M->n_layers; l++)
        if (M->layers[l].ratio > max_ratio) max_ratio = M->layers[l].ratio;
    int64_t comp_width = 2 * (M->head_dim > M->index_dim ? M->head_dim : M->index_dim);
    /* selected ids, q, weights, scores, an aligned heap of (score, index) pairs */
    int64_t index = 2 * T * (M->index_topk + 1) + T * M->index_heads * (M->index_dim + 1) + max_keys + 4 +
                    4 * (M->index_topk < max_keys ? M->index_topk : max_keys);
    int64_t comp = 2 * (max_ratio + T) * comp_width;
    int64_t rest = comp > index ? comp : index; /* a compressor's rows, then the indexer */
    int64_t max_window = M->window > 1 ? M->window - 1 : 0;
    int64_t attn = T * (M->q_lora + 2 * M->n_heads * M->head_dim + M->o_groups * M->o_lora + M->rope_dim) +
                   (max_window + T) * M->head_dim + rest;
    int64_t ffn = M->n_experts + T * (M->dim * 2 + 2 * wide);
    int64_t hc = T * (M->dim * 2 + M->n_hc * (M->dim + 1 + M->n_hc)) + M->n_hc * M->dim;
    return hc + (attn > ffn ? attn : ffn) + 64;
}

/* Runs T tokens from `pos` through every block, then the head for the last token (logits_mode 1)
 * or every token (2) or none (0). x: [T, n_hc, dim] receives the final residual streams, logits
 * [T or 1, vocab]. Returns 0; -1 for unsupported sizes, -2 for a compressor state that does not
 * match pos (nothing was written then). */
int v4_decode_step(const ModelWeights *M, LayerStep *steps, int64_t pos, const int64_t *tokens, int64_t T,
                   float *x, int64_t logits_mode, float *logits, float *scratch) {
    int64_t n = M->n_hc, dim = M->dim, nd = n * dim;
    if (T < 1 || T > MAX_TOKENS || n > MAX_STREAMS || M->head_dim > MAX_HEAD_DIM || M->n_active > MAX_ACTIVE ||
        M->rope_dim > MAX_HEAD_DIM || M->rope_dim > M->head_dim)
        return -1;
    for (int64_t l = 0; l < M->n_layers; l++) {
        const LayerWeights *L = &M->layers[l];
        if ((L->ratio && steps[l].comp.n_pending != pos % L->ratio) ||
            (L->csa && steps[l].index_comp.n_pending != pos % L->index_comp.ratio))
            return -2;
    }
    float *u = scratch, *f = u + T * dim, *post = f + T * dim, *comb = post + T * n, *copy = comb + T * n * n;
    float *work = copy + nd;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < n; i++) memcpy(x + t * nd + i * dim, M->embed + tokens[t] * dim, sizeof(float) * dim);
    for (int64_t l = 0; l < M->n_layers; l++) {
        const LayerWeights *L = &M->layers[l];
        hc_pre_fwd(x, L->hc_attn_fn, L->hc_attn_base, L->hc_attn_scale, T, (int)n, dim, (int)M->sinkhorn_iters,
                   M->hc_eps, M->norm_eps, u, post, comb);
        for (int64_t t = 0; t < T; t++) rms_norm(u + t * dim, L->attn_norm, dim, M->norm_eps);
        attention(M, L, &steps[l], u, pos, T, f, work);
        for (int64_t t = 0; t < T; t++) hc_post(x + t * nd, f + t * dim, post + t * n, comb + t * n * n, n, dim, copy);
        hc_pre_fwd(x, L->hc_ffn_fn, L->hc_ffn_base, L->hc_ffn_scale, T, (int)n, dim, (int)M->sinkhorn_iters,
                   M->hc_eps, M->norm_eps, u, post, comb);
        for (int64_t t = 0; t < T; t++) rms_norm(u + t * dim, L->ffn_norm, dim, M->norm_eps);
        moe(M, L, u, tokens, T, f, work);
        for (int64_t t = 0; t < T; t++) hc_post(x + t * nd, f + t * dim, post + t * n, comb + t * n * n, n, dim, copy);
    }
    if (logits_mode == 0) return 0;
    int64_t first = logits_mode == 1 ? T - 1 : 0, rows = T - first;
    /* mhc/ref.py hc_head: sigmoid(mix * scale + base) + eps weights, no Sinkhorn; then the norm */
    for (int64_t t = first; t < T; t++) {
        const float *xt = x + t * nd;
        float inv_rms = 1.0f / sqrtf(dot(xt, xt, nd) / (float)nd + M->norm_eps), w[MAX_STREAMS];
        matmul(M->hc_head_fn, xt, nd, w, n, n, nd, 1, 1);
        for (int64_t i = 0; i < n; i++)
            w[i] = sigmoidf(w[i] * inv_rms * M->hc_head_scale[0] + M->hc_head_base[i]) + M->hc_eps;
        float *ut = u + (t - first) * dim;
        for (int64_t d = 0; d < dim; d++) {
            float acc = 0.f;
            for (int64_t i = 0; i < n; i++) acc += w[i] * xt[i * dim + d];
            ut[d] = acc;
        }
        rms_norm(ut, M->norm, dim, M->norm_eps);
    }
    linear(M, M->head, u, dim, logits, M->vocab, M->vocab, dim, rows);
    return 0;
}
