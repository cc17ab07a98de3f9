/* dllab's compiled attention kernels for Taylor features with K <= 3: the input gradient, and the read
 * through the features (below), each fused.
 *
 * Built by dllab.attention.taylor.fused.native with the system's C compiler (-O3 -march=native -fopenmp)
 * and called through ctypes; tests/attention/taylor/fused/test_native.py holds each to plain products.
 *
 * For a state S (B, M, C), an output-side gradient g (B, C, T) and the scaled inputs x = x_scale * the
 * given (B, D, T) (raw inputs, or the degree-1 rows of the features with x_scale 1), every token t gets
 *
 *     out[a] = sum_p [i_p = a] f_p h_p x_{j_p}  +  [j_p = a, i_p != a] f_p h_p x_{i_p}     (x_{-1} = 1)
 *     h_p    = sum_c S[row_p, c] g[c]
 *
 * over the terms p (a linear feature: j_p = -1; a product x_i x_j, i <= j: both derivatives, with f_p
 * carrying the 2 of d x_i^2 / d x_i, the feature weight and sqrt(scale)). That is dL/dx through
 * dL/du = S g without forming dL/du (B, M, T) or PyTorch's (B, D (D + 1), T) intermediate: each tile of W
 * tokens is read once, kept in registers and L1, and written once.
 *
 * Terms come grouped by i (group i: terms[start[i]] .. terms[start[i + 1] - 1]), so out[i] is summed in a
 * register. Tensors are passed as pointers and element strides (any layout); a tile is gathered into
 * aligned vectors first, so strided inputs (a transposed view) cost a few loads per token. Each kernel
 * returns 0, or 1 when a thread could not allocate its buffers.
 *
 * A tile is R machine vectors wide (VEC bytes each: 64 with AVX-512, else 32). Every running sum is an
 * array of R such vectors with constant indices, which the compiler keeps in registers; a vector type as
 * wide as the whole tile was kept on the stack instead, a load and a store around every multiply-add.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#define VEC 64
#else
#define VEC 32
#endif
#define PRAGMA(x) _Pragma(#x)
#define UNROLL(n) PRAGMA(GCC unroll n) /* n = 1 in generic instances: unrolling runtime bounds bloats code */

#ifndef QUADRATIC_VECTORS /* vectors per tile row of each kernel (-D to experiment) */
#define QUADRATIC_VECTORS 4
#endif
#ifndef READ_VECTORS
#define READ_VECTORS 1
#endif

/* Batches have two levels, b = (b1, b2) with b2 < inner, so that chunks of a block can be read and written
   in place in a (B1, L, ...) sequence: each tensor gives a stride for both. */
#define OFF(p, b) ((b) / inner * p##_b1 + (b) % inner * p##_b2)

/* Gather n <= W values src[t * stride] into R vectors (zero beyond n), times scale. */
#define LOAD(VT, T, R, W, dst, src, stride, n, scale)                                                  \
    do {                                                                                                \
        T buf_[W] __attribute__((aligned(VEC))) = {0};                                                  \
        for (int64_t t_ = 0; t_ < (n); t_++) buf_[t_] = (src)[t_ * (stride)];                           \
        for (int r_ = 0; r_ < (R); r_++) {                                                              \
            (dst)[r_] = *(const VT *)(buf_ + r_ * (VEC / sizeof(T)));                                   \
            (dst)[r_] *= (scale);                                                                       \
        }                                                                                               \
    } while (0)

/* Scatter the first n of R vectors to dst[t * stride]. (Vectors are moved by assignment, never memcpy: a
   vector whose address is taken is kept in memory, not in a register.) */
#define STORE(VT, T, R, W, dst, stride, src, n)                                                         \
    do {                                                                                                \
        T buf_[W] __attribute__((aligned(VEC)));                                                        \
        for (int r_ = 0; r_ < (R); r_++) *(VT *)(buf_ + r_ * (VEC / sizeof(T))) = (src)[r_];            \
        for (int64_t t_ = 0; t_ < (n); t_++) (dst)[t_ * (stride)] = buf_[t_];                           \
    } while (0)

#define KERNEL(NAME, T, R)                                                                              \
    typedef T NAME##_vec __attribute__((vector_size(VEC)));                                             \
    enum { NAME##_W = (R) * (VEC / sizeof(T)) };                                                        \
                                                                                                        \
    static inline __attribute__((always_inline)) void NAME##_tile(                                     \
        int64_t C, int64_t D, const T *S, int64_t s_m, int64_t s_c, const int64_t *start,              \
        const int64_t *rows, const int32_t *tj, const T *factors,                                      \
        const T *g, int64_t g_c, int64_t g_t, const T *x, int64_t x_d, int64_t x_t, T x_scale,         \
        T *out, int64_t o_d, int64_t o_t, int64_t n, NAME##_vec *gv, NAME##_vec *xv, NAME##_vec *acc)   \
    {                                                                                                   \
        for (int64_t c = 0; c < C; c++) LOAD(NAME##_vec, T, R, NAME##_W, gv + c * (R), g + c * g_c, g_t, n, 1); \
        for (int64_t d = 0; d < D; d++) {                                                               \
            LOAD(NAME##_vec, T, R, NAME##_W, xv + d * (R), x + d * x_d, x_t, n, x_scale);               \
            for (int r = 0; r < (R); r++) acc[d * (R) + r] = (NAME##_vec){0};                           \
        }                                                                                               \
        for (int64_t i = 0; i < D; i++) {                                                               \
            NAME##_vec own[R] = {{0}};                                                                  \
            for (int64_t p = start[i]; p < start[i + 1]; p++) {                                         \
                const T *s = S + rows[p] * s_m;                                                         \
                NAME##_vec h[R];                                                                        \
                for (int r = 0; r < (R); r++) h[r] = gv[r] * s[0];                                      \
                for (int64_t c = 1; c < C; c++)                                                         \
                    for (int r = 0; r < (R); r++) h[r] += gv[c * (R) + r] * s[c * s_c];                 \
                for (int r = 0; r < (R); r++) h[r] *= factors[p];                                       \
                int32_t j = tj[p];                                                                      \
                if (j < 0) {                                                                            \
                    for (int r = 0; r < (R); r++) own[r] += h[r];                                       \
                } else {                                                                                \
                    for (int r = 0; r < (R); r++) own[r] += h[r] * xv[j * (R) + r];                     \
                    if (j != i)                                                                         \
                        for (int r = 0; r < (R); r++) acc[j * (R) + r] += h[r] * xv[i * (R) + r];       \
                }                                                                                       \
            }                                                                                           \
            for (int r = 0; r < (R); r++) acc[i * (R) + r] += own[r];                                   \
        }                                                                                               \
        for (int64_t d = 0; d < D; d++) STORE(NAME##_vec, T, R, NAME##_W, out + d * o_d, o_t, acc + d * (R), n);    \
    }                                                                                                   \
                                                                                                        \
    int NAME(int64_t threads, int64_t B, int64_t inner, int64_t tokens, int64_t C, int64_t D,           \
             const T *S, int64_t s_b1, int64_t s_b2, int64_t s_m, int64_t s_c,                          \
             const T *g, int64_t g_b1, int64_t g_b2, int64_t g_c, int64_t g_t,                          \
             const T *x, int64_t x_b1, int64_t x_b2, int64_t x_d, int64_t x_t, T x_scale,               \
             T *out, int64_t o_b1, int64_t o_b2, int64_t o_d, int64_t o_t,                              \
             const int64_t *start, const int64_t *rows, const int32_t *tj, const T *factors)            \
    {                                                                                                   \
        const int64_t W = NAME##_W, tiles = (tokens + W - 1) / W;                                       \
        int failed = 0;                                                                                 \
        _Pragma("omp parallel num_threads(threads) reduction(|| : failed)")                             \
        {                                                                                               \
            NAME##_vec *vecs = aligned_alloc(VEC, sizeof(NAME##_vec) * (R) * (C + 2 * D));              \
            failed = !vecs;                                                                             \
            _Pragma("omp for schedule(static)")                                                         \
            for (int64_t job = 0; job < B * tiles; job++) {                                             \
                if (failed) continue;                                                                   \
                int64_t b = job / tiles, t0 = (job % tiles) * W;                                        \
                int64_t n = tokens - t0 < W ? tokens - t0 : W;                                          \
                const T *sb = S + OFF(s, b), *gb = g + OFF(g, b) + t0 * g_t, *xb = x + OFF(x, b) + t0 * x_t;   \
                T *ob = out + OFF(o, b) + t0 * o_t;                                                     \
                NAME##_vec *gv = vecs, *xv = vecs + (R) * C, *acc = vecs + (R) * (C + D);               \
                if (C == 17) /* Dv = 16 plus the normaliser: a constant the compiler unrolls */         \
                    NAME##_tile(17, D, sb, s_m, s_c, start, rows, tj, factors, gb, g_c, g_t, xb, x_d, x_t,  \
                                x_scale, ob, o_d, o_t, n,                                               \
                                gv, xv, acc);                                                           \
                else                                                                                    \
                    NAME##_tile(C, D, sb, s_m, s_c, start, rows, tj, factors, gb, g_c, g_t, xb, x_d, x_t,   \
                                x_scale, ob, o_d, o_t, n,                                               \
                                gv, xv, acc);                                                           \
            }                                                                                           \
            free(vecs);                                                                                 \
        }                                                                                               \
        return failed;                                                                                  \
    }

KERNEL(dllab_quadratic_gradient_f32, float, QUADRATIC_VECTORS)
KERNEL(dllab_quadratic_gradient_f64, double, QUADRATIC_VECTORS)

/* The read through the features: for A (B, C, M) and inputs x (B, D, T) scaled by x_scale,
 *
 *     out[c, t] = sum_m A[c, m] w_m u_m(x_t),    u = [1, x, x_i x_j (the pairs (first[m], second[m]), m > D)]
 *
 * (w: the features' weights, or NULL for 1), the product A u(X) of the monomials without forming u (B, M, T):
 * each tile builds its features in an L1 buffer, then each block of up to 5 channels sums over them in
 * registers. It is the forward's read of [S, z] by the queries and the backward's gradient of V through the
 * keys' features.
 */
#define READ(NAME, T, R)                                                                                \
    typedef T NAME##_vec __attribute__((vector_size(VEC)));                                             \
    enum { NAME##_W = (R) * (VEC / sizeof(T)) };                                                        \
                                                                                                        \
    static inline __attribute__((always_inline)) void NAME##_channels(                                 \
        int K, int64_t M, int64_t c0, const T *A, int64_t a_c, int64_t a_m, const NAME##_vec *u,       \
        T *out, int64_t o_c, int64_t o_t, int64_t n)                                                   \
    {                                                                                                   \
        NAME##_vec acc[5][R] = {{{0}}};                                                                 \
        const T *s = A + c0 * a_c;                                                                      \
        for (int64_t m = 0; m < M; m++)                                                                 \
            for (int k = 0; k < K; k++)                                                                 \
                for (int r = 0; r < (R); r++) acc[k][r] += u[m * (R) + r] * s[k * a_c + m * a_m];       \
        for (int k = 0; k < K; k++) STORE(NAME##_vec, T, R, NAME##_W, out + (c0 + k) * o_c, o_t, acc[k], n);        \
    }                                                                                                   \
                                                                                                        \
    int NAME(int64_t threads, int64_t B, int64_t inner, int64_t tokens, int64_t C, int64_t D, int64_t M, \
             const T *A, int64_t a_b1, int64_t a_b2, int64_t a_c, int64_t a_m,                         \
             const T *x, int64_t x_b1, int64_t x_b2, int64_t x_d, int64_t x_t, T x_scale,               \
             T *out, int64_t o_b1, int64_t o_b2, int64_t o_c, int64_t o_t,                              \
             const int32_t *first, const int32_t *second, const T *weights)                             \
    {                                                                                                   \
        const int64_t W = NAME##_W, tiles = (tokens + W - 1) / W;                                       \
        int failed = 0;                                                                                 \
        _Pragma("omp parallel num_threads(threads) reduction(|| : failed)")                             \
        {                                                                                               \
            NAME##_vec *u = aligned_alloc(VEC, sizeof(NAME##_vec) * (R) * M);                           \
            failed = !u;                                                                                \
            _Pragma("omp for schedule(static)")                                                         \
            for (int64_t job = 0; job < B * tiles; job++) {                                             \
                if (failed) continue;                                                                   \
                int64_t b = job / tiles, t0 = (job % tiles) * W;                                        \
                int64_t n = tokens - t0 < W ? tokens - t0 : W;                                          \
                const T *ab = A + OFF(a, b), *xb = x + OFF(x, b) + t0 * x_t;                            \
                for (int r = 0; r < (R); r++) u[r] = (NAME##_vec){0} + 1;                               \
                for (int64_t d = 0; d < D; d++)                                                         \
                    LOAD(NAME##_vec, T, R, NAME##_W, u + (1 + d) * (R), xb + d * x_d, x_t, n, x_scale); \
                for (int64_t m = 1 + D; m < M; m++)                                                     \
                    for (int r = 0; r < (R); r++)                                                       \
                        u[m * (R) + r] = u[(1 + first[m]) * (R) + r] * u[(1 + second[m]) * (R) + r];    \
                if (weights) /* after the products, which take the bare inputs */                       \
                    for (int64_t m = 0; m < M; m++)                                                     \
                        for (int r = 0; r < (R); r++) u[m * (R) + r] *= weights[m];                     \
                T *ob = out + OFF(o, b) + t0 * o_t;                                                     \
                int64_t c0 = 0;                                                                         \
                for (; C - c0 >= 8 || C - c0 == 4; c0 += 4)                                             \
                    NAME##_channels(4, M, c0, ab, a_c, a_m, u, ob, o_c, o_t, n);                           \
                switch (C - c0) { /* what is left: 1-3 or 5-7 channels, in blocks of at most 5 */       \
                case 7: NAME##_channels(4, M, c0, ab, a_c, a_m, u, ob, o_c, o_t, n); c0 += 4; /* fall through */ \
                case 3: NAME##_channels(3, M, c0, ab, a_c, a_m, u, ob, o_c, o_t, n); break;               \
                case 6: NAME##_channels(3, M, c0, ab, a_c, a_m, u, ob, o_c, o_t, n); c0 += 3;             \
                        NAME##_channels(3, M, c0, ab, a_c, a_m, u, ob, o_c, o_t, n); break;               \
                case 5: NAME##_channels(5, M, c0, ab, a_c, a_m, u, ob, o_c, o_t, n); break;               \
                case 2: NAME##_channels(2, M, c0, ab, a_c, a_m, u, ob, o_c, o_t, n); break;               \
                case 1: NAME##_channels(1, M, c0, ab, a_c, a_m, u, ob, o_c, o_t, n); break;               \
                default: break;                                                                         \
                }                                                                                       \
            }                                                                                           \
            free(u);                                                                                    \
        }                                                                                               \
        return failed;                                                                                  \
    }

READ(dllab_feature_read_f32, float, READ_VECTORS)
READ(dllab_feature_read_f64, double, READ_VECTORS)

/* The sum over tokens of outer products with the features: for g (B, C, T) and inputs x (B, D, T) scaled
 * by x_scale,
 *
 *     out[c, m] (+)= sum_t g[c, t] w_m u_m(x_t)       (w: the features' weights, or NULL for 1)
 *
 * the product G u(X)^T, that is a state sum_t u(x_t) g_t^T kept transposed (C, M), or its gradient,
 * without forming u (B, M, T). Features are laid along the vector lanes here (the sum runs over tokens):
 * each token's block of features is two lane permutations of [x, 1] and a product, which needs D to fit
 * one vector (D <= 16 float32 / 8 float64 with AVX-512); otherwise the block is gathered lane by lane.
 * The C running sums stay in registers over all tokens; jobs are (batch, block of features) pairs, or with
 * a scan (outer batch, block of features) pairs that run through the outer batch's chunks in order.
 */
#define ACCUMULATE(NAME, T, I)                                                                          \
    typedef T NAME##_vec __attribute__((vector_size(VEC)));                                             \
    typedef T NAME##_uvec __attribute__((vector_size(VEC), aligned(sizeof(T)), may_alias));           \
    typedef I NAME##_idx __attribute__((vector_size(VEC)));                                             \
    enum { NAME##_L = VEC / sizeof(T) };                                                                \
                                                                                                        \
    /* dst[c, i] = base[c, i] (if any) + acc[c] w for lanes i < count, channels c < K: called between   \
       runs of tokens, out of line (the callers pass a copy of their sums, which stay in registers) */   \
    static __attribute__((noinline)) void NAME##_emit(                                                  \
        int64_t K, int64_t count, const NAME##_vec *acc, NAME##_vec w, const T *base, int64_t b_c,     \
        int64_t b_m, T *dst, int64_t d_c, int64_t d_m)                                                 \
    {                                                                                                   \
        for (int64_t c = 0; c < K; c++) {                                                               \
            T buf[NAME##_L] __attribute__((aligned(VEC)));                                              \
            *(NAME##_vec *)buf = acc[c] * w;                                                            \
            for (int64_t i = 0; i < count; i++)                                                         \
                dst[c * d_c + i * d_m] = (base ? base[c * b_c + i * b_m] : 0) + buf[i];                 \
        }                                                                                               \
    }                                                                                                   \
                                                                                                        \
    /* channels c0 .. c0 + K - 1 (K <= 17: the running sums, a fixed array, stay in registers), over     \
       `segments` runs of tokens (s_g, s_x, s_o apart): scan 0 sums them into out (+ out when add);       \
       scan 1 / -1 writes before each segment, in order / in reverse, init plus the sum so far into that  \
       segment's out (an exclusive prefix / suffix sum), and init plus the whole sum into last */        \
    static inline __attribute__((always_inline)) void NAME##_job(                                      \
        int64_t K, int64_t tokens, int64_t D, int64_t count, const T *g, int64_t g_c, int64_t g_t,     \
        const T *x, int64_t x_d, int64_t x_t, NAME##_idx ia, NAME##_idx ib, NAME##_vec w,              \
        const int64_t *fa, const int64_t *fb, T *out, int64_t o_c, int64_t o_m, int add,               \
        int64_t segments, int64_t s_g, int64_t s_x, int64_t s_o, int scan,                             \
        const T *init, int64_t i_c, int64_t i_m, T *last, int64_t l_c, int64_t l_m)                     \
    {                                                                                                   \
        NAME##_vec acc[17], ones = (NAME##_vec){0} + 1;                                                 \
        _Pragma("GCC unroll 17") /* every loop over acc: one left rolled indexes acc in memory */     \
        for (int64_t c = 0; c < 17; c++) acc[c] = (NAME##_vec){0};                                      \
        const int whole = D == NAME##_L && x_d == 1, fits = D < NAME##_L && x_d == 1;                   \
        for (int64_t step = 0; step < segments; step++) {                                               \
            const int64_t seg = scan < 0 ? segments - 1 - step : step;                                  \
            if (scan) {                                                                                 \
                NAME##_vec copy[17];                                                                    \
                _Pragma("GCC unroll 17")                                                                \
                for (int64_t c = 0; c < 17; c++) copy[c] = acc[c];                                      \
                NAME##_emit(K, count, copy, w, init, i_c, i_m, out + seg * s_o, o_c, o_m);              \
            }                                                                                           \
            const T *gs = g + seg * s_g, *xs = x + seg * s_x;                                           \
            for (int64_t t = 0; t < tokens; t++) {                                                      \
                const T *xt = xs + t * x_t;                                                             \
                NAME##_vec u, xv;                                                                       \
                if (whole || fits) {                                                                    \
                    if (whole) {                                                                        \
                        xv = *(const NAME##_uvec *)xt;                                                  \
                    } else {                                                                            \
                        T buf[NAME##_L] __attribute__((aligned(VEC))) = {0};                            \
                        memcpy(buf, xt, D * sizeof(T));                                                 \
                        xv = *(const NAME##_vec *)buf;                                                  \
                    }                                                                                   \
                    u = __builtin_shuffle(xv, ones, ia) * __builtin_shuffle(xv, ones, ib);              \
                } else {                                                                                \
                    T buf[NAME##_L] __attribute__((aligned(VEC))) = {0};                                \
                    for (int64_t i = 0; i < count; i++)                                                 \
                        buf[i] = (fa[i] < 0 ? 1 : xt[fa[i] * x_d]) * (fb[i] < 0 ? 1 : xt[fb[i] * x_d]); \
                    u = *(const NAME##_vec *)buf;                                                       \
                }                                                                                       \
                const T *gt = gs + t * g_t;                                                             \
                _Pragma("GCC unroll 17")                                                                \
                for (int64_t c = 0; c < K; c++) acc[c] += u * gt[c * g_c];                              \
            }                                                                                           \
        }                                                                                               \
        NAME##_vec copy[17];                                                                            \
        _Pragma("GCC unroll 17")                                                                        \
        for (int64_t c = 0; c < 17; c++) copy[c] = acc[c];                                              \
        if (scan)                                                                                       \
            NAME##_emit(K, count, copy, w, init, i_c, i_m, last, l_c, l_m);                             \
        else                                                                                            \
            NAME##_emit(K, count, copy, w, add ? out : NULL, o_c, o_m, out, o_c, o_m);                  \
    }                                                                                                   \
                                                                                                        \
    int NAME(int64_t threads, int64_t B, int64_t inner, int64_t tokens, int64_t C, int64_t D,           \
             int64_t M, const T *g, int64_t g_b1, int64_t g_b2, int64_t g_c, int64_t g_t,               \
             const T *x, int64_t x_b1, int64_t x_b2, int64_t x_d, int64_t x_t, T x_scale,               \
             T *out, int64_t o_b1, int64_t o_b2, int64_t o_c, int64_t o_m, int add,                     \
             const int32_t *first, const int32_t *second, const T *weights, int scan,                   \
             const T *init, int64_t i_b, int64_t i_c, int64_t i_m, T *last, int64_t l_b, int64_t l_c,   \
             int64_t l_m)                                                                               \
    {                                                                                                   \
        const int64_t L = NAME##_L, blocks = (M + L - 1) / L;                                           \
        /* a scan runs through the inner batches (chunks) of each outer one in order: one job each */    \
        const int64_t jobs = scan ? B / inner : B, segments = scan ? inner : 1;                         \
        int failed = 0;                                                                                 \
        /* per feature: its two factors as indices into x (-1: the constant 1), and its scale: the      \
           weight times x_scale to its degree (the products take the raw inputs) */                    \
        int64_t *fa = malloc(sizeof(int64_t) * blocks * L * 2), *fb = fa ? fa + blocks * L : NULL;     \
        T *scale = malloc(sizeof(T) * blocks * L);                                                      \
        if (!fa || !scale) {                                                                            \
            free(fa);                                                                                   \
            free(scale);                                                                                \
            return 1;                                                                                   \
        }                                                                                               \
        for (int64_t m = 0; m < blocks * L; m++) {                                                      \
            int64_t a = -1, b = -1;                                                                     \
            if (m >= 1 && m <= D) a = m - 1;                                                            \
            else if (m > D && m < M) a = first[m], b = second[m];                                       \
            fa[m] = a, fb[m] = b;                                                                       \
            scale[m] = m < M ? (weights ? weights[m] : 1) * (a < 0 ? 1 : x_scale) * (b < 0 ? 1 : x_scale) : 0; \
        }                                                                                               \
        _Pragma("omp parallel for num_threads(threads) schedule(static)")                               \
        for (int64_t job = 0; job < jobs * blocks; job++) {                                             \
            int64_t b = job / blocks, m0 = (job % blocks) * L, count = M - m0 < L ? M - m0 : L;         \
            NAME##_idx ia, ib;                                                                          \
            NAME##_vec w;                                                                               \
            for (int64_t i = 0; i < L; i++) {                                                           \
                ia[i] = fa[m0 + i] < 0 ? L : fa[m0 + i];                                                \
                ib[i] = fb[m0 + i] < 0 ? L : fb[m0 + i];                                                \
            }                                                                                           \
            w = *(const NAME##_uvec *)(scale + m0);                                                     \
            if (scan) b *= inner; /* the first chunk of outer batch b */                                \
            const T *gb = g + OFF(g, b), *xb = x + OFF(x, b);                                           \
            T *ob = out + OFF(o, b) + m0 * o_m;                                                         \
            const T *ib_ = scan ? init + b / inner * i_b + m0 * i_m : NULL;                             \
            T *lb = scan ? last + b / inner * l_b + m0 * l_m : NULL;                                    \
            for (int64_t c0 = 0; c0 < C; c0 += 17) {                                                    \
                const T *gc = gb + c0 * g_c, *ic = ib_ ? ib_ + c0 * i_c : NULL;                         \
                T *oc = ob + c0 * o_c, *lc = lb ? lb + c0 * l_c : NULL;                                 \
                int64_t K = C - c0 < 17 ? C - c0 : 17;                                                  \
                if (K == 17)                                                                            \
                    NAME##_job(17, tokens, D, count, gc, g_c, g_t, xb, x_d, x_t, ia, ib, w, fa + m0,    \
                               fb + m0, oc, o_c, o_m, add, segments, g_b2, x_b2, o_b2, scan, ic, i_c,   \
                               i_m, lc, l_c, l_m);                                                      \
                else if (K == 16)                                                                       \
                    NAME##_job(16, tokens, D, count, gc, g_c, g_t, xb, x_d, x_t, ia, ib, w, fa + m0,    \
                               fb + m0, oc, o_c, o_m, add, segments, g_b2, x_b2, o_b2, scan, ic, i_c,   \
                               i_m, lc, l_c, l_m);                                                      \
                else                                                                                    \
                    NAME##_job(K, tokens, D, count, gc, g_c, g_t, xb, x_d, x_t, ia, ib, w, fa + m0,     \
                               fb + m0, oc, o_c, o_m, add, segments, g_b2, x_b2, o_b2, scan, ic, i_c,   \
                               i_m, lc, l_c, l_m);                                                      \
            }                                                                                           \
        }                                                                                               \
        free(fa);                                                                                       \
        free(scale);                                                                                    \
        return failed;                                                                                  \
    }

ACCUMULATE(dllab_feature_sum_f32, float, int32_t)
ACCUMULATE(dllab_feature_sum_f64, double, int64_t)

/* The causal kernel's part inside each chunk of C tokens, for a batch of chunks (B = B1 x inner, the inputs
 * read in place from (B1, L, D) sequences), with the scores s(t, j) = scale q_t . k_j of the raw inputs and
 * the masked truncated series W(t, j) = [j <= t] sum_{n<K} s^n / n!:
 *
 *   forward:  out[c, t]    += sum_{j <= t} W(t, j) v1[j, c]                                    (c < V)
 *   backward: G(t, j)       = [j <= t] series'(s(t, j)) sum_c g[c, t] v1[j, c]
 *             grad_q[d, t] += scale sum_{j <= t} G(t, j) k_j[d]
 *             grad_k[d, j] += scale sum_{t >= j} G(t, j) q_t[d]
 *             grad_v[c, j] += sum_{t >= j} W(t, j) g[c, t]                                     (c < V - 1)
 *
 * v1 (B, C, V): the values with the normaliser's column; g (B, V, C): the gradient of out. Queries lie along
 * the vector lanes for out and grad_q, keys for grad_k and grad_v, so no sum runs across lanes; tiles wholly
 * above the diagonal are skipped. Returns 2 when D > 32, V > 33 or K outside 1..16 (the caller checks).
 */
/* One chunk. Each pass is its own loop with its own running sums (an array of at most 17 vectors for the usual
   head, which stays in registers); UNIT: the inner strides of q, k and v1 are 1 (the layout the kernels pass),
   compile-time constants with DC, VC, KC (0: the arguments). A generic instance serves other heads. */
#define CAUSAL_CHUNK(FN, NAME, T, I, DMAX, VMAX, DC, VC, KC, UNIT, U)                                   \
    static void FN(                                                                                     \
        int64_t D_, int64_t V_, int64_t C, int K_, T scale2, int backward,                              \
        const T *q, int64_t q_t, int64_t q_d_, const T *k, int64_t k_t, int64_t k_d_,                  \
        const T *v1, int64_t v_t, int64_t v_c_, const T *g, int64_t g_c, int64_t g_t,                  \
        T *out, int64_t o_c, int64_t o_t, T *gq, int64_t gq_d, int64_t gq_t,                           \
        T *gk, int64_t gk_d, int64_t gk_t, T *gv, int64_t gv_c, int64_t gv_t, T *scratch)               \
    {                                                                                                   \
        const int64_t D = (DC) ? (DC) : D_, V = (VC) ? (VC) : V_;                                       \
        const int64_t q_d = (UNIT) ? 1 : q_d_, k_d = (UNIT) ? 1 : k_d_, v_c = (UNIT) ? 1 : v_c_;        \
        const int K = (KC) ? (KC) : K_;                                                                 \
        const int64_t L = NAME##_L, tiles = (C + L - 1) / L, P = tiles * L;                             \
        T coef[16];                                                                                     \
        coef[0] = 1;                                                                                    \
        for (int n = 1; n < K && n < 16; n++) coef[n] = coef[n - 1] / n;                                \
        /* the chunk transposed, lane-ready: qT[d][t], kT[d][j], gT[c][t], vT[c][j] (the forward: qT) */\
        T *qT = scratch, *kT = qT + 32 * P, *gT = kT + 32 * P, *vT = gT + 33 * P;                       \
        NAME##_idx lane;                                                                                \
        for (int64_t i = 0; i < L; i++) lane[i] = i;                                                    \
        for (int64_t t = 0; t < P; t++) {                                                               \
            for (int64_t d = 0; d < D; d++) qT[d * P + t] = t < C ? q[t * q_t + d * q_d] : 0;           \
            if (!backward) continue;                                                                    \
            for (int64_t d = 0; d < D; d++) kT[d * P + t] = t < C ? k[t * k_t + d * k_d] : 0;           \
            for (int64_t c = 0; c < V; c++) {                                                           \
                vT[c * P + t] = t < C ? v1[t * v_t + c * v_c] : 0;                                      \
                gT[c * P + t] = t < C ? g[c * g_c + t * g_t] : 0;                                       \
            }                                                                                           \
        }                                                                                               \
        T buf[NAME##_L] __attribute__((aligned(VEC)));                                                  \
        if (!backward) { /* out[c, t] += sum_{j <= t} W(t, j) v1[j, c] */                              \
            for (int64_t t0 = 0; t0 < C; t0 += L) {                                                     \
                NAME##_vec acc[VMAX];                                                                   \
                UNROLL(U)                                                                \
                for (int64_t c = 0; c < VMAX; c++) acc[c] = (NAME##_vec){0};                            \
                for (int64_t j = 0; j < t0 + L && j < C; j++) {                                         \
                    const T *kj = k + j * k_t, *vj = v1 + j * v_t;                                      \
                    NAME##_vec s0 = (NAME##_vec){0}, s1 = (NAME##_vec){0}, slope;                       \
                    UNROLL(U)                                                            \
                    for (int64_t d = 0; d + 1 < D; d += 2) {                                            \
                        s0 += *(NAME##_vec *)(qT + d * P + t0) * kj[d * k_d];                           \
                        s1 += *(NAME##_vec *)(qT + (d + 1) * P + t0) * kj[(d + 1) * k_d];               \
                    }                                                                                   \
                    if (D % 2) s0 += *(NAME##_vec *)(qT + (D - 1) * P + t0) * kj[(D - 1) * k_d];        \
                    NAME##_vec w = NAME##_series(K, coef, (s0 + s1) * scale2, &slope);                  \
                    if (j > t0) w = (NAME##_vec)((NAME##_idx)w & ((lane + (I)t0) >= (I)j));             \
                    UNROLL(U)                                                            \
                    for (int64_t c = 0; c < V; c++) acc[c] += w * vj[c * v_c];                          \
                }                                                                                       \
                const int64_t n = C - t0 < L ? C - t0 : L;                                              \
                for (int64_t c = 0; c < V; c++) {                                                       \
                    *(NAME##_vec *)buf = acc[c];                                                        \
                    for (int64_t t = 0; t < n; t++) out[c * o_c + (t0 + t) * o_t] += buf[t];            \
                }                                                                                       \
            }                                                                                           \
            return;                                                                                     \
        }                                                                                               \
        /* grad_q[d, t] += scale sum_{j <= t} G(t, j) k_j[d]: queries along the lanes */                \
        for (int64_t t0 = 0; t0 < C; t0 += L) {                                                         \
            NAME##_vec acc[DMAX];                                                                       \
            UNROLL(U)                                                                    \
            for (int64_t d = 0; d < DMAX; d++) acc[d] = (NAME##_vec){0};                                \
            for (int64_t j = 0; j < t0 + L && j < C; j++) {                                             \
                const T *kj = k + j * k_t, *vj = v1 + j * v_t;                                          \
                NAME##_vec s0 = (NAME##_vec){0}, s1 = (NAME##_vec){0}, g0 = (NAME##_vec){0}, g1 = g0, slope; \
                UNROLL(U)                                                                \
                for (int64_t d = 0; d + 1 < D; d += 2) {                                                \
                    s0 += *(NAME##_vec *)(qT + d * P + t0) * kj[d * k_d];                               \
                    s1 += *(NAME##_vec *)(qT + (d + 1) * P + t0) * kj[(d + 1) * k_d];                   \
                }                                                                                       \
                if (D % 2) s0 += *(NAME##_vec *)(qT + (D - 1) * P + t0) * kj[(D - 1) * k_d];            \
                NAME##_series(K, coef, (s0 + s1) * scale2, &slope);                                     \
                if (j > t0) slope = (NAME##_vec)((NAME##_idx)slope & ((lane + (I)t0) >= (I)j));         \
                UNROLL(U)                                                                \
                for (int64_t c = 0; c + 1 < V; c += 2) {                                                \
                    g0 += *(NAME##_vec *)(gT + c * P + t0) * vj[c * v_c];                               \
                    g1 += *(NAME##_vec *)(gT + (c + 1) * P + t0) * vj[(c + 1) * v_c];                   \
                }                                                                                       \
                if (V % 2) g0 += *(NAME##_vec *)(gT + (V - 1) * P + t0) * vj[(V - 1) * v_c];            \
                NAME##_vec gs = (g0 + g1) * slope * scale2;                                             \
                UNROLL(U)                                                                \
                for (int64_t d = 0; d < D; d++) acc[d] += gs * kj[d * k_d];                             \
            }                                                                                           \
            const int64_t n = C - t0 < L ? C - t0 : L;                                                  \
            for (int64_t d = 0; d < D; d++) {                                                           \
                *(NAME##_vec *)buf = acc[d];                                                            \
                for (int64_t t = 0; t < n; t++) gq[d * gq_d + (t0 + t) * gq_t] += buf[t];               \
            }                                                                                           \
        }                                                                                               \
        /* grad_v[c, j] += sum_{t >= j} W(t, j) g[c, t]: keys along the lanes */                        \
        for (int64_t j0 = 0; j0 < C; j0 += L) {                                                         \
            NAME##_vec acc[VMAX];                                                                       \
            UNROLL(U)                                                                    \
            for (int64_t c = 0; c < VMAX; c++) acc[c] = (NAME##_vec){0};                                \
            for (int64_t t = j0; t < C; t++) {                                                          \
                const T *qt_ = q + t * q_t;                                                             \
                NAME##_vec s0 = (NAME##_vec){0}, s1 = (NAME##_vec){0}, slope;                           \
                UNROLL(U)                                                                \
                for (int64_t d = 0; d + 1 < D; d += 2) {                                                \
                    s0 += *(NAME##_vec *)(kT + d * P + j0) * qt_[d * q_d];                              \
                    s1 += *(NAME##_vec *)(kT + (d + 1) * P + j0) * qt_[(d + 1) * q_d];                  \
                }                                                                                       \
                if (D % 2) s0 += *(NAME##_vec *)(kT + (D - 1) * P + j0) * qt_[(D - 1) * q_d];           \
                NAME##_vec w = NAME##_series(K, coef, (s0 + s1) * scale2, &slope);                      \
                if (t < j0 + L - 1) w = (NAME##_vec)((NAME##_idx)w & ((lane + (I)j0) <= (I)t));         \
                UNROLL(U)                                                                \
                for (int64_t c = 0; c + 1 < V; c++) acc[c] += w * gT[c * P + t];                        \
            }                                                                                           \
            const int64_t n = C - j0 < L ? C - j0 : L;                                                  \
            for (int64_t c = 0; c + 1 < V; c++) {                                                       \
                *(NAME##_vec *)buf = acc[c];                                                            \
                for (int64_t j = 0; j < n; j++) gv[c * gv_c + (j0 + j) * gv_t] += buf[j];              \
            }                                                                                           \
        }                                                                                               \
        /* grad_k[d, j] += scale sum_{t >= j} G(t, j) q_t[d]: keys along the lanes */                   \
        for (int64_t j0 = 0; j0 < C; j0 += L) {                                                         \
            NAME##_vec acc[DMAX];                                                                       \
            UNROLL(U)                                                                    \
            for (int64_t d = 0; d < DMAX; d++) acc[d] = (NAME##_vec){0};                                \
            for (int64_t t = j0; t < C; t++) {                                                          \
                const T *qt_ = q + t * q_t;                                                             \
                NAME##_vec s0 = (NAME##_vec){0}, s1 = (NAME##_vec){0}, g0 = (NAME##_vec){0}, g1 = g0, slope; \
                UNROLL(U)                                                                \
                for (int64_t d = 0; d + 1 < D; d += 2) {                                                \
                    s0 += *(NAME##_vec *)(kT + d * P + j0) * qt_[d * q_d];                              \
                    s1 += *(NAME##_vec *)(kT + (d + 1) * P + j0) * qt_[(d + 1) * q_d];                  \
                }                                                                                       \
                if (D % 2) s0 += *(NAME##_vec *)(kT + (D - 1) * P + j0) * qt_[(D - 1) * q_d];           \
                NAME##_series(K, coef, (s0 + s1) * scale2, &slope);                                     \
                if (t < j0 + L - 1) slope = (NAME##_vec)((NAME##_idx)slope & ((lane + (I)j0) <= (I)t)); \
                UNROLL(U)                                                                \
                for (int64_t c = 0; c + 1 < V; c += 2) {                                                \
                    g0 += *(NAME##_vec *)(vT + c * P + j0) * gT[c * P + t];                             \
                    g1 += *(NAME##_vec *)(vT + (c + 1) * P + j0) * gT[(c + 1) * P + t];                 \
                }                                                                                       \
                if (V % 2) g0 += *(NAME##_vec *)(vT + (V - 1) * P + j0) * gT[(V - 1) * P + t];          \
                NAME##_vec gs = (g0 + g1) * slope * scale2;                                             \
                UNROLL(U)                                                                \
                for (int64_t d = 0; d < D; d++) acc[d] += gs * qt_[d * q_d];                            \
            }                                                                                           \
            const int64_t n = C - j0 < L ? C - j0 : L;                                                  \
            for (int64_t d = 0; d < D; d++) {                                                           \
                *(NAME##_vec *)buf = acc[d];                                                            \
                for (int64_t j = 0; j < n; j++) gk[d * gk_d + (j0 + j) * gk_t] += buf[j];               \
            }                                                                                           \
        }                                                                                               \
    }

#define CAUSAL(NAME, T, I)                                                                              \
    typedef T NAME##_vec __attribute__((vector_size(VEC)));                                             \
    typedef I NAME##_idx __attribute__((vector_size(VEC)));                                             \
    enum { NAME##_L = VEC / sizeof(T) };                                                                \
                                                                                                        \
    /* the truncated series sum_{n<K} s^n / n! (coef[n] = 1 / n!) and its slope, by Horner */          \
    static inline __attribute__((always_inline)) NAME##_vec NAME##_series(                             \
        int K, const T *coef, NAME##_vec s, NAME##_vec *slope)                                         \
    {                                                                                                   \
        NAME##_vec w = (NAME##_vec){0} + coef[K - 1], d = (NAME##_vec){0};                              \
        for (int n = K - 2; n >= 0; n--) {                                                              \
            d = d * s + w;                                                                              \
            w = w * s + coef[n];                                                                        \
        }                                                                                               \
        *slope = d;                                                                                     \
        return w;                                                                                       \
    }                                                                                                   \
                                                                                                        \
    CAUSAL_CHUNK(NAME##_chunk_head, NAME, T, I, 16, 17, 16, 17, 3, 1, 33)                               \
    CAUSAL_CHUNK(NAME##_chunk_any, NAME, T, I, 32, 33, 0, 0, 0, 0, 1)                                   \
                                                                                                        \
    int NAME(int64_t threads, int64_t B, int64_t inner, int64_t C, int64_t D, int64_t V, int K,         \
             T scale2, int backward,                                                                    \
             const T *q, int64_t q_b1, int64_t q_b2, int64_t q_t, int64_t q_d,                         \
             const T *k, int64_t k_b1, int64_t k_b2, int64_t k_t, int64_t k_d,                         \
             const T *v1, int64_t v_b1, int64_t v_b2, int64_t v_t, int64_t v_c,                        \
             const T *g, int64_t g_b1, int64_t g_b2, int64_t g_c, int64_t g_t,                          \
             T *out, int64_t o_b1, int64_t o_b2, int64_t o_c, int64_t o_t,                              \
             T *gq, int64_t gq_b1, int64_t gq_b2, int64_t gq_d, int64_t gq_t,                           \
             T *gk, int64_t gk_b1, int64_t gk_b2, int64_t gk_d, int64_t gk_t,                           \
             T *gv, int64_t gv_b1, int64_t gv_b2, int64_t gv_c, int64_t gv_t)                           \
    {                                                                                                   \
        if (D > 32 || V > 33 || K < 1 || K > 16) return 2;                                              \
        const int64_t P = (C + NAME##_L - 1) / NAME##_L * NAME##_L;                                     \
        int failed = 0;                                                                                 \
        _Pragma("omp parallel num_threads(threads) reduction(|| : failed)")                             \
        {                                                                                               \
            T *scratch = aligned_alloc(VEC, sizeof(T) * (32 + 32 + 33 + 33) * P);                       \
            failed = !scratch;                                                                          \
            _Pragma("omp for schedule(static)")                                                         \
            for (int64_t b = 0; b < B; b++) {                                                           \
                if (failed) continue;                                                                   \
                const T *qb = q + OFF(q, b), *kb = k + OFF(k, b), *vb = v1 + OFF(v, b);                 \
                const T *gb = backward ? g + OFF(g, b) : NULL;                                          \
                T *ob = backward ? NULL : out + OFF(o, b);                                              \
                T *gqb = backward ? gq + OFF(gq, b) : NULL, *gkb = backward ? gk + OFF(gk, b) : NULL;   \
                T *gvb = backward ? gv + OFF(gv, b) : NULL;                                             \
                if (D == 16 && V == 17 && K == 3 && q_d == 1 && k_d == 1 && v_c == 1) /* usual head */  \
                    NAME##_chunk_head(16, 17, C, 3, scale2, backward, qb, q_t, q_d, kb, k_t, k_d, vb,   \
                                      v_t, v_c, gb, g_c, g_t, ob, o_c, o_t, gqb, gq_d, gq_t, gkb, gk_d, \
                                      gk_t, gvb, gv_c, gv_t, scratch);                                  \
                else                                                                                    \
                    NAME##_chunk_any(D, V, C, K, scale2, backward, qb, q_t, q_d, kb, k_t, k_d, vb, v_t, \
                                     v_c, gb, g_c, g_t, ob, o_c, o_t, gqb, gq_d, gq_t, gkb, gk_d, gk_t, \
                                     gvb, gv_c, gv_t, scratch);                                         \
            }                                                                                           \
            free(scratch);                                                                              \
        }                                                                                               \
        return failed;                                                                                  \
    }

CAUSAL(dllab_causal_chunks_f32, float, int32_t)
CAUSAL(dllab_causal_chunks_f64, double, int64_t)
