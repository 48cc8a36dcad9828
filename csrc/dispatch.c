/*
 * Dispatcher: picks the SIMD path and the walking mode of a call, splits its
 * work units over OpenMP threads, and holds the scalar steps that every path
 * shares.
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
 * Rows when slices are contiguous and unmasked; columns when they lie side by
 * side along a contiguous last outer dimension of at least 4 slices; else
 * gather. Masked slices are always gathered, because gathering is also what
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
        units = (lanes + FSM_COLUMN_LANES - 1) / FSM_COLUMN_LANES;
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
        ptrdiff_t width = call->outer_shape[d];
        ptrdiff_t blocks = (width + FSM_COLUMN_LANES - 1) / FSM_COLUMN_LANES;
        ptrdiff_t first = unit % blocks * FSM_COLUMN_LANES;
        unit /= blocks;
        x = first * call->x_outer[d];
        out = first * call->out_outer[d];
        *lanes = width - first < FSM_COLUMN_LANES ? width - first : FSM_COLUMN_LANES;
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

/* exp(a - b) for a <= b, with a - b taken exactly. */
static double exp_difference(double a, double b) {
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
        double f = exp_difference(*max, chunk_max);
        sum->hi *= f;
        sum->lo *= f;
        *max = chunk_max;
    } else {
        double f = exp_difference(chunk_max, *max);
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
    const size_t scratch_bytes =
        mode == FSM_MODE_GATHER ? 2 * (size_t)call->n * (size_t)item_size(call) + 1 : 0;

    if (units == 0) {
        return FSM_OK;
    }
    if (units < 2 || units * (call->n > 0 ? call->n : 1) < SERIAL_THRESHOLD) {
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
