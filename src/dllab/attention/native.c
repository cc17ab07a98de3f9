/* dllab's compiled attention kernel: the input gradient of the Taylor (K <= 3) features, fused.
 *
 * Built by dllab.attention.native with the system's C compiler (-O3 -march=native -fopenmp) and called
 * through ctypes; dllab.attention.chunk.QuadraticGradient holds the PyTorch twin it is tested against.
 *
 * For a state S (B, M, C), an output-side gradient g (B, C, T) and the scaled inputs x (B, D, T) (the
 * degree-1 rows of the features), every token t of batch b gets
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
 * aligned vectors first, so strided inputs (a transposed view) cost a few loads per token. Returns 0, or 1
 * when a thread could not allocate its buffers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KERNEL(NAME, T, W)                                                                              \
    typedef T NAME##_vec __attribute__((vector_size((W) * sizeof(T))));                               \
                                                                                                        \
    static inline __attribute__((always_inline)) void NAME##_tile(                                     \
        int64_t C, int64_t D, const T *packed, const int64_t *start, const int32_t *tj,                \
        const T *g, int64_t g_c, int64_t g_t, const T *x, int64_t x_d, int64_t x_t,                    \
        T *out, int64_t o_d, int64_t o_t, int64_t n, NAME##_vec *gv, NAME##_vec *xv, NAME##_vec *acc)   \
    {                                                                                                   \
        T buf[W] __attribute__((aligned(64)));                                                          \
        for (int64_t c = 0; c < C; c++) {                                                               \
            memset(buf, 0, sizeof buf);                                                                 \
            for (int64_t t = 0; t < n; t++) buf[t] = g[c * g_c + t * g_t];                              \
            memcpy(&gv[c], buf, sizeof buf);                                                            \
        }                                                                                               \
        for (int64_t d = 0; d < D; d++) {                                                               \
            memset(buf, 0, sizeof buf);                                                                 \
            for (int64_t t = 0; t < n; t++) buf[t] = x[d * x_d + t * x_t];                              \
            memcpy(&xv[d], buf, sizeof buf);                                                            \
            acc[d] = (NAME##_vec){0};                                                                   \
        }                                                                                               \
        for (int64_t i = 0; i < D; i++) {                                                               \
            NAME##_vec own = {0};                                                                       \
            for (int64_t p = start[i]; p < start[i + 1]; p++) {                                         \
                const T *s = packed + p * C;                                                            \
                NAME##_vec h = gv[0] * s[0];                                                            \
                for (int64_t c = 1; c < C; c++) h += gv[c] * s[c];                                      \
                int32_t j = tj[p];                                                                      \
                if (j < 0) {                                                                            \
                    own += h;                                                                           \
                } else {                                                                                \
                    own += h * xv[j];                                                                   \
                    if (j != i) acc[j] += h * xv[i];                                                    \
                }                                                                                       \
            }                                                                                           \
            acc[i] += own;                                                                              \
        }                                                                                               \
        for (int64_t d = 0; d < D; d++) {                                                               \
            memcpy(buf, &acc[d], sizeof buf);                                                           \
            for (int64_t t = 0; t < n; t++) out[d * o_d + t * o_t] = buf[t];                            \
        }                                                                                               \
    }                                                                                                   \
                                                                                                        \
    int NAME(int64_t threads, int64_t B, int64_t tokens, int64_t C, int64_t D,                          \
             const T *S, int64_t s_b, int64_t s_m, int64_t s_c,                                         \
             const T *g, int64_t g_b, int64_t g_c, int64_t g_t,                                         \
             const T *x, int64_t x_b, int64_t x_d, int64_t x_t,                                         \
             T *out, int64_t o_b, int64_t o_d, int64_t o_t,                                             \
             const int64_t *start, const int64_t *rows, const int32_t *tj, const T *factors)            \
    {                                                                                                   \
        int64_t tiles = (tokens + W - 1) / W, terms = start[D];                                         \
        int failed = 0;                                                                                 \
        _Pragma("omp parallel num_threads(threads) reduction(|| : failed)")                             \
        {                                                                                               \
            T *packed = malloc(sizeof(T) * (terms * C + 1));                                            \
            NAME##_vec *vecs = aligned_alloc(sizeof(NAME##_vec), sizeof(NAME##_vec) * (C + 2 * D));     \
            int64_t current = -1;                                                                       \
            failed = !packed || !vecs;                                                                  \
            _Pragma("omp for schedule(static)")                                                         \
            for (int64_t job = 0; job < B * tiles; job++) {                                             \
                if (failed) continue;                                                                   \
                int64_t b = job / tiles, t0 = (job % tiles) * W;                                        \
                int64_t n = tokens - t0 < W ? tokens - t0 : W;                                          \
                if (b != current) { /* this batch's state rows, times the terms' factors */             \
                    for (int64_t p = 0; p < terms; p++)                                                 \
                        for (int64_t c = 0; c < C; c++)                                                 \
                            packed[p * C + c] = factors[p] * S[b * s_b + rows[p] * s_m + c * s_c];      \
                    current = b;                                                                        \
                }                                                                                       \
                const T *gb = g + b * g_b + t0 * g_t, *xb = x + b * x_b + t0 * x_t;                     \
                T *ob = out + b * o_b + t0 * o_t;                                                       \
                if (C == 17) /* Dv = 16 plus the normaliser: a constant the compiler unrolls */         \
                    NAME##_tile(17, D, packed, start, tj, gb, g_c, g_t, xb, x_d, x_t, ob, o_d, o_t, n,  \
                                vecs, vecs + 17, vecs + 17 + D);                                        \
                else                                                                                    \
                    NAME##_tile(C, D, packed, start, tj, gb, g_c, g_t, xb, x_d, x_t, ob, o_d, o_t, n,   \
                                vecs, vecs + C, vecs + C + D);                                          \
            }                                                                                           \
            free(packed);                                                                               \
            free(vecs);                                                                                 \
        }                                                                                               \
        return failed;                                                                                  \
    }

/* Tiles of 64 float32 / 32 float64 tokens: four AVX-512 vectors per row, four independent sums per term. */
KERNEL(dllab_quadratic_gradient_f32, float, 64)
KERNEL(dllab_quadratic_gradient_f64, double, 32)
