/* One decoded token through a whole V4 model on the CPU, float32, in one call.
 *
 * The same math as engine/model.py (see ../shared/design/v4-model.md) for one token at position
 * `pos` with batch 1 and no autograd: per block mHC pre -> attention (low-rank query, shared K=V
 * row, sliding window, HCA/CSA compressors, lightning indexer top-k, sinks, inverse RoPE,
 * grouped output projection) -> mHC post -> mHC pre -> MoE (hash or scored routing, SwiGLU
 * experts, shared expert) -> mHC post; then the hc head, the final norm and the vocabulary head.
 *
 * Why: a torch decode step of a small model is ~600 tiny ops whose dispatch costs several times
 * the arithmetic; here the cost is reading the weights once. The caller (deepfim.engine.
 * decode_step) owns every state tensor: this file reads the previous state and writes the next
 * one into buffers it is handed, so snapshots that share the old tensors stay valid.
 * The attention itself and the mHC pre-mix are the kernels of sparse_attn/decode.c and
 * mhc/mhc.c, linked into the same library.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int sparse_attn_fwd(const float *q, const float *raw, int64_t n_raw, int64_t raw_start, int64_t q_start,
                    int64_t window, const float *comp, int64_t n_comp, const int64_t *visible, const int64_t *topk,
                    int64_t k, const float *sink, float scale, int64_t batch, int64_t tokens, int64_t heads,
                    int64_t d, float *out);
int hc_pre_fwd(const float *x, const float *fn, const float *base, const float *scale, int64_t count, int n,
               int64_t dim, int iters, float eps, float norm_eps, float *u, float *post, float *comb);

enum { SCORE_SOFTMAX = 0, SCORE_SIGMOID = 1, SCORE_SQRTSOFTPLUS = 2 };

/* ---- weights (filled once per model by the caller; row-major, as the torch parameters) ---- */

typedef struct {
    const float *wkv, *wgate; /* [width, dim] */
    const float *ape;         /* [ratio, width] */
    const float *norm;        /* [out_dim] */
    int64_t ratio, width, out_dim; /* CSA (ratio 4) overlaps: width = 2 * out_dim */
} CompressorWeights;

typedef struct {
    int64_t ratio; /* 0 sliding only, 4 CSA (with indexer), else HCA */
    const float *hc_attn_fn, *hc_attn_base, *hc_attn_scale, *hc_ffn_fn, *hc_ffn_base, *hc_ffn_scale;
    const float *attn_norm, *ffn_norm;
    const float *wq_a, *q_norm, *wq_b, *wkv, *kv_norm, *wo_a, *wo_b, *attn_sink;
    CompressorWeights comp, index_comp;
    const float *index_wq_b, *index_weights_proj;
    const float *gate, *gate_bias; /* [E, dim], [E] (NULL for hash layers) */
    const int64_t *tid2eid;        /* [vocab, K] for hash layers, else NULL */
    const float *w1, *w2, *w3;     /* [E, inter, dim], [E, dim, inter], [E, inter, dim] */
    const float *sw1, *sw2, *sw3;  /* shared expert [S, dim], [dim, S], [S, dim] or NULL */
} LayerWeights;

typedef struct {
    int64_t dim, n_hc, n_heads, head_dim, rope_dim, q_lora, o_groups, o_lora, window;
    int64_t index_heads, index_dim, index_topk;
    int64_t n_experts, n_active, inter, shared_inter, vocab, n_layers;
    int64_t sinkhorn_iters, score_func;
    float hc_eps, norm_eps, route_scale, swiglu_limit;
    const float *embed, *hc_head_fn, *hc_head_base, *hc_head_scale, *norm, *head;
    const LayerWeights *layers;
} ModelWeights;

/* ---- per-step state, in and out ---- */

typedef struct {
    const float *pending_kv, *pending_gate; /* [n_pending, width]: the open window's tokens */
    int64_t n_pending;                      /* must be pos % ratio */
    const float *prev_kv, *prev_gate;       /* CSA: [ratio, out_dim] A-halves of the last closed window, or NULL */
    float *next_pending_kv, *next_pending_gate; /* [n_pending + 1, width] when the window stays open */
    float *next_prev_kv, *next_prev_gate;       /* CSA: [ratio, out_dim] when the window closes */
    float *entries;                             /* rows [n_entries + 1, out_dim]: a new entry goes to row n_entries */
    int64_t n_entries;
    const float *entry_cis; /* [rope_dim / 2] (cos, sin) at the closing window's first position */
} CompressorStep;

typedef struct {
    const float *cis;    /* [rope_dim / 2] (cos, sin) at pos, this layer's rotary */
    const float *window; /* [n_window, head_dim] raw kv rows of positions pos - n_window .. pos - 1 */
    int64_t n_window;
    float *next_window;  /* [min(n_window + 1, window - 1), head_dim] */
    CompressorStep comp, index_comp;
} LayerStep;

/* ---- small dense helpers ---- */

typedef float v16 __attribute__((vector_size(64)));

static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float hsum16(v16 v) {
    float s = 0.f;
    for (int i = 0; i < 16; i++) s += v[i];
    return s;
}

/* y[out] = W[out, in] x[in]: four rows at a time so each load of x feeds four accumulators. */
static void matvec(const float *w, const float *x, float *y, int64_t out, int64_t in) {
    int64_t in16 = in & ~(int64_t)15, o = 0;
    for (; o + 4 <= out; o += 4) {
        const float *w0 = w + o * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t i = 0; i < in16; i += 16) {
            v16 xv = load16(x + i);
            a0 += load16(w0 + i) * xv;
            a1 += load16(w1 + i) * xv;
            a2 += load16(w2 + i) * xv;
            a3 += load16(w3 + i) * xv;
        }
        float s0 = hsum16(a0), s1 = hsum16(a1), s2 = hsum16(a2), s3 = hsum16(a3);
        for (int64_t i = in16; i < in; i++) {
            s0 += w0[i] * x[i];
            s1 += w1[i] * x[i];
            s2 += w2[i] * x[i];
            s3 += w3[i] * x[i];
        }
        y[o] = s0, y[o + 1] = s1, y[o + 2] = s2, y[o + 3] = s3;
    }
    for (; o < out; o++) {
        const float *w0 = w + o * in;
        v16 a0 = {0};
        for (int64_t i = 0; i < in16; i += 16) a0 += load16(w0 + i) * load16(x + i);
        float s = hsum16(a0);
        for (int64_t i = in16; i < in; i++) s += w0[i] * x[i];
        y[o] = s;
    }
}

static float sum_squares(const float *x, int64_t n) {
    v16 a = {0};
    int64_t n16 = n & ~(int64_t)15;
    for (int64_t i = 0; i < n16; i += 16) {
        v16 v = load16(x + i);
        a += v * v;
    }
    float s = hsum16(a);
    for (int64_t i = n16; i < n; i++) s += x[i] * x[i];
    return s;
}

/* F.rms_norm(x, weight, eps) in place; weight NULL = unweighted */
static void rms_norm(float *x, const float *weight, int64_t n, float eps) {
    float inv = 1.0f / sqrtf(sum_squares(x, n) / (float)n + eps);
    if (weight)
        for (int64_t i = 0; i < n; i++) x[i] = x[i] * inv * weight[i];
    else
        for (int64_t i = 0; i < n; i++) x[i] *= inv;
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

/* ---- blocks ---- */

/* Pools a closed window (kernels/compressor/ref.py pool_windows for one window) into `entry`. */
static void pool_window(const CompressorWeights *cw, const CompressorStep *cs, const float *kv, const float *gate,
                        float *entry) {
    int64_t m = cw->ratio, c = cw->width, d = cw->out_dim;
    int overlap = m == 4;
    for (int64_t ch = 0; ch < d; ch++) {
        /* slots: CSA = A-halves of the previous window (if any), then B-halves of this one */
        float mx = -INFINITY;
        int64_t off = overlap ? d : 0;
        if (overlap && cs->prev_kv)
            for (int64_t s = 0; s < m; s++) mx = fmaxf(mx, cs->prev_gate[s * d + ch]);
        for (int64_t s = 0; s < m; s++) mx = fmaxf(mx, gate[s * c + off + ch]);
        float z = 0.f, acc = 0.f;
        if (overlap && cs->prev_kv)
            for (int64_t s = 0; s < m; s++) {
                float e = expf(cs->prev_gate[s * d + ch] - mx);
                z += e;
                acc += e * cs->prev_kv[s * d + ch];
            }
        for (int64_t s = 0; s < m; s++) {
            float e = expf(gate[s * c + off + ch] - mx);
            z += e;
            acc += e * kv[s * c + off + ch];
        }
        entry[ch] = acc / z;
    }
}

/* model.py Compressor.forward for one token; returns 1 when it closed a window (new entry). */
static int compressor_step(const CompressorWeights *cw, CompressorStep *cs, const float *x, int64_t dim,
                           int64_t pos, int64_t rope_dim, float norm_eps, float *scratch) {
    int64_t m = cw->ratio, c = cw->width, d = cw->out_dim;
    float *kv = scratch, *gate = scratch + m * c; /* the window's rows [m, c] */
    int64_t r = cs->n_pending;
    memcpy(kv, cs->pending_kv, sizeof(float) * r * c);
    memcpy(gate, cs->pending_gate, sizeof(float) * r * c);
    matvec(cw->wkv, x, kv + r * c, c, dim);
    matvec(cw->wgate, x, gate + r * c, c, dim);
    const float *ape = cw->ape + (pos % m) * c;
    for (int64_t i = 0; i < c; i++) gate[r * c + i] += ape[i];
    if (r + 1 < m) {
        memcpy(cs->next_pending_kv, kv, sizeof(float) * (r + 1) * c);
        memcpy(cs->next_pending_gate, gate, sizeof(float) * (r + 1) * c);
        return 0;
    }
    float *entry = cs->entries + cs->n_entries * d;
    pool_window(cw, cs, kv, gate, entry);
    if (m == 4)
        for (int64_t s = 0; s < m; s++) {
            memcpy(cs->next_prev_kv + s * d, kv + s * c, sizeof(float) * d);
            memcpy(cs->next_prev_gate + s * d, gate + s * c, sizeof(float) * d);
        }
    rms_norm(entry, cw->norm, d, norm_eps);
    rope(entry, d, cs->entry_cis, rope_dim, 0);
    return 1;
}

typedef struct {
    float score;
    int64_t index;
} Scored;

static int by_score_desc(const void *a, const void *b) {
    float x = ((const Scored *)a)->score, y = ((const Scored *)b)->score;
    if (x != y) return x > y ? -1 : 1;
    int64_t i = ((const Scored *)a)->index, j = ((const Scored *)b)->index;
    return (i > j) - (i < j);
}

/* Keeps the k best of n scores (min-heap of k), written best first into idx; returns k. */
static int64_t top_k(const float *scores, int64_t n, int64_t k, int64_t *idx, Scored *heap) {
    if (k > n) k = n;
    int64_t size = 0;
    for (int64_t i = 0; i < n; i++) {
        Scored s = {scores[i], i};
        if (size < k) {
            int64_t j = size++;
            while (j > 0 && by_score_desc(&heap[(j - 1) / 2], &s) < 0) { /* parent better: sift up */
                heap[j] = heap[(j - 1) / 2];
                j = (j - 1) / 2;
            }
            heap[j] = s;
        } else if (k > 0 && by_score_desc(&s, &heap[0]) < 0) { /* better than the worst kept */
            int64_t j = 0;
            for (;;) {
                int64_t l = 2 * j + 1, w = j;
                const Scored *worst = &s;
                if (l < k && by_score_desc(&heap[l], worst) > 0) w = l, worst = &heap[l];
                if (l + 1 < k && by_score_desc(&heap[l + 1], worst) > 0) w = l + 1;
                if (w == j) break;
                heap[j] = heap[w];
                j = w;
            }
            heap[j] = s;
        }
    }
    qsort(heap, (size_t)k, sizeof(Scored), by_score_desc);
    for (int64_t i = 0; i < k; i++) idx[i] = heap[i].index;
    return k;
}

/* model.py Indexer.forward for one query over the n_keys visible keys: top-k entry indices. */
static int64_t indexer_select(const ModelWeights *M, const LayerWeights *L, const float *x, const float *c_q,
                              const float *cis, const float *keys, int64_t n_keys, int64_t *selected,
                              float *scratch) {
    int64_t h = M->index_heads, d = M->index_dim;
    float *q = scratch, *w = q + h * d, *scores = w + h;
    Scored *heap = (Scored *)(((uintptr_t)(scores + n_keys) + 15) & ~(uintptr_t)15);
    matvec(L->index_wq_b, c_q, q, h * d, M->q_lora);
    for (int64_t i = 0; i < h; i++) rope(q + i * d, d, cis, M->rope_dim, 0);
    matvec(L->index_weights_proj, x, w, h, M->dim);
    float head_scale = 1.0f / sqrtf((float)h), dot_scale = 1.0f / sqrtf((float)d);
    for (int64_t i = 0; i < h; i++) w[i] *= head_scale;
    for (int64_t e = 0; e < n_keys; e++) {
        float total = 0.f;
        for (int64_t i = 0; i < h; i++) {
            const float *qi = q + i * d, *k = keys + e * d;
            v16 a = {0};
            int64_t d16 = d & ~(int64_t)15;
            for (int64_t j = 0; j < d16; j += 16) a += load16(qi + j) * load16(k + j);
            float s = hsum16(a);
            for (int64_t j = d16; j < d; j++) s += qi[j] * k[j];
            s = s > 0.f ? s * dot_scale : 0.f;
            total += s * w[i];
        }
        scores[e] = total;
    }
    return top_k(scores, n_keys, M->index_topk, selected, heap);
}

static void attention(const ModelWeights *M, const LayerWeights *L, LayerStep *st, const float *x, int64_t pos,
                      float *out, float *scratch) {
    int64_t dim = M->dim, hd = M->head_dim, heads = M->n_heads, r = M->rope_dim;
    float *c_q = scratch, *q = c_q + M->q_lora, *raw = q + heads * hd;
    float *o = raw + (st->n_window + 1) * hd, *low = o + heads * hd, *rest = low + M->o_groups * M->o_lora;

    matvec(L->wq_a, x, c_q, M->q_lora, dim);
    rms_norm(c_q, L->q_norm, M->q_lora, M->norm_eps);
    matvec(L->wq_b, c_q, q, heads * hd, M->q_lora);
    for (int64_t h = 0; h < heads; h++) {
        rms_norm(q + h * hd, NULL, hd, M->norm_eps);
        rope(q + h * hd, hd, st->cis, r, 0);
    }
    /* raw rows: the window before this token, then its own kv */
    memcpy(raw, st->window, sizeof(float) * st->n_window * hd);
    float *kv = raw + st->n_window * hd;
    matvec(L->wkv, x, kv, hd, dim);
    rms_norm(kv, L->kv_norm, hd, M->norm_eps);
    rope(kv, hd, st->cis, r, 0);
    int64_t n_raw = st->n_window + 1, keep = M->window - 1 < n_raw ? M->window - 1 : n_raw;
    if (keep > 0) memcpy(st->next_window, raw + (n_raw - keep) * hd, sizeof(float) * keep * hd);

    const float *comp = NULL;
    int64_t n_comp = 0, visible = 0, k = 0, *selected = NULL;
    if (L->ratio) {
        CompressorStep *cs = &st->comp;
        n_comp = cs->n_entries + compressor_step(&L->comp, cs, x, dim, pos, r, M->norm_eps, rest);
        comp = n_comp ? cs->entries : NULL;
        visible = (pos + 1) / L->ratio;
        if (L->ratio == 4) {
            CompressorStep *is = &st->index_comp;
            int64_t n_keys = is->n_entries + compressor_step(&L->index_comp, is, x, dim, pos, r, M->norm_eps, rest);
            selected = (int64_t *)rest;
            float *index_scratch = rest + 2 * (M->index_topk + 1);
            k = indexer_select(M, L, x, c_q, st->cis, is->entries, n_keys < visible ? n_keys : visible, selected,
                               index_scratch);
        }
    }
    sparse_attn_fwd(q, raw, n_raw, pos - st->n_window, pos, M->window, comp, n_comp, &visible, selected, k,
                    L->attn_sink, 1.0f / sqrtf((float)hd), 1, 1, heads, hd, o);
    for (int64_t h = 0; h < heads; h++) rope(o + h * hd, hd, st->cis, r, 1);
    int64_t group_in = heads * hd / M->o_groups;
    for (int64_t g = 0; g < M->o_groups; g++)
        matvec(L->wo_a + g * M->o_lora * group_in, o + g * group_in, low + g * M->o_lora, M->o_lora, group_in);
    matvec(L->wo_b, low, out, dim, M->o_groups * M->o_lora);
}

static void moe(const ModelWeights *M, const LayerWeights *L, const float *x, int64_t token, float *out,
                float *scratch) {
    int64_t dim = M->dim, E = M->n_experts, K = M->n_active;
    float *scores = scratch, *h1 = scores + E, *h3 = h1 + (M->inter > M->shared_inter ? M->inter : M->shared_inter);
    float *y = h3 + (M->inter > M->shared_inter ? M->inter : M->shared_inter);
    int64_t idx[64];
    float weight[64];
    matvec(L->gate, x, scores, E, dim);
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

    int64_t inter = M->inter;
    for (int64_t j = 0; j < K; j++) {
        int64_t e = idx[j];
        matvec(L->w1 + e * inter * dim, x, h1, inter, dim);
        matvec(L->w3 + e * inter * dim, x, h3, inter, dim);
        swiglu(h1, h3, inter, M->swiglu_limit, weight[j]);
        matvec(L->w2 + e * dim * inter, h1, j ? y : out, dim, inter);
        if (j)
            for (int64_t i = 0; i < dim; i++) out[i] += y[i];
    }
    if (K == 0) memset(out, 0, sizeof(float) * dim);
    if (L->sw1) {
        int64_t s = M->shared_inter;
        matvec(L->sw1, x, h1, s, dim);
        matvec(L->sw3, x, h3, s, dim);
        swiglu(h1, h3, s, M->swiglu_limit, 1.0f);
        matvec(L->sw2, h1, y, dim, s);
        for (int64_t i = 0; i < dim; i++) out[i] += y[i];
    }
}

/* mhc/ref.py hc_post in place: X'_j = post_j * f + sum_i comb[i, j] * X_i */
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

/* Floats of scratch a step needs with up to max_keys indexer keys (the caller allocates it). */
int64_t v4_step_scratch(const ModelWeights *M, int64_t max_keys) {
    int64_t wide = M->inter > M->shared_inter ? M->inter : M->shared_inter, max_ratio = 4;
    for (int64_t l = 0; l < M->n_layers; l++)
        if (M->layers[l].ratio > max_ratio) max_ratio = M->layers[l].ratio;
    int64_t comp_width = 2 * (M->head_dim > M->index_dim ? M->head_dim : M->index_dim);
    int64_t k = M->index_topk < max_keys ? M->index_topk : max_keys;
    /* selected ids, q, weights, scores, an aligned heap of (score, index) pairs */
    int64_t index = 2 * (M->index_topk + 1) + M->index_heads * (M->index_dim + 1) + max_keys + 4 + 4 * k;
    int64_t rest = 2 * max_ratio * comp_width + index; /* a compressor's window, then the indexer */
    int64_t max_window = M->window > 1 ? M->window - 1 : 0;
    int64_t attn = M->q_lora + M->n_heads * M->head_dim * 2 + (max_window + 1) * M->head_dim +
                   M->o_groups * M->o_lora + rest;
    int64_t ffn = M->n_experts + 2 * wide + M->dim;
    int64_t hc = M->dim * (3 + M->n_hc) + M->n_hc * (M->n_hc + 1);
    return hc + (attn > ffn ? attn : ffn) + 64;
}

/* Runs one token through every block and, if logits != NULL, the head. x: [n_hc, dim] receives
 * the final residual streams. Returns 0; -1 for unsupported dimensions, -2 for a compressor state
 * that does not match pos (nothing was written then). */
int v4_decode_step(const ModelWeights *M, LayerStep *steps, int64_t pos, int64_t token, float *x, float *logits,
                   float *scratch) {
    int64_t n = M->n_hc, dim = M->dim;
    if (n > 8 || M->head_dim > 1024 || M->n_active > 64 || M->rope_dim > M->head_dim) return -1;
    float *u = scratch, *f = u + dim, *copy = f + dim, *post = copy + n * dim, *comb = post + n;
    float *work = comb + n * n;
    for (int64_t l = 0; l < M->n_layers; l++) {
        const LayerWeights *L = &M->layers[l];
        if ((L->ratio && steps[l].comp.n_pending != pos % L->ratio) ||
            (L->ratio == 4 && steps[l].index_comp.n_pending != pos % 4))
            return -2;
    }
    for (int64_t i = 0; i < n; i++) memcpy(x + i * dim, M->embed + token * dim, sizeof(float) * dim);
    for (int64_t l = 0; l < M->n_layers; l++) {
        const LayerWeights *L = &M->layers[l];
        LayerStep *st = &steps[l];
        hc_pre_fwd(x, L->hc_attn_fn, L->hc_attn_base, L->hc_attn_scale, 1, (int)n, dim, (int)M->sinkhorn_iters,
                   M->hc_eps, M->norm_eps, u, post, comb);
        rms_norm(u, L->attn_norm, dim, M->norm_eps);
        attention(M, L, st, u, pos, f, work);
        hc_post(x, f, post, comb, n, dim, copy);
        hc_pre_fwd(x, L->hc_ffn_fn, L->hc_ffn_base, L->hc_ffn_scale, 1, (int)n, dim, (int)M->sinkhorn_iters,
                   M->hc_eps, M->norm_eps, u, post, comb);
        rms_norm(u, L->ffn_norm, dim, M->norm_eps);
        moe(M, L, u, token, f, work);
        hc_post(x, f, post, comb, n, dim, copy);
    }
    if (logits == NULL) return 0;
    /* mhc/ref.py hc_head: sigmoid(mix * scale + base) + eps weights, no Sinkhorn */
    float inv_rms = 1.0f / sqrtf(sum_squares(x, n * dim) / (float)(n * dim) + M->norm_eps);
    float w[8];
    matvec(M->hc_head_fn, x, w, n, n * dim);
    for (int64_t i = 0; i < n; i++) w[i] = sigmoidf(w[i] * inv_rms * M->hc_head_scale[0] + M->hc_head_base[i]) + M->hc_eps;
    for (int64_t d = 0; d < dim; d++) {
        float acc = 0.f;
        for (int64_t i = 0; i < n; i++) acc += w[i] * x[i * dim + d];
        u[d] = acc;
    }
    rms_norm(u, M->norm, dim, M->norm_eps);
    matvec(M->head, u, logits, M->vocab, dim);
    return 0;
}
