/* dllab's compiled attention kernels for Taylor features with K <= 3: the input gradient, and the read
 * through the features (below), each fused.
 *
 * Built by dllab.attention.native with the system's C compiler (-O3 -march=native -fopenmp) and called
 * through ctypes; dllab.attention.chunk.QuadraticGradient holds the PyTorch twin it is tested against.
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
#ifndef QUADRATIC_VECTORS /* vectors per tile row of each kernel (-D to experiment) */
#define QUADRATIC_VECTORS 4
#endif
#ifndef READ_VECTORS
#define READ_VECTORS 1
#endif

/* Gather n <= W values src[t * stride] into R vectors (zero beyond n), times scale. */
#define LOAD(VT, T, R, W, dst, src, stride, n, scale)                                                  \
    do {                                                                                                \
        T buf_[W] __attribute__((aligned(VEC))) = {0};                                                  \
        for (int64_t t_ = 0; t_ < (n); t_++) buf_[t_] = (src)[t_ * (stride)];                           \
        for (int r_ = 0; r_ < (R); r_++) {                                                              \
            memcpy(&(dst)[r_], buf_ + r_ * (VEC / sizeof(T)), VEC);                                     \
            (dst)[r_] *= (scale);                                                                       \
        }                                                                                               \
    } while (0)

/* Scatter the first n of R vectors to dst[t * stride]. */
#define STORE(T, R, W, dst, stride, src, n)                                                             \
    do {                                                                                                \
        T buf_[W] __attribute__((aligned(VEC)));                                                        \
        for (int r_ = 0; r_ < (R); r_++) memcpy(buf_ + r_ * (VEC / sizeof(T)), &(src)[r_], VEC);        \
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
        for (int64_t d = 0; d < D; d++) STORE(T, R, NAME##_W, out + d * o_d, o_t, acc + d * (R), n);    \
    }                                                                                                   \
                                                                                                        \
    int NAME(int64_t threads, int64_t B, int64_t tokens, int64_t C, int64_t D,                          \
             const T *S, int64_t s_b, int64_t s_m, int64_t s_c,                                         \
             const T *g, int64_t g_b, int64_t g_c, int64_t g_t,                                         \
             const T *x, int64_t x_b, int64_t x_d, int64_t x_t, T x_scale,                              \
             T *out, int64_t o_b, int64_t o_d, int64_t o_t,                                             \
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
                const T *sb = S + b * s_b, *gb = g + b * g_b + t0 * g_t, *xb = x + b * x_b + t0 * x_t;                     \
                T *ob = out + b * o_b + t0 * o_t;                                                       \
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
        for (int k = 0; k < K; k++) STORE(T, R, NAME##_W, out + (c0 + k) * o_c, o_t, acc[k], n);        \
    }                                                                                                   \
                                                                                                        \
    int NAME(int64_t threads, int64_t B, int64_t tokens, int64_t C, int64_t D, int64_t M,              \
             const T *A, int64_t a_b, int64_t a_c, int64_t a_m,                                        \
             const T *x, int64_t x_b, int64_t x_d, int64_t x_t, T x_scale,                              \
             T *out, int64_t o_b, int64_t o_c, int64_t o_t,                                             \
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
                const T *ab = A + b * a_b, *xb = x + b * x_b + t0 * x_t;                                \
                for (int r = 0; r < (R); r++) u[r] = (NAME##_vec){0} + 1;                               \
                for (int64_t d = 0; d < D; d++)                                                         \
                    LOAD(NAME##_vec, T, R, NAME##_W, u + (1 + d) * (R), xb + d * x_d, x_t, n, x_scale); \
                for (int64_t m = 1 + D; m < M; m++)                                                     \
                    for (int r = 0; r < (R); r++)                                                       \
                        u[m * (R) + r] = u[(1 + first[m]) * (R) + r] * u[(1 + second[m]) * (R) + r];    \
                if (weights) /* after the products, which take the bare inputs */                       \
                    for (int64_t m = 0; m < M; m++)                                                     \
                        for (int r = 0; r < (R); r++) u[m * (R) + r] *= weights[m];                     \
                T *ob = out + b * o_b + t0 * o_t;                                                       \
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
