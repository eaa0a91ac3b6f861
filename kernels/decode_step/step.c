/* A few tokens of each of B sequences (decode steps, speculative verification, short prefill
 * pieces) through a whole V4 model on the CPU, float32, in one call.
 *
 * The same math as engine/model/transformer.py (see ../shared/design/v4-model.md) for T_b
 * consecutive tokens of sequence b from its position pos_b, no autograd: per block mHC pre ->
 * attention (low-rank query, shared K=V row, sliding window, HCA/CSA compressors, lightning
 * indexer top-k, sinks, inverse RoPE, grouped output projection) -> mHC post -> mHC pre -> MoE
 * (hash or scored routing, SwiGLU experts, shared expert) -> mHC post; then the hc head, the
 * final norm and the vocabulary head.
 *
 * Why: a torch decode step of a small model is ~600 tiny ops whose dispatch costs several times
 * the arithmetic; here the cost is reading the weights once per call, whatever the number of
 * rows is. Every matrix is applied to the rows of all B sequences together (matmul.h), so a
 * step that decodes 16 users reads each weight slice once, not 16 times, and verifying
 * speculative drafts is nearly free; only what depends on a sequence's own state (window,
 * compressors, indexer, attention) runs sequence by sequence. A row's result does not depend on
 * the other rows of the call. The caller (deepfim.engine.model.decode_step) owns every state
 * tensor: this file reads the previous state and writes the next one into buffers it is handed,
 * so snapshots that share the old tensors stay valid. The attention itself and the mHC pre-mix
 * are the kernels of sparse_attn/decode.c and mhc/mhc.c, linked into the same library.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../indexer/select.h"
#include "../vec.h"

/* tokens of one sequence per call; rows (tokens of all sequences) per call */
enum { MAX_TOKENS = 128, MAX_ROWS = 256, MAX_ACTIVE = 64, MAX_STREAMS = 8, MAX_HEAD_DIM = 1024, MAX_INDEX_HEADS = 128 };
/* a sequence's tokens in one call are attended in up to MAX_PARTS parts on the OpenMP threads,
 * each of at least PART_TOKENS tokens (see attend_rows) */
enum { MAX_PARTS = 8, PART_TOKENS = 8 };
#define MATMUL_MAX_ROWS MAX_ROWS
#include "matmul.h"

int sparse_attn_fwd(const float *q, const float *raw, int64_t n_raw, int64_t raw_start, int64_t q_start,
                    int64_t window, const float *comp, int64_t n_comp, const int64_t *visible, const int64_t *topk,
                    int64_t k, const float *sink, float scale, int64_t batch, int64_t tokens, int64_t heads,
                    int64_t d, float *out);
int hc_pre_fwd(const float *x, const float *fn, const float *base, const float *scale, int64_t count, int n,
               int64_t dim, int iters, float eps, float norm_eps, float *u, float *post, float *comb);


enum { SCORE_SOFTMAX = 0, SCORE_SIGMOID = 1, SCORE_SQRTSOFTPLUS = 2 };

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
    int64_t bf16;    /* 0: float32 matrices; 1: bfloat16 (lossless when every value is one); 2: bfloat16,
                      * and the module path multiplies in bf16 (the model holds them so): `linear`
                      * rounds the activations too where the CPU has bf16 dot products */
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

#define dot vec_dot /* activations against activations (norms, attention, indexer) */

/* A model matrix from element `offset` on (an expert, a group): float32 or bfloat16 (M->bf16). */
static const void *at(const ModelWeights *M, const void *w, int64_t offset) {
    return (const char *)w + offset * (M->bf16 ? 2 : 4);
}

/* Y = W X (matmul.h) for the model's matrices, float32 sums of float32 activations against the
 * matrices in whichever precision they are held: the vocabulary head and the router gates,
 * whose outputs feed the softmax over the vocabulary and the experts' top-k (as the module path
 * keeps them in fp32 on the CPU). */
static void linear_f32(const ModelWeights *M, const void *w, const float *x, int64_t ldx, float *y, int64_t ldy,
                       int64_t out, int64_t in, int64_t T) {
    int threads = M->threads > 1 ? (int)M->threads : 1;
    if (M->bf16)
        matmul_bf16(w, x, ldx, y, ldy, out, in, T, threads);
    else
        matmul(w, x, ldx, y, ldy, out, in, T, threads);
}

/* The other matrices: for a model held in bf16 (M->bf16 == 2) on a CPU with bf16 dot products,
 * the activations are rounded to bf16 too (twice the multiply-adds an instruction, no widening),
 * as torch's bf16 matmul does for the module path; else as `linear_f32`. */
static void linear(const ModelWeights *M, const void *w, const float *x, int64_t ldx, float *y, int64_t ldy,
                   int64_t out, int64_t in, int64_t T) {
#ifdef MATMUL_BF16_DOT
    if (M->bf16 == 2 && matmul_bf16_dot(w, x, ldx, y, ldy, out, in, T, M->threads > 1 ? (int)M->threads : 1)) return;
#endif
    linear_f32(M, w, x, ldx, y, ldy, out, in, T);
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

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
static float swiglu_one(float g, float u, float limit, float weight) {
    if (limit > 0.f) {
        g = g < limit ? g : limit;
        u = u < -limit ? -limit : (u > limit ? limit : u);
    }
    return g / (1.0f + exps(-g)) * u * weight;
}

/* VL units at a time (the exponential: vec.h expv), each computed as swiglu_one computes it */
static void swiglu(float *gate, const float *up, int64_t n, float limit, float weight) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) {
        vf g = loadv(gate + i), u = loadv(up + i);
        if (limit > 0.f) {
            vf zero = {0}, hi = zero + limit, lo = zero - limit;
            g = selectv(g < hi, g, hi);
            u = selectv(u < lo, lo, selectv(u > hi, hi, u));
        }
        vf out = g / (1.0f + expv(-g)) * u * weight;
        memcpy(gate + i, &out, sizeof out);
    }
    for (; i < n; i++) gate[i] = swiglu_one(gate[i], up[i], limit, weight);
}

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

/* ---- scratch: one float buffer the caller allocates, cut into the arrays of a call ---- */

/* Offsets (floats, each array 64-byte aligned) of a call's arrays in the scratch buffer. One
 * function lays them out: it sizes the buffer (v4_step_scratch) and cuts it (v4_decode_batch). */
typedef struct {
    int64_t u, f, post, comb, copy;                      /* the whole call: mHC, block input/output */
    int64_t c_q, q, kv, o, low, cis;                     /* attention, all rows together */
    int64_t comp_kv, comp_gate, index_kv, index_gate, index_q, index_w;
    int64_t raw, rest, selected, index_scores, topk_kept;      /* attention, one sequence at a time */
    int64_t scores, xs, h1, h3, y, idx, weight;           /* MoE (reuses the attention's space) */
    int64_t total;
} Layout;

static int64_t take(int64_t *used, int64_t floats) {
    int64_t at = *used;
    *used += (floats + 15) & ~(int64_t)15;
    return at;
}

/* a part's top-k scratch (index_top_k_entries of 4 floats each), 64-byte aligned */
static int64_t topk_kept_floats(const ModelWeights *M, int64_t max_keys) {
    return (4 * index_top_k_entries(min64(M->index_topk, max_keys), max_keys) + 15) & ~(int64_t)15;
}

static Layout layout(const ModelWeights *M, int64_t N, int64_t max_keys) {
    Layout s;
    /* a sequence's tokens: at most all the call's rows */
    int64_t used = 0, n = M->n_hc, dim = M->dim, T = min64(N, MAX_TOKENS), hd = M->head_dim;
    s.u = take(&used, N * dim);
    s.f = take(&used, N * dim);
    s.post = take(&used, N * n);
    s.comb = take(&used, N * n * n);
    s.copy = take(&used, n * dim);
    int64_t shared_start = used, max_ratio = 1;
    for (int64_t l = 0; l < M->n_layers; l++) max_ratio = max64(max_ratio, M->layers[l].ratio);
    int64_t comp_width = 2 * max64(hd, M->index_dim), ih = M->index_heads, topk = M->index_topk;
    s.c_q = take(&used, N * M->q_lora);
    s.q = take(&used, N * M->n_heads * hd);
    s.kv = take(&used, N * hd);
    s.o = take(&used, N * M->n_heads * hd);
    s.low = take(&used, N * M->o_groups * M->o_lora);
    s.cis = take(&used, N * M->rope_dim);
    s.comp_kv = take(&used, N * comp_width);
    s.comp_gate = take(&used, N * comp_width);
    s.index_kv = take(&used, N * comp_width);
    s.index_gate = take(&used, N * comp_width);
    s.index_q = take(&used, N * ih * M->index_dim);
    s.index_w = take(&used, N * ih);
    s.raw = take(&used, (max64(M->window - 1, 0) + T) * hd);
    /* `rest`: a compressor's open window and new rows, then (after both compressors) the
     * indexer's selection, scores and top-k scratch of (score, index) pairs (4 floats each) */
    s.rest = used;
    int64_t pool = 2 * (max_ratio + T) * comp_width, index = used;
    s.selected = take(&index, 2 * T * topk);
    s.index_scores = take(&index, T * max_keys);
    s.topk_kept = take(&index, MAX_PARTS * topk_kept_floats(M, max_keys)); /* one per part */
    used = max64(s.rest + pool, index);
    int64_t attn_end = used;
    used = shared_start;
    int64_t E = M->n_experts, K = M->n_active, wide = max64(M->inter, M->shared_inter);
    s.scores = take(&used, N * E);
    s.xs = take(&used, N * dim);
    s.h1 = take(&used, N * wide);
    s.h3 = take(&used, N * wide);
    s.y = take(&used, N * dim);
    s.idx = take(&used, 2 * N * K);
    s.weight = take(&used, N * K);
    s.total = max64(attn_end, used);
    return s;
}

/* ---- compressor, indexer, attention ---- */


/* model.py Compressor.forward for one sequence's T tokens, given their kv and gate rows [T, width]
 * (the projections, computed for every row of the call together; the gate without the APE).
 * Returns the number of windows closed (new entries written from row n_entries). scratch:
 * 2 * (ratio + T) * width floats. */
static int64_t compressor_pool(const ModelWeights *M, const LayerWeights *L, const CompressorWeights *cw,
                               CompressorStep *cs, const float *new_kv, const float *new_gate, int64_t pos, int64_t T,
                               float *scratch) {
    int64_t rope_dim = M->rope_dim;
    int64_t m = cw->ratio, c = cw->width, d = cw->out_dim, r = cs->n_pending, rows = r + T;
    float *kv = scratch, *gate = scratch + rows * c; /* the open window's rows, then this call's */
    if (r) {
        memcpy(kv, cs->pending_kv, sizeof(float) * r * c);
        memcpy(gate, cs->pending_gate, sizeof(float) * r * c);
    }
    memcpy(kv + r * c, new_kv, sizeof(float) * T * c);
    memcpy(gate + r * c, new_gate, sizeof(float) * T * c);
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
        rms_norm(entry, cw->norm, d, M->norm_eps);
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

/* model.py Indexer.forward for one sequence: for each of its T tokens the top-k of its visible
 * keys, k = min(topk, n_keys), scored and selected by kernels/indexer/select.c for all T tokens
 * at once (each key block transposed once; as the module path's prefill selects). q [T, heads, d]
 * (roped) and w [T, heads] (head-scaled) are the projections of its rows; scores: T * n_keys. */
static void indexer_select(const ModelWeights *M, const LayerWeights *L, const float *q, const float *w,
                           const float *keys, int64_t n_keys, int64_t pos, int64_t T, int64_t k, int64_t *selected,
                           float *scores, IndexScored *kept) {
    int64_t h = M->index_heads, visible[MAX_TOKENS];
    float dot_scale = 1.0f / sqrtf((float)M->index_dim), wt[MAX_TOKENS * MAX_INDEX_HEADS];
    for (int64_t t = 0; t < T; t++) {
        visible[t] = min64((pos + t + 1) / L->index_comp.ratio, n_keys);
        for (int64_t i = 0; i < h; i++) wt[t * h + i] = w[t * h + i] * dot_scale;
    }
    index_select(q, wt, keys, n_keys, visible, T, h, M->index_dim, k, selected, scores, kept);
}

/* The calls' sequences: sequence b has count[b] tokens from position pos[b], rows first[b]... of
 * the call, and its per-layer state steps[b * n_layers + layer]. */
typedef struct {
    int64_t B, N;
    const int64_t *pos, *count, *first;
    LayerStep *steps;
} Batch;

/* One sequence's attention against its own state: window, compressors, indexer, sparse attention. */
static void attend_sequence(const ModelWeights *M, const LayerWeights *L, LayerStep *st, int64_t pos, int64_t T,
                            int64_t row0, float *scratch, const Layout *s) {
    int64_t hd = M->head_dim, heads = M->n_heads, ih = M->index_heads, id = M->index_dim;
    float *raw = scratch + s->raw, *kv = scratch + s->kv + row0 * hd;
    int64_t n_raw = st->n_window + T;
    /* raw rows: the window before this call, then the call's own kv rows */
    if (st->n_window) memcpy(raw, st->window, sizeof(float) * st->n_window * hd);
    memcpy(raw + st->n_window * hd, kv, sizeof(float) * T * hd);
    if (st->chunk_kv) memcpy(st->chunk_kv, kv, sizeof(float) * T * hd);
    int64_t keep = min64(M->window - 1, n_raw);
    if (keep > 0) memcpy(st->next_window, raw + (n_raw - keep) * hd, sizeof(float) * keep * hd);

    const float *comp = NULL;
    int64_t n_comp = 0, visible[MAX_TOKENS], k = 0, *selected = NULL, n_index_keys = 0;
    const float *index_keys = NULL; /* CSA: the indexer's keys, n_index_keys of them */
    int select = 0;
    if (L->ratio) {
        int64_t c = L->comp.width;
        float *rest = scratch + s->rest;
        CompressorStep *cs = &st->comp;
        n_comp = cs->n_entries + compressor_pool(M, L, &L->comp, cs, scratch + s->comp_kv + row0 * c,
                                                 scratch + s->comp_gate + row0 * c, pos, T, rest);
        comp = n_comp ? cs->entries : NULL;
        for (int64_t t = 0; t < T; t++) visible[t] = (pos + t + 1) / L->ratio;
        if (L->csa) {
            int64_t ic = L->index_comp.width;
            CompressorStep *is = &st->index_comp;
            int64_t n_keys = is->n_entries + compressor_pool(M, L, &L->index_comp, is, scratch + s->index_kv + row0 * ic,
                                                             scratch + s->index_gate + row0 * ic, pos, T, rest);
            k = min64(M->index_topk, n_comp);
            selected = (int64_t *)(scratch + s->selected);
            index_keys = is->entries, n_index_keys = n_keys, select = 1;
        }
    }
    /* Each token's selection and attention read the state built above and write only its own
     * rows, so the tokens of a prefill piece are split among the threads, bit for bit what one
     * thread computes (a 128-token piece at 16K tokens: ~40% of its time, on one core before). */
    int64_t parts = min64(min64(M->threads > 1 ? M->threads : 1, MAX_PARTS), T / PART_TOKENS);
    parts = parts > 1 ? parts : 1;
    int64_t kept_floats = topk_kept_floats(M, max64(n_index_keys, 1));
#pragma omp parallel for schedule(static) num_threads(parts) if (parts > 1)
    for (int64_t p = 0; p < parts; p++) {
        int64_t t0 = T * p / parts, t1 = T * (p + 1) / parts, n = t1 - t0;
        if (select)
            indexer_select(M, L, scratch + s->index_q + (row0 + t0) * ih * id, scratch + s->index_w + (row0 + t0) * ih,
                           index_keys, n_index_keys, pos + t0, n, k, selected + t0 * k,
                           scratch + s->index_scores + t0 * n_index_keys,
                           (IndexScored *)(scratch + s->topk_kept + p * kept_floats));
        sparse_attn_fwd(scratch + s->q + (row0 + t0) * heads * hd, raw, n_raw, pos - st->n_window, pos + t0, M->window,
                        comp, n_comp, visible + t0, selected ? selected + t0 * k : NULL, k, L->attn_sink,
                        1.0f / sqrtf((float)hd), 1, n, heads, hd, scratch + s->o + (row0 + t0) * heads * hd);
    }
}

/* model.py Attention.forward for every row of the call: the projections for all rows at once,
 * the state-dependent part sequence by sequence. x [N, dim] -> out [N, dim]. */
static void attention(const ModelWeights *M, const LayerWeights *L, int64_t layer, const Batch *bt, const float *x,
                      float *out, float *scratch, const Layout *s) {
    int64_t dim = M->dim, hd = M->head_dim, heads = M->n_heads, r = M->rope_dim, ql = M->q_lora, N = bt->N;
    float *c_q = scratch + s->c_q, *q = scratch + s->q, *kv = scratch + s->kv, *o = scratch + s->o;
    float *low = scratch + s->low, *cis_buf = scratch + s->cis;
    const float *cis[MAX_ROWS];
    for (int64_t b = 0; b < bt->B; b++)
        for (int64_t t = 0; t < bt->count[b]; t++) {
            int64_t row = bt->first[b] + t;
            cis[row] = cis_at(L, bt->pos[b] + t, r, cis_buf + row * r);
        }

    linear(M, L->wq_a, x, dim, c_q, ql, ql, dim, N);
    for (int64_t t = 0; t < N; t++) rms_norm(c_q + t * ql, L->q_norm, ql, M->norm_eps);
    linear(M, L->wq_b, c_q, ql, q, heads * hd, heads * hd, ql, N);
    for (int64_t t = 0; t < N; t++)
        for (int64_t h = 0; h < heads; h++) {
            float *qh = q + (t * heads + h) * hd;
            rms_norm(qh, NULL, hd, M->norm_eps);
            rope(qh, hd, cis[t], r, 0);
        }
    linear(M, L->wkv, x, dim, kv, hd, hd, dim, N);
    for (int64_t t = 0; t < N; t++) {
        rms_norm(kv + t * hd, L->kv_norm, hd, M->norm_eps);
        rope(kv + t * hd, hd, cis[t], r, 0);
    }
    if (L->ratio) {
        const CompressorWeights *cw = &L->comp;
        linear(M, cw->wkv, x, dim, scratch + s->comp_kv, cw->width, cw->width, dim, N);
        linear(M, cw->wgate, x, dim, scratch + s->comp_gate, cw->width, cw->width, dim, N);
        if (L->csa) {
            const CompressorWeights *iw = &L->index_comp;
            int64_t h = M->index_heads, d = M->index_dim;
            float *iq = scratch + s->index_q, *w = scratch + s->index_w, head_scale = 1.0f / sqrtf((float)h);
            linear(M, iw->wkv, x, dim, scratch + s->index_kv, iw->width, iw->width, dim, N);
            linear(M, iw->wgate, x, dim, scratch + s->index_gate, iw->width, iw->width, dim, N);
            linear(M, L->index_wq_b, c_q, ql, iq, h * d, h * d, ql, N);
            linear(M, L->index_weights_proj, x, dim, w, h, h, dim, N);
            for (int64_t t = 0; t < N; t++)
                for (int64_t i = 0; i < h; i++) {
                    rope(iq + (t * h + i) * d, d, cis[t], r, 0);
                    w[t * h + i] *= head_scale;
                }
        }
    }
    for (int64_t b = 0; b < bt->B; b++)
        attend_sequence(M, L, &bt->steps[b * M->n_layers + layer], bt->pos[b], bt->count[b], bt->first[b], scratch,
                        s);
    for (int64_t t = 0; t < N; t++)
        for (int64_t h = 0; h < heads; h++) rope(o + (t * heads + h) * hd, hd, cis[t], r, 1);
    int64_t group_in = heads * hd / M->o_groups, lr = M->o_groups * M->o_lora;
    for (int64_t g = 0; g < M->o_groups; g++)
        linear(M, at(M, L->wo_a, g * M->o_lora * group_in), o + g * group_in, heads * hd, low + g * M->o_lora, lr,
               M->o_lora, group_in, N);
    linear(M, L->wo_b, low, lr, out, dim, dim, lr, N);
}

/* ---- MoE ---- */

/* Scores of one token (the gate's logits [E], in place) -> its K experts and their weights. */
static void route(const ModelWeights *M, const LayerWeights *L, int64_t token, float *scores, int64_t *idx,
                  float *weight) {
    int64_t E = M->n_experts, K = M->n_active;
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

/* model.py MoE.forward for N rows x [N, dim] into out [N, dim]. Rows routed to the same expert,
 * whichever sequence they belong to, go through it together (one read of its weights). */
static void moe(const ModelWeights *M, const LayerWeights *L, const float *x, const int64_t *tokens, int64_t N,
                float *out, float *scratch, const Layout *s) {
    int64_t dim = M->dim, E = M->n_experts, K = M->n_active, inter = M->inter;
    float *scores = scratch + s->scores, *xs = scratch + s->xs, *h1 = scratch + s->h1, *h3 = scratch + s->h3;
    float *y = scratch + s->y, *weight = scratch + s->weight;
    int64_t *idx = (int64_t *)(scratch + s->idx);
    linear_f32(M, L->gate, x, dim, scores, E, E, dim, N);
    for (int64_t t = 0; t < N; t++) route(M, L, tokens[t], scores + t * E, idx + t * K, weight + t * K);
    memset(out, 0, sizeof(float) * N * dim);
    for (int64_t e = 0; e < E; e++) {
        int64_t users[MAX_ROWS], n = 0;
        float uw[MAX_ROWS];
        for (int64_t t = 0; t < N; t++)
            for (int64_t j = 0; j < K; j++)
                if (idx[t * K + j] == e) users[n] = t, uw[n++] = weight[t * K + j];
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
        int64_t sh = M->shared_inter;
        linear(M, L->sw1, x, dim, h1, sh, sh, dim, N);
        linear(M, L->sw3, x, dim, h3, sh, sh, dim, N);
        for (int64_t t = 0; t < N; t++) swiglu(h1 + t * sh, h3 + t * sh, sh, M->swiglu_limit, 1.0f);
        linear(M, L->sw2, h1, sh, y, dim, dim, sh, N);
        for (int64_t i = 0; i < N * dim; i++) out[i] += y[i];
    }
}

/* mhc/ref.py hc_post in place for one token: X'_j = post_j * f + sum_i comb[i, j] * X_i */
static void hc_post(float *x, const float *f, const float *post, const float *comb, int64_t n, int64_t dim,
                    float *copy) {
    memcpy(copy, x, sizeof(float) * n * dim);
    int64_t dv = dim & ~(int64_t)(VL - 1);
    for (int64_t j = 0; j < n; j++) {
        float *xj = x + j * dim;
        /* VL elements at a time, each summed in the scalar tail's order (no fused operations here) */
        for (int64_t i = 0; i < dv; i += VL) {
            vf acc = {0};
            for (int64_t s = 0; s < n; s++) acc += comb[s * n + j] * loadv(copy + s * dim + i);
            vf y = post[j] * loadv(f + i) + acc;
            memcpy(xj + i, &y, sizeof y);
        }
        for (int64_t i = dv; i < dim; i++) {
            float acc = 0.f;
            for (int64_t s = 0; s < n; s++) acc += comb[s * n + j] * copy[s * dim + i];
            xj[i] = post[j] * f[i] + acc;
        }
    }
}

/* The limits above, for the caller: [max tokens per sequence, max active experts, max mHC
 * streams, max head dim, max rows per call]. The Python side reads them instead of repeating them. */
void v4_step_limits(int64_t *out) {
    out[0] = MAX_TOKENS;
    out[1] = MAX_ACTIVE;
    out[2] = MAX_STREAMS;
    out[3] = MAX_HEAD_DIM;
    out[4] = MAX_ROWS;
    out[5] = MAX_INDEX_HEADS;
    out[6] = INDEX_MAX_DIM;
}

/* Floats of scratch a call of up to `rows` rows needs when no sequence has more than max_keys
 * indexer keys (its entries before the call plus its tokens in the call). */
int64_t v4_step_scratch(const ModelWeights *M, int64_t rows, int64_t max_keys) {
    return layout(M, rows, max_keys).total + 16;
}

/* Runs B sequences through every block: sequence b's count[b] tokens from position pos[b] (its
 * rows of tokens and x follow the rows of the sequences before it), then the head for its last
 * token (logits_mode[b] 1), every token (2) or none (0), its logits rows following those of the
 * sequences before it. steps: [B, n_layers] per-layer states. x: [rows, n_hc, dim] receives the
 * final residual streams. scratch: v4_step_scratch(M, rows, the most indexer keys of any
 * sequence: entries before the call plus its tokens) floats, 64-byte aligned. Returns 0; -1 for unsupported sizes, -2 for a compressor
 * state that does not match its position (nothing was written then). */
int v4_decode_batch(const ModelWeights *M, LayerStep *steps, int64_t B, const int64_t *pos, const int64_t *count,
                    const int64_t *tokens, float *x, const int64_t *logits_mode, float *logits, float *scratch) {
    int64_t n = M->n_hc, dim = M->dim, nd = n * dim, N = 0, first[MAX_ROWS], max_keys = 0;
    if (B < 1 || B > MAX_ROWS || n > MAX_STREAMS || M->head_dim > MAX_HEAD_DIM || M->n_active > MAX_ACTIVE ||
        M->rope_dim > MAX_HEAD_DIM || M->rope_dim > M->head_dim || M->index_heads > MAX_INDEX_HEADS ||
        M->index_dim > INDEX_MAX_DIM)
        return -1;
    for (int64_t b = 0; b < B; b++) {
        if (count[b] < 1 || count[b] > MAX_TOKENS || N + count[b] > MAX_ROWS) return -1;
        first[b] = N;
        N += count[b];
        for (int64_t l = 0; l < M->n_layers; l++) {
            const LayerWeights *L = &M->layers[l];
            const LayerStep *st = &steps[b * M->n_layers + l];
            if ((L->ratio && st->comp.n_pending != pos[b] % L->ratio) ||
                (L->csa && st->index_comp.n_pending != pos[b] % L->index_comp.ratio))
                return -2;
            if (L->csa) max_keys = max64(max_keys, st->index_comp.n_entries + count[b]);
        }
    }
    Layout s = layout(M, N, max_keys);
    Batch bt = {B, N, pos, count, first, steps};
    float *u = scratch + s.u, *f = scratch + s.f, *post = scratch + s.post, *comb = scratch + s.comb;
    float *copy = scratch + s.copy;
    for (int64_t t = 0; t < N; t++)
        for (int64_t i = 0; i < n; i++) memcpy(x + t * nd + i * dim, M->embed + tokens[t] * dim, sizeof(float) * dim);
    for (int64_t l = 0; l < M->n_layers; l++) {
        const LayerWeights *L = &M->layers[l];
        hc_pre_fwd(x, L->hc_attn_fn, L->hc_attn_base, L->hc_attn_scale, N, (int)n, dim, (int)M->sinkhorn_iters,
                   M->hc_eps, M->norm_eps, u, post, comb);
        for (int64_t t = 0; t < N; t++) rms_norm(u + t * dim, L->attn_norm, dim, M->norm_eps);
        attention(M, L, l, &bt, u, f, scratch, &s);
        for (int64_t t = 0; t < N; t++) hc_post(x + t * nd, f + t * dim, post + t * n, comb + t * n * n, n, dim, copy);
        hc_pre_fwd(x, L->hc_ffn_fn, L->hc_ffn_base, L->hc_ffn_scale, N, (int)n, dim, (int)M->sinkhorn_iters,
                   M->hc_eps, M->norm_eps, u, post, comb);
        for (int64_t t = 0; t < N; t++) rms_norm(u + t * dim, L->ffn_norm, dim, M->norm_eps);
        moe(M, L, u, tokens, N, f, scratch, &s);
        for (int64_t t = 0; t < N; t++) hc_post(x + t * nd, f + t * dim, post + t * n, comb + t * n * n, n, dim, copy);
    }
    /* mhc/ref.py hc_head: sigmoid(mix * scale + base) + eps weights, no Sinkhorn; then the norm,
     * for the rows whose logits are asked for, gathered into u */
    int64_t rows = 0;
    for (int64_t b = 0; b < B; b++) {
        if (logits_mode[b] == 0) continue;
        for (int64_t t = logits_mode[b] == 1 ? count[b] - 1 : 0; t < count[b]; t++, rows++) {
            const float *xt = x + (first[b] + t) * nd;
            float inv_rms = 1.0f / sqrtf(dot(xt, xt, nd) / (float)nd + M->norm_eps), w[MAX_STREAMS];
            matmul(M->hc_head_fn, xt, nd, w, n, n, nd, 1, 1);
            for (int64_t i = 0; i < n; i++)
                w[i] = sigmoidf(w[i] * inv_rms * M->hc_head_scale[0] + M->hc_head_base[i]) + M->hc_eps;
            float *ut = u + rows * dim;
            for (int64_t d = 0; d < dim; d++) {
                float acc = 0.f;
                for (int64_t i = 0; i < n; i++) acc += w[i] * xt[i * dim + d];
                ut[d] = acc;
            }
            rms_norm(ut, M->norm, dim, M->norm_eps);
        }
    }
    if (rows) linear_f32(M, M->head, u, dim, logits, M->vocab, M->vocab, dim, rows);
    return 0;
}
