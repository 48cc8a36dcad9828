/*
 * Dispatcher: picks the SIMD path and the walking mode of a call, splits its
 * work units over OpenMP threads, and defines the scalar steps that every
 * path shares.
 *
 * Threads take contiguous ranges of whole slices (or column blocks), and a
 * slice is always computed by one thread with a fixed order of operations, so
 * results do not depend on the thread count. Calls smaller than
 * SERIAL_THRESHOLD elements run on the calling thread, where starting a team
 * would cost more than it saves.
 */
#include <math.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernel.h"

#define SERIAL_THRESHOLD 32768

/* --- SIMD paths ------------------------------------------------------- */

static int current_isa = -1;

unsigned fsm_supported_isas(void) {
    unsigned isas = 1u << FSM_GENERIC;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        isas |= 1u << FSM_AVX2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")) {
            isas |= 1u << FSM_AVX512;
        }
    }
#endif
    return isas;
}

fsm_isa fsm_get_isa(void) {
    if (current_isa < 0) {
        unsigned isas = fsm_supported_isas();
        current_isa = FSM_GENERIC;
        for (int isa = FSM_AVX512; isa > FSM_GENERIC; isa--) {
            if (isas & (1u << isa)) {
                current_isa = isa;
                break;
            }
        }
    }
    return (fsm_isa)current_isa;
}

int fsm_set_isa(fsm_isa isa) {
    if ((unsigned)isa > FSM_AVX512 || !(fsm_supported_isas() & (1u << isa))) {
        return -1;
    }
    current_isa = isa;
    return 0;
}

int fsm_has_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static fsm_kernel_fn kernel_for(fsm_isa isa) {
#if defined(__x86_64__) || defined(__i386__)
    if (isa == FSM_AVX512) {
        return fsm_kernel_avx512;
    }
    if (isa == FSM_AVX2) {
        return fsm_kernel_avx2;
    }
#endif
    (void)isa;
    return fsm_kernel_generic;
}

/* --- Work units --------------------------------------------------------- */

static ptrdiff_t item_size(const fsm_call *call) {
    return call->dtype == FSM_FLOAT32 ? 4 : 8;
}

/*
 * Rows when slices are contiguous and unmasked. Columns when they lie side by
 * side along a contiguous last outer dimension of at least 4 slices. Gather
 * otherwise, and always for masked slices, because gathering is also what
 * replaces excluded entries by -inf.
 */
static fsm_mode choose_mode(const fsm_call *call) {
    const ptrdiff_t size = item_size(call);
    const int is_lse = call->op == FSM_LOGSUMEXP;
    const int last = call->outer_ndim - 1;

    if (call->mask == NULL && call->x_step == size && (is_lse || call->out_step == size)) {
        return FSM_MODE_ROWS;
    }
    if (call->mask == NULL && last >= 0 && call->n > 0 && call->outer_shape[last] >= 4 &&
        call->x_outer[last] == size && call->out_outer[last] == size) {
        return FSM_MODE_COLUMNS;
    }
    return FSM_MODE_GATHER;
}

ptrdiff_t fsm_unit_count(const fsm_call *call, fsm_mode mode) {
    ptrdiff_t units = 1;
    int dims = call->outer_ndim;
    if (mode == FSM_MODE_COLUMNS) {
        ptrdiff_t lanes = call->outer_shape[dims - 1];
        ptrdiff_t width = FSM_COLUMN_BYTES / item_size(call);
        units = (lanes + width - 1) / width;
        dims--;
    }
    for (int d = 0; d < dims; d++) {
        units *= call->outer_shape[d];
    }
    return units;
}

void fsm_unit_offsets(const fsm_call *call, fsm_mode mode, ptrdiff_t unit,
                      ptrdiff_t *x_offset, ptrdiff_t *out_offset, ptrdiff_t *mask_offset,
                      ptrdiff_t *lanes) {
    ptrdiff_t x = 0, out = 0, mask = 0;
    int d = call->outer_ndim - 1;

    *lanes = 1;
    if (mode == FSM_MODE_COLUMNS) {
        ptrdiff_t block_lanes = FSM_COLUMN_BYTES / item_size(call);
        ptrdiff_t width = call->outer_shape[d];
        ptrdiff_t blocks = (width + block_lanes - 1) / block_lanes;
        ptrdiff_t first = unit % blocks * block_lanes;
        unit /= blocks;
        x = first * call->x_outer[d];
        out = first * call->out_outer[d];
        *lanes = width - first < block_lanes ? width - first : block_lanes;
        d--;
    }
    for (; d >= 0; d--) {
        ptrdiff_t index = unit % call->outer_shape[d];
        unit /= call->outer_shape[d];
        x += index * call->x_outer[d];
        out += index * call->out_outer[d];
        mask += index * call->mask_outer[d];
    }
    *x_offset = x;
    *out_offset = out;
    *mask_offset = mask;
}

/* --- Scalar steps shared by every path ------------------------------------ */

/* s + err == a + b exactly. */
static double two_sum(double a, double b, double *err) {
    double s = a + b;
    double b_part = s - a;
    double a_part = s - b_part;
    *err = (a - a_part) + (b - b_part);
    return s;
}

static fsm_sum normalize(double hi, double lo) {
    fsm_sum sum;
    sum.hi = hi + lo;
    sum.lo = lo - (sum.hi - hi);
    return sum;
}

fsm_sum fsm_reduce_partials(const double *sums, const double *compensations) {
    double hi[FSM_PARTIALS], lo[FSM_PARTIALS];

    for (int k = 0; k < FSM_PARTIALS; k++) {
        hi[k] = sums[k];
        lo[k] = compensations[k];
    }
    for (int width = FSM_PARTIALS / 2; width >= 1; width /= 2) {
        for (int k = 0; k < width; k++) {
            double err;
            hi[k] = two_sum(hi[k], hi[k + width], &err);
            lo[k] = (lo[k] + lo[k + width]) + err;
        }
    }
    return normalize(hi[0], lo[0]);
}

fsm_sum fsm_reduce_partials_plain(const double *sums) {
    double tree[FSM_PARTIALS];

    for (int k = 0; k < FSM_PARTIALS; k++) {
        tree[k] = sums[k];
    }
    for (int width = FSM_PARTIALS / 2; width >= 1; width /= 2) {
        for (int k = 0; k < width; k++) {
            tree[k] += tree[k + width];
        }
    }
    return normalize(tree[0], 0.0);
}

double fsm_exp_difference(double a, double b) {
    double lo;
    double d = two_sum(a, -b, &lo);
    double e = exp(d);
    return fma(e, lo, e);
}

static fsm_sum add_sums(fsm_sum a, fsm_sum b) {
    double err;
    double hi = two_sum(a.hi, b.hi, &err);
    return normalize(hi, (a.lo + b.lo) + err);
}

void fsm_combine_chunk(double *max, fsm_sum *sum, double chunk_max, fsm_sum chunk) {
    if (*max == -INFINITY) {
        *max = chunk_max;
        *sum = chunk;
        return;
    }
    if (chunk_max > *max) {
        double f = fsm_exp_difference(*max, chunk_max);
        sum->hi *= f;
        sum->lo *= f;
        *max = chunk_max;
    } else {
        double f = fsm_exp_difference(chunk_max, *max);
        chunk.hi *= f;
        chunk.lo *= f;
    }
    *sum = add_sums(*sum, chunk);
}

double fsm_log_sum(fsm_sum sum) {
    if (sum.hi < 2.0) {
        /* sum.hi - 1 is exact for sum.hi in [0.5, 2]. */
        return log1p((sum.hi - 1.0) + sum.lo);
    }
    return log(sum.hi) + sum.lo / sum.hi;
}

/* --- logsumexp when max + log(sum) cancels --------------------------------- */

/*
 * When the maximum is negative and log(sum) nearly cancels it, the fast
 * result carries an absolute error of about one ulp of log(sum), which can be
 * many ulp of a result near 0. Such slices are summed again in double-double
 * arithmetic, with an absolute error near 2^-100 * log(sum): within 4 ulp for
 * float64 results down to about 2^-46 * log(sum), and for float32 results
 * down to about 2^-78 * log(sum).
 * NOTE: float64 results even closer to 0 (such as the logsumexp of
 * log-probabilities that sum to 1 in exact arithmetic) keep only that
 * absolute accuracy.
 * The cost, a few hundred flops per element, is paid only by those slices.
 */

typedef struct {
    double hi;
    double lo;
} double_double;

static double_double quick_two_sum(double a, double b) {
    double_double r;
    r.hi = a + b;
    r.lo = b - (r.hi - a);
    return r;
}

static double_double dd_add(double_double a, double_double b) {
    double err;
    double hi = two_sum(a.hi, b.hi, &err);
    return quick_two_sum(hi, err + (a.lo + b.lo));
}

static double_double dd_mul(double_double a, double_double b) {
    double p = a.hi * b.hi;
    double err = fma(a.hi, b.hi, -p);
    return quick_two_sum(p, err + (a.hi * b.lo + a.lo * b.hi));
}

static double_double dd_scale(double_double a, int exponent) {
    double_double r = {ldexp(a.hi, exponent), ldexp(a.lo, exponent)};
    return r;
}

/* 1/n! for n = 2..15 as double-double. */
static const double_double INVERSE_FACTORIAL[16] = {
    {0.0, 0.0},
    {0.0, 0.0},
    {0x1.0000000000000p-1, 0.0},
    {0x1.5555555555555p-3, 0x1.5555555555555p-57},
    {0x1.5555555555555p-5, 0x1.5555555555555p-59},
    {0x1.1111111111111p-7, 0x1.1111111111111p-63},
    {0x1.6c16c16c16c17p-10, -0x1.f49f49f49f49fp-65},
    {0x1.a01a01a01a01ap-13, 0x1.a01a01a01a01ap-73},
    {0x1.a01a01a01a01ap-16, 0x1.a01a01a01a01ap-76},
    {0x1.71de3a556c734p-19, -0x1.c154f8ddc6c00p-73},
    {0x1.27e4fb7789f5cp-22, 0x1.cbbc05b4fa99ap-76},
    {0x1.ae64567f544e4p-26, -0x1.c062e06d1f209p-80},
    {0x1.1eed8eff8d898p-29, -0x1.2aec959e14c06p-83},
    {0x1.6124613a86d09p-33, 0x1.f28e0cc748ebep-87},
    {0x1.93974a8c07c9dp-37, 0x1.05d6f8a2efd1fp-92},
    {0x1.ae7f3e733b81fp-41, 0x1.1d8656b0ee8cbp-97},
};

/*
 * exp(a) for a <= 0: a = k ln2 + r, exp(r / 8) from its Taylor polynomial of
 * degree 15 (truncation below 2^-110), squared 3 times (each squaring doubles
 * the relative error, so few of them). Relative error about 2^-100.
 */
static double_double dd_exp(double_double a) {
    const double_double ln2 = {0x1.62e42fefa39efp-1, 0x1.abc9e3b39803fp-56};
    double_double result = {0.0, 0.0};

    if (!(a.hi >= -746.0)) {
        return result;
    }
    double k = nearbyint(a.hi / ln2.hi);
    double_double k_ln2 = dd_mul(ln2, (double_double){k, 0.0});
    double_double r = dd_add(a, (double_double){-k_ln2.hi, -k_ln2.lo});
    r = dd_scale(r, -3);

    result = INVERSE_FACTORIAL[15];
    for (int n = 14; n >= 2; n--) {
        result = dd_add(dd_mul(result, r), INVERSE_FACTORIAL[n]);
    }
    result = dd_add(dd_mul(result, r), (double_double){1.0, 0.0});
    result = dd_add(dd_mul(result, r), (double_double){1.0, 0.0});
    for (int i = 0; i < 3; i++) {
        result = dd_mul(result, result);
    }
    /* Two steps keep both halves normal down to k = -1076. */
    int half = (int)k / 2;
    return dd_scale(dd_scale(result, half), (int)k - half);
}

int fsm_logsumexp_cancels(double log_sum, double lse, fsm_dtype dtype) {
    /* The fast result's relative error is that of log_sum (about 2^-52)
       times log_sum / |lse|. For float64 past 1.5 that could exceed the
       4 ulp bound; float32 has 29 bits to spare, and 2^24 leaves a margin. */
    double limit = dtype == FSM_FLOAT64 ? 1.5 : 0x1p24;
    return log_sum > limit * fabs(lse);
}

double fsm_logsumexp_precise(const char *x, ptrdiff_t step, ptrdiff_t n, double max,
                             fsm_dtype dtype) {
    double_double sum = {0.0, 0.0};

    for (ptrdiff_t i = 0; i < n; i++) {
        double value = dtype == FSM_FLOAT64 ? *(const double *)(x + i * step)
                                            : (double)*(const float *)(x + i * step);
        double_double shifted;
        shifted.hi = two_sum(value, -max, &shifted.lo);
        sum = dd_add(sum, dd_exp(shifted));
    }

    /* One Newton step on exp(y) = sum from y = log(sum.hi) doubles the
       accurate bits: y + sum * exp(-y) - 1. */
    double y = log(sum.hi);
    double_double correction = dd_mul(sum, dd_exp((double_double){-y, 0.0}));
    correction = dd_add(correction, (double_double){-1.0, 0.0});
    double_double log_sum = dd_add((double_double){y, 0.0}, correction);

    double err;
    double hi = two_sum(max, log_sum.hi, &err);
    return hi + (err + log_sum.lo);
}

/* --- Entry point -------------------------------------------------------- */

static int valid_call(const fsm_call *call, int threads) {
    if (call->outer_ndim < 0 || call->outer_ndim > FSM_MAX_DIMS || call->n < 0 || threads < 1) {
        return 0;
    }
    if ((unsigned)call->op > FSM_LOGSUMEXP || (unsigned)call->dtype > FSM_FLOAT64) {
        return 0;
    }
    for (int d = 0; d < call->outer_ndim; d++) {
        if (call->outer_shape[d] < 0) {
            return 0;
        }
    }
    return 1;
}

int fsm_run(const fsm_call *call, int threads) {
    if (!valid_call(call, threads)) {
        return FSM_EINVAL;
    }
    const fsm_mode mode = choose_mode(call);
    const ptrdiff_t units = fsm_unit_count(call, mode);
    const fsm_kernel_fn kernel = kernel_for(fsm_get_isa());
    size_t scratch_bytes = 0;
    if (mode == FSM_MODE_GATHER) {
        scratch_bytes = 2 * (size_t)call->n * (size_t)item_size(call) + 1;
    } else if (mode == FSM_MODE_COLUMNS) {
        scratch_bytes = ((size_t)FSM_CHUNK + FSM_STORED_CHUNKS) * FSM_COLUMN_BYTES;
    }

    if (units == 0) {
        return FSM_OK;
    }
    ptrdiff_t elements = call->n > 0 ? call->n : 1;
    for (int d = 0; d < call->outer_ndim; d++) {
        elements *= call->outer_shape[d];
    }
    if (units < 2 || elements < SERIAL_THRESHOLD) {
        threads = 1;
    }
    if (threads > units) {
        threads = (int)units;
    }

#ifdef _OPENMP
    if (threads > 1) {
        int status = FSM_OK;
#pragma omp parallel num_threads(threads)
        {
            ptrdiff_t team = omp_get_num_threads(), rank = omp_get_thread_num();
            ptrdiff_t begin = units / team * rank + (rank < units % team ? rank : units % team);
            ptrdiff_t end = begin + units / team + (rank < units % team ? 1 : 0);
            void *scratch = scratch_bytes ? malloc(scratch_bytes) : NULL;
            int rc = scratch_bytes && scratch == NULL ? FSM_ENOMEM
                                                      : kernel(call, mode, begin, end, scratch);
            free(scratch);
            if (rc != FSM_OK) {
#pragma omp atomic write
                status = rc;
            }
        }
        return status;
    }
#endif

    void *scratch = scratch_bytes ? malloc(scratch_bytes) : NULL;
    if (scratch_bytes && scratch == NULL) {
        return FSM_ENOMEM;
    }
    int rc = kernel(call, mode, 0, units, scratch);
    free(scratch);
    return rc;
}
