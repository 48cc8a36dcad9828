/* Fused scaled-dot-product attention: out = softmax(scale Q K^T + mask) V.
 *
 * Design
 *
 * Tiling and online softmax. Each task owns block_q consecutive query rows of
 * one (batch, head) and walks the keys in blocks of block_k. Per key block it
 * computes the raw scores S = Q K^T with one GEMM, then per row (row kernels
 * in attention_rows.h) scales, adds the mask, applies the causal limit, and
 * updates the running maximum m and sum l. The accumulator row is multiplied
 * by alpha = exp(m_old - m_new) and a second GEMM adds P V. The output is
 * divided by l once at the end. Key blocks wholly past the causal limit of
 * the task's last row are never visited. The score matrix never exists: the
 * scratch per thread is a few block_q x block_k and block x head_dim buffers,
 * allocated once per thread per call.
 *
 * Excluded keys. A key excluded by the causal limit, a False boolean mask
 * entry or a -inf floating mask entry gets the score -inf whatever q . k
 * is, so NaN in its k row cannot reach the maximum or the sum. Its
 * probability is then exactly 0, but 0 * NaN is NaN. A v row that contains
 * inf or NaN is therefore zeroed in a copy before the P V GEMM, and its
 * contribution is added back only for the rows whose score is above -inf.
 *
 * BLAS. The GEMMs go through SciPy's BLAS, whose Fortran routines
 * scipy.linalg.cython_blas exports as PyCapsules. NumPy does not export its
 * BLAS to C, and linking a BLAS at build time would add a build dependency
 * and a second copy of OpenBLAS; SciPy is a run-time dependency only.
 *
 * BLAS threads. OpenBLAS runs a GEMM on one thread when M N K <= 65536 * 4
 * (interface/gemm.c) and a GEMV, which SciPy's OpenBLAS 0.3.30 also used for
 * a GEMM with N = 1 here, when M N < 2304 * 4 (interface/gemv.c); the 4 is
 * the default GEMM_MULTITHREAD_THRESHOLD. Above those it wakes its own thread
 * pool, which made a 128^3 SGEMM called on a busy two-core machine take
 * 2.7 ms instead of 38 us. Block sizes are chosen so that every call stays
 * below both limits and the only threads are ours. NOTE: other BLAS
 * libraries, OpenBLAS builds with other thresholds, and head dimensions
 * above about 4096 may still thread inside a call.
 *
 * Threads and determinism. OpenMP threads take tasks (batch, head, query
 * block) with a dynamic schedule. Every output row is computed by one task
 * in a fixed order of operations, so results are bitwise identical for any
 * thread count. Small problems run on one thread.
 *
 * SIMD. The softmax kernels use 64-byte GNU C vectors and a polynomial exp
 * (about 2 ulp). They are compiled three times, for baseline x86-64 (or the
 * target's baseline elsewhere), AVX2 with FMA, and AVX-512F, through
 * `#pragma GCC target`, and the path is chosen at run time with
 * __builtin_cpu_supports. The exp uses fused multiply-adds on the paths that
 * have them, so paths may differ in the last bit; a given path gives the same
 * bits for any thread count. FASTSOFTMAX_SIMD may lower the choice.
 */

#include "attention.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define ATTN_X86 1
#else
#define ATTN_X86 0
#endif

/* OpenBLAS's single-thread limits, see the design notes: M N K at most the
 * first for a GEMM, M N below the second for a GEMV. */
#define GEMM_SINGLE_THREAD_WORK (65536 * 4)
#define GEMV_SINGLE_THREAD_BOUND (2304 * 4)

#define MAX_BLOCK_Q 64
#define MIN_BLOCK_K 16
#define PREFERRED_BLOCK_K 64
#define MAX_BLOCK_K 512
#define SCRATCH_ALIGN 64

/* Below this many multiply-adds a call runs on one thread. */
#define SERIAL_WORK_LIMIT (1 << 20)

/* Helpers shared by every instantiation. */

static int64_t round_up(int64_t x, int64_t multiple)
{
    return (x + multiple - 1) / multiple * multiple;
}

static int64_t clamp(int64_t x, int64_t low, int64_t high)
{
    return x < low ? low : (x > high ? high : x);
}

/* Key j is in reach of query i when j <= i + causal_offset. */
static int64_t causal_offset(const fsm_attn_args *a)
{
    if (a->causal == FSM_ATTN_CAUSAL_LOWER_RIGHT) {
        return a->kv_len - a->q_len;
    }
    return 0;
}

static char *scratch_alloc(int64_t bytes)
{
    void *memory = NULL;
    if (bytes < SCRATCH_ALIGN) {
        bytes = SCRATCH_ALIGN;
    }
    if (posix_memalign(&memory, SCRATCH_ALIGN, (size_t)bytes) != 0) {
        return NULL;
    }
    /* Zeroed so that padding columns read by the vector loops are defined. */
    memset(memory, 0, (size_t)bytes);
    return memory;
}

static void scratch_free(void *memory)
{
    free(memory);
}

typedef struct {
    int64_t block_q;          /* query rows per task */
    int64_t block_q_padded;   /* row stride of the keys x rows buffers */
    int64_t block_k;          /* keys per block */
    int64_t value_dim_padded; /* row stride of the accumulator */
    int64_t q_blocks;         /* tasks per (batch, head) */
    int64_t k_blocks;         /* key blocks per (batch, kv head) */
} attn_tiling;

/* Choose block sizes: block_q up to 64 rows, shrunk for large head
 * dimensions so that a key block of 64 keeps each GEMM single-threaded, then
 * block_k as large as that limit allows, between 16 and 512. */
static attn_tiling choose_tiling(const fsm_attn_args *a)
{
    attn_tiling t;
    int64_t dim = a->head_dim > a->value_dim ? a->head_dim : a->value_dim;
    if (dim < 1) {
        dim = 1;
    }

    int64_t block_q = a->q_len < MAX_BLOCK_Q ? a->q_len : MAX_BLOCK_Q;
    while (block_q > 16 &&
           block_q * PREFERRED_BLOCK_K * dim > GEMM_SINGLE_THREAD_WORK) {
        block_q /= 2;
    }
    if (block_q < 1) {
        block_q = 1;
    }

    int64_t block_k;
    if (block_q == 1) {
        block_k = (GEMV_SINGLE_THREAD_BOUND - 1) / dim;
    } else {
        block_k = GEMM_SINGLE_THREAD_WORK / (block_q * dim);
    }
    block_k =
        clamp(block_k / MIN_BLOCK_K * MIN_BLOCK_K, MIN_BLOCK_K, MAX_BLOCK_K);
    if (a->kv_len < block_k) {
        block_k = a->kv_len > 1 ? a->kv_len : 1;
    }

    t.block_q = block_q;
    t.block_k = block_k;
    t.block_q_padded = round_up(block_q, 16);
    t.value_dim_padded = round_up(a->value_dim > 1 ? a->value_dim : 1, 16);
    t.q_blocks = (a->q_len + block_q - 1) / block_q;
    t.k_blocks = (a->kv_len + block_k - 1) / block_k;
    return t;
}

/* Row kernels, one instantiation per dtype and SIMD path. Their vector
 * helpers are static, so the ABI notes GCC gives for 64-byte vector
 * arguments without AVX-512 concern no interface and are silenced. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float vf32 __attribute__((vector_size(64)));
typedef int32_t vi32 __attribute__((vector_size(64)));
typedef double vf64 __attribute__((vector_size(64)));
typedef int64_t vi64 __attribute__((vector_size(64)));

static const int32_t lane_index_i32[16] = {0, 1, 2,  3,  4,  5,  6,  7,
                                           8, 9, 10, 11, 12, 13, 14, 15};
static const int64_t lane_index_i64[8] = {0, 1, 2, 3, 4, 5, 6, 7};

/* Taylor coefficients 1/n!, highest degree first. */
static const float exp_poly_f32[8] = {
    1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f,
};
static const double exp_poly_f64[14] = {
    1.0 / 6227020800.0,
    1.0 / 479001600.0,
    1.0 / 39916800.0,
    1.0 / 3628800.0,
    1.0 / 362880.0,
    1.0 / 40320.0,
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
};

#define REAL float
#define INT int32_t
#define VREAL vf32
#define VINT vi32
#define LANES 16
#define LANE_INDEX lane_index_i32
#define EXP_LOG2E 1.44269504088896341f
#define EXP_ROUND_SHIFT 12582912.0f /* 1.5 * 2^23 */
#define EXP_LN2_HI 0.693359375f
#define EXP_LN2_LO -2.12194440e-4f
#define EXP_POLY exp_poly_f32
#define EXP_POLY_TERMS 8
#define EXP_BIAS 127
#define EXP_MANTISSA_BITS 23
#define EXP_UNDERFLOW -87.0f

/* a * b + c, rounded once where the path has FMA instructions. */
static inline vf32 multiply_add_f32_generic(vf32 a, vf32 b, vf32 c)
{
    return a * b + c;
}

#define SOFTMAX_FN(name) name##_f32_generic
#include "attention_softmax.h"
#undef SOFTMAX_FN

#if ATTN_X86
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
static inline vf32 multiply_add_f32_avx2(vf32 a, vf32 b, vf32 c)
{
    __m256 a_half[2];
    __m256 b_half[2];
    __m256 c_half[2];
    memcpy(a_half, &a, sizeof a);
    memcpy(b_half, &b, sizeof b);
    memcpy(c_half, &c, sizeof c);
    a_half[0] = _mm256_fmadd_ps(a_half[0], b_half[0], c_half[0]);
    a_half[1] = _mm256_fmadd_ps(a_half[1], b_half[1], c_half[1]);
    memcpy(&a, a_half, sizeof a);
    return a;
}

#define SOFTMAX_FN(name) name##_f32_avx2
#include "attention_softmax.h"
#undef SOFTMAX_FN
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif
static inline vf32 multiply_add_f32_avx512(vf32 a, vf32 b, vf32 c)
{
    return (vf32)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
}

#define SOFTMAX_FN(name) name##_f32_avx512
#include "attention_softmax.h"
#undef SOFTMAX_FN
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

#undef REAL
#undef INT
#undef VREAL
#undef VINT
#undef LANES
#undef LANE_INDEX
#undef EXP_LOG2E
#undef EXP_ROUND_SHIFT
#undef EXP_LN2_HI
#undef EXP_LN2_LO
#undef EXP_POLY
#undef EXP_POLY_TERMS
#undef EXP_BIAS
#undef EXP_MANTISSA_BITS
#undef EXP_UNDERFLOW

#define REAL double
#define INT int64_t
#define VREAL vf64
#define VINT vi64
#define LANES 8
#define LANE_INDEX lane_index_i64
#define EXP_LOG2E 1.44269504088896340736
#define EXP_ROUND_SHIFT 6755399441055744.0 /* 1.5 * 2^52 */
#define EXP_LN2_HI 6.93147180369123816490e-01
#define EXP_LN2_LO 1.90821492927058770002e-10
#define EXP_POLY exp_poly_f64
#define EXP_POLY_TERMS 14
#define EXP_BIAS 1023
#define EXP_MANTISSA_BITS 52
#define EXP_UNDERFLOW -708.0

static inline vf64 multiply_add_f64_generic(vf64 a, vf64 b, vf64 c)
{
    return a * b + c;
}

#define SOFTMAX_FN(name) name##_f64_generic
#include "attention_softmax.h"
#undef SOFTMAX_FN

#if ATTN_X86
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
static inline vf64 multiply_add_f64_avx2(vf64 a, vf64 b, vf64 c)
{
    __m256d a_half[2];
    __m256d b_half[2];
    __m256d c_half[2];
    memcpy(a_half, &a, sizeof a);
    memcpy(b_half, &b, sizeof b);
    memcpy(c_half, &c, sizeof c);
    a_half[0] = _mm256_fmadd_pd(a_half[0], b_half[0], c_half[0]);
    a_half[1] = _mm256_fmadd_pd(a_half[1], b_half[1], c_half[1]);
    memcpy(&a, a_half, sizeof a);
    return a;
}

#define SOFTMAX_FN(name) name##_f64_avx2
#include "attention_softmax.h"
#undef SOFTMAX_FN
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f")
#endif
static inline vf64 multiply_add_f64_avx512(vf64 a, vf64 b, vf64 c)
{
    return (vf64)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
}

#define SOFTMAX_FN(name) name##_f64_avx512
#include "attention_softmax.h"
#undef SOFTMAX_FN
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

#undef REAL
#undef INT
#undef VREAL
#undef VINT
#undef LANES
#undef LANE_INDEX
#undef EXP_LOG2E
#undef EXP_ROUND_SHIFT
#undef EXP_LN2_HI
#undef EXP_LN2_LO
#undef EXP_POLY
#undef EXP_POLY_TERMS
#undef EXP_BIAS
#undef EXP_MANTISSA_BITS
#undef EXP_UNDERFLOW

/* Run-time choice of the SIMD path. */

enum { PATH_GENERIC = 0, PATH_AVX2 = 1, PATH_AVX512 = 2, PATH_COUNT = 3 };

static const char *const path_names[PATH_COUNT] = {"generic", "avx2", "avx512"};

typedef struct {
    void (*softmax_block)(float *, float *, const float *, int64_t, int64_t,
                          int64_t, float, float *, float *, float *);
    int (*row_is_finite)(const float *, int64_t);
    void (*rescale_rows)(float *, int64_t, int64_t, const float *);
    void (*normalize_rows)(float *, int64_t, int64_t, const float *,
                           const float *);
} softmax_kernels_f32;

typedef struct {
    void (*softmax_block)(double *, double *, const double *, int64_t, int64_t,
                          int64_t, double, double *, double *, double *);
    int (*row_is_finite)(const double *, int64_t);
    void (*rescale_rows)(double *, int64_t, int64_t, const double *);
    void (*normalize_rows)(double *, int64_t, int64_t, const double *,
                           const double *);
} softmax_kernels_f64;

#if ATTN_X86
static const softmax_kernels_f32 kernels_f32[PATH_COUNT] = {
    {softmax_block_f32_generic, row_is_finite_f32_generic,
     rescale_rows_f32_generic, normalize_rows_f32_generic},
    {softmax_block_f32_avx2, row_is_finite_f32_avx2, rescale_rows_f32_avx2,
     normalize_rows_f32_avx2},
    {softmax_block_f32_avx512, row_is_finite_f32_avx512,
     rescale_rows_f32_avx512, normalize_rows_f32_avx512},
};
static const softmax_kernels_f64 kernels_f64[PATH_COUNT] = {
    {softmax_block_f64_generic, row_is_finite_f64_generic,
     rescale_rows_f64_generic, normalize_rows_f64_generic},
    {softmax_block_f64_avx2, row_is_finite_f64_avx2, rescale_rows_f64_avx2,
     normalize_rows_f64_avx2},
    {softmax_block_f64_avx512, row_is_finite_f64_avx512,
     rescale_rows_f64_avx512, normalize_rows_f64_avx512},
};
#else
static const softmax_kernels_f32 kernels_f32[1] = {
    {softmax_block_f32_generic, row_is_finite_f32_generic,
     rescale_rows_f32_generic, normalize_rows_f32_generic},
};
static const softmax_kernels_f64 kernels_f64[1] = {
    {softmax_block_f64_generic, row_is_finite_f64_generic,
     rescale_rows_f64_generic, normalize_rows_f64_generic},
};
#endif

static int best_path = -1;
static int current_path = PATH_GENERIC;

/* Detect the best path once; FASTSOFTMAX_SIMD may name a lower one. Called
 * first from module import, while the caller holds the GIL. */
static void ensure_paths(void)
{
    if (best_path >= 0) {
        return;
    }
    best_path = PATH_GENERIC;
#if ATTN_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        best_path = PATH_AVX2;
    }
    if (__builtin_cpu_supports("avx512f")) {
        best_path = PATH_AVX512;
    }
#endif
    current_path = best_path;
    const char *requested = getenv("FASTSOFTMAX_SIMD");
    if (requested != NULL) {
        for (int i = 0; i <= best_path; i++) {
            if (strcmp(requested, path_names[i]) == 0) {
                current_path = i;
            }
        }
    }
}

const char *fsm_attn_simd_name(void)
{
    ensure_paths();
    return path_names[current_path];
}

int fsm_attn_simd_supported(const char **names)
{
    ensure_paths();
    for (int i = 0; i <= best_path; i++) {
        names[i] = path_names[i];
    }
    return best_path + 1;
}

int fsm_attn_set_simd(const char *name)
{
    ensure_paths();
    for (int i = 0; i <= best_path; i++) {
        if (strcmp(name, path_names[i]) == 0) {
            current_path = i;
            return 0;
        }
    }
    return -1;
}

int fsm_attn_has_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* BLAS routines and the tiled driver, one instantiation per dtype. */

static fsm_sgemm_fn *stored_sgemm = NULL;
static fsm_dgemm_fn *stored_dgemm = NULL;

void fsm_attn_set_blas(fsm_sgemm_fn *sgemm, fsm_dgemm_fn *dgemm)
{
    stored_sgemm = sgemm;
    stored_dgemm = dgemm;
}

#define REAL float
#define GEMM_POINTER stored_sgemm
#define SOFTMAX_KERNELS softmax_kernels_f32
#define TILE_FN(name) name##_f32
#include "attention_tile.h"
#undef REAL
#undef GEMM_POINTER
#undef SOFTMAX_KERNELS
#undef TILE_FN

#define REAL double
#define GEMM_POINTER stored_dgemm
#define SOFTMAX_KERNELS softmax_kernels_f64
#define TILE_FN(name) name##_f64
#include "attention_tile.h"
#undef REAL
#undef GEMM_POINTER
#undef SOFTMAX_KERNELS
#undef TILE_FN

int fsm_attention(const fsm_attn_args *args)
{
    ensure_paths();
    fsm_attn_args a = *args;
    attn_tiling t = choose_tiling(&a);

    double work = (double)a.batch * (double)a.q_heads * (double)a.q_len *
                  (double)a.kv_len * (double)(a.head_dim + a.value_dim);
    if (work < SERIAL_WORK_LIMIT) {
        a.threads = 1;
    }

    if (a.dtype == FSM_ATTN_FLOAT32) {
        if (stored_sgemm == NULL) {
            return FSM_ATTN_NO_BLAS;
        }
        return attention_run_f32(&a, &t, &kernels_f32[current_path]);
    }
    if (stored_dgemm == NULL) {
        return FSM_ATTN_NO_BLAS;
    }
    return attention_run_f64(&a, &t, &kernels_f64[current_path]);
}
