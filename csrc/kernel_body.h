/*
 * The softmax kernel body, written once and compiled per SIMD path and dtype.
 *
 * The including file defines:
 *   T        the element type, float or double;
 *   FN(name) the name of a function for this element type;
 *   VLOAD, VSTORE  vd_load_f32/vd_store_f32 or their float64 twins;
 *   PRECISE  1 for float64, 0 for float32;
 *   DTYPE    FSM_FLOAT64 or FSM_FLOAT32.
 *
 * Design. Every slice is computed in double precision: find the maximum,
 * exponentiate the shifted values while summing them, then normalise. The
 * one exception is float32 softmax, which runs the float steps of
 * kernel_float.h. The float32 paths get their accuracy from the wider type
 * alone. The float64 path adds one step: x - max is split exactly into
 * hi + lo (TwoSum), and lo is fed into the exponential. Sums collect every
 * rounding error (TwoSum per addition, then an error-free reduction), so the
 * sum minus its leading 1 stays accurate for log_softmax and logsumexp near 0.
 *
 * Error bound, for slices of up to 2^20 elements, against the correctly
 * rounded exact value: every output within 4 ulp of its dtype. Measured
 * maxima: float32 softmax 2.3 ulp, float32 log_softmax and logsumexp 0.6,
 * float64 2.7. A logsumexp whose max + log(sum) cancels is summed again in
 * double-double arithmetic (fsm_logsumexp_precise(), which states its own
 * limit for float64 results very near 0).
 *
 * Slices of at most FSM_CHUNK elements stay in cache: the exponentials are
 * stored in the output and rescaled in place. Longer slices are summed chunk
 * by chunk, each chunk shifted by its own maximum and folded into the running
 * sum (an online normaliser). The final pass then exponentiates again, so x is
 * read from memory twice and the output written once. float32 softmax instead
 * keeps each chunk's exponentials in the output (for up to FSM_STORED_CHUNKS
 * chunks) and rescales them, so x is read once and the output twice.
 *
 * Element i of a slice always goes to partial sum i % FSM_PARTIALS, in row and
 * column modes alike, so a slice's result is bitwise the same whatever mode,
 * thread or batch computes it.
 *
 * Special values (NaN, +inf, a maximum of -inf) never reach the vector steps:
 * special_slice() handles those slices with the rules stated in the README.
 */

#define COLUMN_LANES (FSM_COLUMN_BYTES / (int)sizeof(T))
#define COLUMN_VECTORS (COLUMN_LANES / VD_LANES)

/*
 * Accuracy levels of the exponential-sum step, fixed per dtype and operation
 * so that every mode computes a slice alike: FULL for float64 and float32
 * logsumexp, FAST_EXP (short polynomial) for float32 log_softmax, FAST_SUM
 * (short polynomial, plain sum) for float32 softmax.
 */
#ifndef FSM_EXP_LEVELS
#define FSM_EXP_LEVELS
enum { FULL = 0, FAST_EXP = 1, FAST_SUM = 2 };
#endif

static inline int FN(exp_level)(fsm_op op) {
    if (PRECISE || op == FSM_LOGSUMEXP) {
        return FULL;
    }
    return op == FSM_SOFTMAX ? FAST_SUM : FAST_EXP;
}

/*
 * exp(x - max) in each lane for x <= max and finite max. Lanes with
 * x - max < -746 (x = -inf included) give exactly 0, and so do lanes below
 * -200 in the float32 path.
 *
 * Range reduction: x - max = k ln2 + r with |r| <= ln2 / 2, exp(r) from its
 * Taylor polynomial and 2^k applied in two halves so that results in the
 * subnormal range are rounded once. The polynomial has degree 13 (truncation
 * error below 2^-57), or degree 7 from level FAST_EXP on (below 2^-27, a
 * sixteenth of a float32 ulp). float32 softmax and log_softmax use the short
 * one; float32 logsumexp needs the full accuracy because max + log(sum) can
 * cancel most of its digits.
 */
static inline __attribute__((always_inline)) vd FN(exp_shifted)(vd x, vd max, int level) {
    const vd shifter = vd_set(0x1.8p52);
    vd d = x - max;
    vd lo = vd_set(0.0);

    if (PRECISE) {
        /* TwoSum: d + lo == x - max exactly. */
        vd max_neg = -max;
        vd x_part = d - max_neg;
        vd max_part = d - x_part;
        lo = (x - x_part) + (max_neg - max_part);
        lo = vd_select(d > vd_set(-745.0), lo, vd_set(0.0));
        d = vd_max(d, vd_set(-746.0));
    } else {
        /* exp(-200) is far below float32's smallest subnormal and adds
           nothing to a sum of at least 1, so float32 clamps there and 2^k
           stays a normal double. */
        d = vd_max(d, vd_set(-200.0));
    }

    /* Round d / ln2 to the nearest integer k, kept both as a double and as
       the low bits of t. */
    vd t = vd_fma(d, vd_set(0x1.71547652b82fep0), shifter);
    vd k = t - shifter;
    vd r = vd_fma(k, vd_set(-0x1.62e42fee00000p-1), d);
    r = vd_fma(k, vd_set(-0x1.a39ef35793c76p-33), r);
    if (PRECISE) {
        r = r + lo;
    }

    /* exp(r) = 1 + r + r^2 q(r). */
    vd q;
    if (level >= FAST_EXP) {
        q = vd_set(1.0 / 5040.0);
    } else {
        q = vd_set(1.0 / 6227020800.0);
        q = vd_fma(q, r, vd_set(1.0 / 479001600.0));
        q = vd_fma(q, r, vd_set(1.0 / 39916800.0));
        q = vd_fma(q, r, vd_set(1.0 / 3628800.0));
        q = vd_fma(q, r, vd_set(1.0 / 362880.0));
        q = vd_fma(q, r, vd_set(1.0 / 40320.0));
        q = vd_fma(q, r, vd_set(1.0 / 5040.0));
    }
    q = vd_fma(q, r, vd_set(1.0 / 720.0));
    q = vd_fma(q, r, vd_set(1.0 / 120.0));
    q = vd_fma(q, r, vd_set(1.0 / 24.0));
    q = vd_fma(q, r, vd_set(1.0 / 6.0));
    q = vd_fma(q, r, vd_set(0.5));
    vd p = vd_fma(q, r * r, r) + vd_set(1.0);

    vl k_int = (vl)t - (vl)shifter;
    if (!PRECISE) {
        return p * (vd)((k_int + 1023) << 52);
    }
    /* Scale by 2^k, k in [-1076, 0], as 2^k1 * 2^k2 with both halves normal. */
    vl k1 = k_int >> 1;
    vl k2 = k_int - k1;
    vd scale1 = (vd)((k1 + 1023) << 52);
    vd scale2 = (vd)((k2 + 1023) << 52);
    return (p * scale1) * scale2;
}

/* Load `count` < VD_LANES elements, with `fill` in the remaining lanes. */
static inline vd FN(load_partial)(const T *p, ptrdiff_t count, double fill) {
    T buffer[VD_LANES];
    for (ptrdiff_t i = 0; i < VD_LANES; i++) {
        buffer[i] = i < count ? p[i] : (T)fill;
    }
    return VLOAD(buffer);
}

static inline void FN(store_partial)(T *p, ptrdiff_t count, vd v) {
    T buffer[VD_LANES];
    VSTORE(buffer, v);
    memcpy(p, buffer, (size_t)count * sizeof(T));
}

/* Lanes below `count` all ones, the others zero. */
static inline vl FN(lanes_below)(ptrdiff_t count) {
    const vl index = {0, 1, 2, 3, 4, 5, 6, 7};
    return index < (vl){count, count, count, count, count, count, count, count};
}

/*
 * Add e to the partial sums s, collecting the rounding errors in c (TwoSum, so
 * s + c is the sum up to the rounding of c). Kahan's cheaper update would
 * lose c when a 1 is added to a small partial sum, and log_softmax and
 * logsumexp near 0 need the small terms of 1 + small to full precision. float32
 * softmax (level FAST_SUM) needs only the sum's leading digits and adds
 * plainly.
 */
static inline __attribute__((always_inline)) void FN(accumulate)(vd *s, vd *c, vd e, int level) {
    if (level == FAST_SUM) {
        *s += e;
        return;
    }
    vd t = *s + e;
    vd e_part = t - *s;
    vd s_part = t - e_part;
    *c += (*s - s_part) + (e - e_part);
    *s = t;
}

static inline __attribute__((always_inline)) void FN(accumulate_lanes)(vd *s, vd *c, vd e,
                                                                      vl keep, int level) {
    vd s_new = *s, c_new = *c;
    FN(accumulate)(&s_new, &c_new, e, level);
    *s = vd_select(keep, s_new, *s);
    *c = vd_select(keep, c_new, *c);
}

static double FN(lane_max)(vd v) {
    double max = v[0];
    for (int j = 1; j < VD_LANES; j++) {
        max = v[j] > max ? v[j] : max;
    }
    return max;
}

static int FN(any_lane)(vl v) {
    long long any = 0;
    for (int j = 0; j < VD_LANES; j++) {
        any |= v[j];
    }
    return any != 0;
}

/* --- Row mode: one contiguous slice at a time ------------------------- */

/*
 * The slice computed after this one. A short slice spends most of its time
 * in the exponential step, which is bound by arithmetic, so that step pulls
 * the next slice's input and output into cache meanwhile. Without it the next
 * maximum step would wait for memory, because hardware prefetchers do not
 * anticipate the jump to the next slice.
 */
typedef struct {
    const T *x;
    T *out; /* NULL for logsumexp */
} FN(next_slice);

/* Prefetch the part of the next slice that matches elements [i, i + count). */
static inline void FN(prefetch_next)(const FN(next_slice) * next, ptrdiff_t i, ptrdiff_t count) {
    const char *x = (const char *)(next->x + i);
    char *out = (char *)(next->out + i);
    for (ptrdiff_t byte = 0; byte < count * (ptrdiff_t)sizeof(T); byte += 64) {
        __builtin_prefetch(x + byte);
        if (next->out) {
            __builtin_prefetch(out + byte, 1);
        }
    }
}

/* Step 1: the maximum of x[0:n], and whether any element is NaN. */
static void FN(row_max)(const T *x, ptrdiff_t n, double *max, int *has_nan) {
    vd m0 = vd_set(-INFINITY), m1 = m0;
    vl nan = {0};
    ptrdiff_t i = 0;

    for (; i + 2 * VD_LANES <= n; i += 2 * VD_LANES) {
        vd a = VLOAD(x + i);
        vd b = VLOAD(x + i + VD_LANES);
        nan |= (a != a) | (b != b);
        m0 = vd_max(m0, a);
        m1 = vd_max(m1, b);
    }
    for (; i < n; i += VD_LANES) {
        vd a = i + VD_LANES <= n ? VLOAD(x + i) : FN(load_partial)(x + i, n - i, -INFINITY);
        nan |= a != a;
        m0 = vd_max(m0, a);
    }
    *max = FN(lane_max)(vd_max(m0, m1));
    *has_nan = FN(any_lane)(nan);
}

/*
 * Step 2: partial sums of exp(x - max) over x[0:n], written to sums and
 * compensations indexed by i % FSM_PARTIALS (one vector lane each). With
 * `store`, also write each exponential there. Four exponentials are in flight
 * per iteration; they are added in index order.
 */
static inline __attribute__((always_inline)) void FN(row_exp_sum_body)(
    const T *x, ptrdiff_t n, double max, T *store, double *sums, double *compensations,
    const FN(next_slice) * next, int level) {
    const vd m = vd_set(max);
    vd s = vd_set(0.0), c = s;
    ptrdiff_t i = 0;

    for (; i + 4 * VD_LANES <= n; i += 4 * VD_LANES) {
        if (next) {
            FN(prefetch_next)(next, i, 4 * VD_LANES);
        }
        vd e0 = FN(exp_shifted)(VLOAD(x + i), m, level);
        vd e1 = FN(exp_shifted)(VLOAD(x + i + VD_LANES), m, level);
        vd e2 = FN(exp_shifted)(VLOAD(x + i + 2 * VD_LANES), m, level);
        vd e3 = FN(exp_shifted)(VLOAD(x + i + 3 * VD_LANES), m, level);
        FN(accumulate)(&s, &c, e0, level);
        FN(accumulate)(&s, &c, e1, level);
        FN(accumulate)(&s, &c, e2, level);
        FN(accumulate)(&s, &c, e3, level);
        if (store) {
            VSTORE(store + i, e0);
            VSTORE(store + i + VD_LANES, e1);
            VSTORE(store + i + 2 * VD_LANES, e2);
            VSTORE(store + i + 3 * VD_LANES, e3);
        }
    }
    for (; i < n; i += VD_LANES) {
        ptrdiff_t count = n - i < VD_LANES ? n - i : VD_LANES;
        vd v = count == VD_LANES ? VLOAD(x + i) : FN(load_partial)(x + i, count, -INFINITY);
        vd e = FN(exp_shifted)(v, m, level);
        /* Lanes past n are left alone, as a column lane past n would be. */
        FN(accumulate_lanes)(&s, &c, e, FN(lanes_below)(count), level);
        if (store) {
            FN(store_partial)(store + i, count, e);
        }
    }

    for (int j = 0; j < VD_LANES; j++) {
        sums[j] = s[j];
        compensations[j] = c[j];
    }
}

static void FN(row_exp_sum)(const T *x, ptrdiff_t n, double max, T *store, double *sums,
                            double *compensations, const FN(next_slice) * next, int level) {
    if (level == FAST_SUM) {
        FN(row_exp_sum_body)(x, n, max, store, sums, compensations, next, FAST_SUM);
    } else if (level == FAST_EXP) {
        FN(row_exp_sum_body)(x, n, max, store, sums, compensations, next, FAST_EXP);
    } else {
        FN(row_exp_sum_body)(x, n, max, store, sums, compensations, next, FULL);
    }
}

/* Step 3 for short softmax slices: out[i] *= scale. */
static void FN(row_scale)(T *out, ptrdiff_t n, double scale) {
    const vd f = vd_set(scale);
    ptrdiff_t i = 0;
    for (; i + VD_LANES <= n; i += VD_LANES) {
        VSTORE(out + i, VLOAD(out + i) * f);
    }
    if (i < n) {
        FN(store_partial)(out + i, n - i, FN(load_partial)(out + i, n - i, 0.0) * f);
    }
}

/* Step 3 for long softmax slices: out[i] = exp(x[i] - max) * scale. */
static void FN(row_exp_scale)(const T *x, ptrdiff_t n, double max, double scale, T *out) {
    const vd m = vd_set(max), f = vd_set(scale);
    ptrdiff_t i = 0;
    for (; i + VD_LANES <= n; i += VD_LANES) {
        VSTORE(out + i, FN(exp_shifted)(VLOAD(x + i), m, FN(exp_level)(FSM_SOFTMAX)) * f);
    }
    if (i < n) {
        vd v = FN(load_partial)(x + i, n - i, -INFINITY);
        FN(store_partial)(out + i, n - i, FN(exp_shifted)(v, m, FN(exp_level)(FSM_SOFTMAX)) * f);
    }
}

/* Step 3 for log_softmax: out[i] = (x[i] - max) - log_sum. */
static void FN(row_log)(const T *x, ptrdiff_t n, double max, double log_sum, T *out) {
    const vd m = vd_set(max), l = vd_set(log_sum);
    ptrdiff_t i = 0;
    for (; i + VD_LANES <= n; i += VD_LANES) {
        VSTORE(out + i, (VLOAD(x + i) - m) - l);
    }
    if (i < n) {
        vd v = FN(load_partial)(x + i, n - i, 0.0);
        FN(store_partial)(out + i, n - i, (v - m) - l);
    }
}

/*
 * A slice with a NaN, a +inf or only -inf entries (or none): write the rule's
 * values and return its logsumexp. x and out are byte-strided.
 */
static double FN(special_slice)(fsm_op op, const char *x, ptrdiff_t x_step, ptrdiff_t n,
                                char *out, ptrdiff_t out_step, int has_nan, double max) {
    double value_at_inf = 0.0, value_elsewhere = 0.0, lse;
    ptrdiff_t inf_count = 0;

    if (has_nan) {
        value_at_inf = value_elsewhere = lse = NAN;
    } else if (max == INFINITY) {
        for (ptrdiff_t i = 0; i < n; i++) {
            inf_count += *(const T *)(x + i * x_step) == INFINITY;
        }
        value_at_inf = op == FSM_SOFTMAX ? 1.0 / (double)inf_count : -log((double)inf_count);
        value_elsewhere = op == FSM_SOFTMAX ? 0.0 : -INFINITY;
        lse = INFINITY;
    } else {
        value_at_inf = value_elsewhere = op == FSM_SOFTMAX ? 0.0 : -INFINITY;
        lse = -INFINITY;
    }

    if (op != FSM_LOGSUMEXP) {
        for (ptrdiff_t i = 0; i < n; i++) {
            T xi = *(const T *)(x + i * x_step);
            *(T *)(out + i * out_step) = (T)(xi == INFINITY ? value_at_inf : value_elsewhere);
        }
    }
    return lse;
}

/*
 * One contiguous slice: softmax or log_softmax into out; returns logsumexp.
 * `next`, when not NULL, is prefetched along the way.
 */
static double FN(slice)(fsm_op op, const T *x, ptrdiff_t n, T *out, const FN(next_slice) * next) {
    double sums[FSM_PARTIALS], compensations[FSM_PARTIALS] = {0.0};
    double max;
    int has_nan = 0, has_inf = 0;
    int is_long = n > FSM_CHUNK;
    int level = FN(exp_level)(op);
    /* float32 softmax runs the float steps of kernel_float.h. */
    int in_float = !PRECISE && op == FSM_SOFTMAX;
    /* A long float32 softmax slice keeps its chunks' exponentials in out and
       rescales them at the end. chunk_shift[c] is chunk c's maximum, or -inf
       for a chunk with no finite entry, whose outputs are 0. */
    int keep_chunks = in_float && is_long && (n - 1) / FSM_CHUNK < FSM_STORED_CHUNKS;
    float chunk_shift[FSM_STORED_CHUNKS];
    fsm_sum sum = {0.0, 0.0};

    if (!is_long) {
        if (in_float) {
            row_max_float((const float *)x, n, &max, &has_nan);
        } else {
            FN(row_max)(x, n, &max, &has_nan);
        }
        has_inf = max == INFINITY;
        if (!has_nan && !has_inf && max != -INFINITY) {
            if (in_float) {
                row_exp_sum_float((const float *)x, n, max, (float *)out, sums,
                                  next ? (const float *)next->x : NULL,
                                  next ? (float *)next->out : NULL);
                sum = fsm_reduce_partials_plain(sums);
            } else {
                FN(row_exp_sum)(x, n, max, op == FSM_SOFTMAX ? out : NULL, sums, compensations,
                                next, level);
                sum = fsm_reduce_partials(sums, compensations);
            }
        }
    } else {
        max = -INFINITY;
        for (ptrdiff_t start = 0; start < n && !has_nan; start += FSM_CHUNK) {
            ptrdiff_t len = n - start < FSM_CHUNK ? n - start : FSM_CHUNK;
            double chunk_max;
            if (keep_chunks) {
                chunk_shift[start / FSM_CHUNK] = -INFINITY;
            }
            if (in_float) {
                row_max_float((const float *)(x + start), len, &chunk_max, &has_nan);
            } else {
                FN(row_max)(x + start, len, &chunk_max, &has_nan);
            }
            has_inf |= chunk_max == INFINITY;
            if (has_nan || has_inf || chunk_max == -INFINITY) {
                continue;
            }
            fsm_sum chunk;
            if (in_float) {
                row_exp_sum_float((const float *)(x + start), len, chunk_max,
                                  keep_chunks ? (float *)(out + start) : NULL, sums, NULL, NULL);
                chunk = fsm_reduce_partials_plain(sums);
                if (keep_chunks) {
                    chunk_shift[start / FSM_CHUNK] = (float)chunk_max;
                }
            } else {
                FN(row_exp_sum)(x + start, len, chunk_max, NULL, sums, compensations, NULL, level);
                chunk = fsm_reduce_partials(sums, compensations);
            }
            fsm_combine_chunk(&max, &sum, chunk_max, chunk);
        }
    }

    if (has_nan || has_inf || max == -INFINITY) {
        return FN(special_slice)(op, (const char *)x, sizeof(T), n, (char *)out, sizeof(T),
                                 has_nan, has_inf ? INFINITY : max);
    }

    double log_sum = op == FSM_SOFTMAX ? 0.0 : fsm_log_sum(sum);
    if (op == FSM_SOFTMAX) {
        double scale = 1.0 / (sum.hi + sum.lo);
        if (keep_chunks) {
            for (ptrdiff_t start = 0; start < n; start += FSM_CHUNK) {
                ptrdiff_t len = n - start < FSM_CHUNK ? n - start : FSM_CHUNK;
                double shift = chunk_shift[start / FSM_CHUNK];
                if (shift == -INFINITY) {
                    memset(out + start, 0, (size_t)len * sizeof(T));
                } else {
                    float factor = (float)(fsm_exp_difference(shift, max) * scale);
                    row_scale_float((float *)(out + start), len, factor);
                }
            }
        } else if (in_float && is_long) {
            row_exp_scale_float((const float *)x, n, max, (float)scale, (float *)out);
        } else if (in_float) {
            row_scale_float((float *)out, n, (float)scale);
        } else if (is_long) {
            FN(row_exp_scale)(x, n, max, scale, out);
        } else {
            FN(row_scale)(out, n, scale);
        }
    } else if (op == FSM_LOG_SOFTMAX) {
        FN(row_log)(x, n, max, log_sum, out);
    }
    double lse = max + log_sum;
    if (op == FSM_LOGSUMEXP && fsm_logsumexp_cancels(log_sum, lse, DTYPE)) {
        lse = fsm_logsumexp_precise((const char *)x, sizeof(T), n, max, DTYPE);
    }
    return lse;
}

/* --- Column mode: COLUMN_LANES slices side by side ---------------- */

/*
 * The slices are columns: element i of lane j is at x + i * x_step + j *
 * sizeof(T). Each lane does exactly what slice() does for its column, in the
 * same order, one lane per vector element.
 *
 * Columns step through memory with a large stride, often a power of two that
 * maps every row to the same cache sets. So each chunk of rows is first copied,
 * a row of COLUMN_LANES elements at a time, into a contiguous tile. The
 * maximum and sum passes then run on the tile in cache, and the output is
 * written once.
 */
typedef struct {
    const char *x;
    ptrdiff_t x_step;
    char *out;
    ptrdiff_t out_step;
    ptrdiff_t lanes; /* 1 to COLUMN_LANES */
} FN(column_block);

#define TILE_STEP ((ptrdiff_t)FSM_COLUMN_BYTES)

/* Rows ahead of the current one to prefetch in strided passes. */
#define COLUMN_PREFETCH 32

static inline vd FN(column_load)(const char *row, int v, ptrdiff_t lanes) {
    const T *p = (const T *)row + v * VD_LANES;
    ptrdiff_t count = lanes - v * VD_LANES;
    if (count >= VD_LANES) {
        return VLOAD(p);
    }
    return count > 0 ? FN(load_partial)(p, count, 0.0) : vd_set(0.0);
}

static inline void FN(column_store)(char *row, int v, ptrdiff_t lanes, vd value) {
    T *p = (T *)row + v * VD_LANES;
    ptrdiff_t count = lanes - v * VD_LANES;
    if (count >= VD_LANES) {
        VSTORE(p, value);
    } else if (count > 0) {
        FN(store_partial)(p, count, value);
    }
}

static inline void FN(column_prefetch)(const char *row, ptrdiff_t lanes) {
    for (ptrdiff_t byte = 0; byte < lanes * (ptrdiff_t)sizeof(T); byte += 64) {
        __builtin_prefetch(row + byte);
    }
}

static inline void FN(column_prefetch_write)(char *row, ptrdiff_t lanes) {
    for (ptrdiff_t byte = 0; byte < lanes * (ptrdiff_t)sizeof(T); byte += 64) {
        __builtin_prefetch(row + byte, 1);
    }
}

/* Copy rows [start, start + len) of the block into the tile, zero-padded. */
static void FN(column_copy)(const FN(column_block) * b, ptrdiff_t start, ptrdiff_t len,
                            T *tile) {
    const size_t bytes = (size_t)b->lanes * sizeof(T);
    for (ptrdiff_t i = 0; i < len; i++) {
        const char *row = b->x + (start + i) * b->x_step;
        if (i + COLUMN_PREFETCH < len) {
            FN(column_prefetch)(row + COLUMN_PREFETCH * b->x_step, b->lanes);
        }
        if (b->lanes == COLUMN_LANES) {
            memcpy(tile + i * COLUMN_LANES, row, COLUMN_LANES * sizeof(T));
        } else {
            memset(tile + i * COLUMN_LANES, 0, COLUMN_LANES * sizeof(T));
            memcpy(tile + i * COLUMN_LANES, row, bytes);
        }
    }
}

/* Step 1: per-lane maxima and NaN flags over the first len rows of the tile. */
static void FN(column_max)(const T *tile, ptrdiff_t len, vd *max, vl *nan) {
    for (int v = 0; v < COLUMN_VECTORS; v++) {
        max[v] = vd_set(-INFINITY);
        nan[v] = (vl){0};
    }
    for (ptrdiff_t i = 0; i < len; i++) {
        for (int v = 0; v < COLUMN_VECTORS; v++) {
            vd a = VLOAD(tile + i * COLUMN_LANES + v * VD_LANES);
            nan[v] |= a != a;
            max[v] = vd_max(max[v], a);
        }
    }
}

/*
 * The float32 softmax twin of column_exp_sum_body()'s loop: exponentials in
 * float as in row_exp_sum_float(), plain double partial sums in `s`.
 */
static void FN(column_exp_sum_float)(T *tile, ptrdiff_t len, const vd *m, int store,
                                     vd (*s)[COLUMN_VECTORS]) {
    float *rows = (float *)tile;
    vs shift[COLUMN_VECTORS / 2];

    for (int u = 0; u < COLUMN_VECTORS / 2; u++) {
        shift[u] = vs_narrow(m[2 * u], m[2 * u + 1]);
    }
    for (ptrdiff_t i = 0; i < len; i++) {
        int k = (int)(i % FSM_PARTIALS);
        for (int u = 0; u < COLUMN_VECTORS / 2; u++) {
            float *p = rows + i * COLUMN_LANES + u * VS_LANES;
            vs e = exp_shifted_float(vs_load(p), shift[u]);
            vd low, high;
            vs_widen(e, &low, &high);
            s[k][2 * u] += low;
            s[k][2 * u + 1] += high;
            if (store) {
                vs_store(p, e);
            }
        }
    }
}

/*
 * Step 2: per-lane sums of exp(x - max) over the first len rows of the tile,
 * reduced as fsm_reduce_partials() does, one lane per vector element. With
 * `store`, the exponentials replace the tile's values.
 */
static inline __attribute__((always_inline)) void FN(column_exp_sum_body)(
    T *tile, ptrdiff_t len, const vd *m, int store, vd *sum_hi, vd *sum_lo, int level) {
    vd s[FSM_PARTIALS][COLUMN_VECTORS], c[FSM_PARTIALS][COLUMN_VECTORS];

    for (int v = 0; v < COLUMN_VECTORS; v++) {
        for (int k = 0; k < FSM_PARTIALS; k++) {
            s[k][v] = c[k][v] = vd_set(0.0);
        }
    }
    if (!PRECISE && level == FAST_SUM) {
        FN(column_exp_sum_float)(tile, len, m, store, s);
    } else {
        for (ptrdiff_t i = 0; i < len; i++) {
            int k = (int)(i % FSM_PARTIALS);
            for (int v = 0; v < COLUMN_VECTORS; v++) {
                T *p = tile + i * COLUMN_LANES + v * VD_LANES;
                vd e = FN(exp_shifted)(VLOAD(p), m[v], level);
                FN(accumulate)(&s[k][v], &c[k][v], e, level);
                if (store) {
                    VSTORE(p, e);
                }
            }
        }
    }

    /* The pairwise tree of fsm_reduce_partials() or, for FAST_SUM, of
       fsm_reduce_partials_plain(), lane-wise. */
    for (int width = FSM_PARTIALS / 2; width >= 1; width /= 2) {
        for (int k = 0; k < width; k++) {
            for (int v = 0; v < COLUMN_VECTORS; v++) {
                if (level == FAST_SUM) {
                    s[k][v] += s[k + width][v];
                    continue;
                }
                vd a = s[k][v], b = s[k + width][v];
                vd t = a + b;
                vd b_part = t - a;
                vd a_part = t - b_part;
                vd err = (a - a_part) + (b - b_part);
                s[k][v] = t;
                c[k][v] = (c[k][v] + c[k + width][v]) + err;
            }
        }
    }
    for (int v = 0; v < COLUMN_VECTORS; v++) {
        sum_hi[v] = s[0][v] + c[0][v];
        sum_lo[v] = c[0][v] - (sum_hi[v] - s[0][v]);
    }
}

static void FN(column_exp_sum)(T *tile, ptrdiff_t len, const vd *max, int store, vd *sum_hi,
                               vd *sum_lo, int level) {
    if (level == FAST_SUM) {
        FN(column_exp_sum_body)(tile, len, max, store, sum_hi, sum_lo, FAST_SUM);
    } else if (level == FAST_EXP) {
        FN(column_exp_sum_body)(tile, len, max, store, sum_hi, sum_lo, FAST_EXP);
    } else {
        FN(column_exp_sum_body)(tile, len, max, store, sum_hi, sum_lo, FULL);
    }
}

/* The float32 softmax twin of column_finish(), as in row_scale_float(). */
static void FN(column_finish_float)(const FN(column_block) * b, ptrdiff_t n, int is_long,
                                    const char *source, ptrdiff_t source_step, const vd *m,
                                    const vd *f) {
    vs shift[COLUMN_VECTORS / 2], scale[COLUMN_VECTORS / 2];

    for (int u = 0; u < COLUMN_VECTORS / 2; u++) {
        shift[u] = vs_narrow(m[2 * u], m[2 * u + 1]);
        scale[u] = vs_narrow(f[2 * u], f[2 * u + 1]);
    }
    for (ptrdiff_t i = 0; i < n; i++) {
        const float *source_row = (const float *)(source + i * source_step);
        float *out_row = (float *)(b->out + i * b->out_step);
        if (i + COLUMN_PREFETCH < n) {
            if (is_long) {
                FN(column_prefetch)((const char *)source_row + COLUMN_PREFETCH * source_step,
                                    b->lanes);
            }
            FN(column_prefetch_write)((char *)out_row + COLUMN_PREFETCH * b->out_step, b->lanes);
        }
        for (int u = 0; u < COLUMN_VECTORS / 2; u++) {
            ptrdiff_t count = b->lanes - u * VS_LANES;
            if (count <= 0) {
                break;
            }
            vs value = count >= VS_LANES ? vs_load(source_row + u * VS_LANES)
                                         : load_partial_float(source_row + u * VS_LANES, count,
                                                              0.0f);
            vs result = is_long ? exp_shifted_float(value, shift[u]) * scale[u] : value * scale[u];
            if (count >= VS_LANES) {
                vs_store(out_row + u * VS_LANES, result);
            } else {
                store_partial_float(out_row + u * VS_LANES, count, result);
            }
        }
    }
}

/*
 * Step 3 for every lane at once: the column twin of the end of slice(). Reads
 * `source` rows (the tile's exponentials for short softmax, else x) and writes
 * the block's output rows.
 */
static void FN(column_finish)(fsm_op op, const FN(column_block) * b, ptrdiff_t n, int is_long,
                              const char *source, ptrdiff_t source_step, const vd *m,
                              const vd *f, const vd *l) {
    if (!PRECISE && op == FSM_SOFTMAX) {
        FN(column_finish_float)(b, n, is_long, source, source_step, m, f);
        return;
    }
    for (ptrdiff_t i = 0; i < n; i++) {
        const char *source_row = source + i * source_step;
        char *out_row = b->out + i * b->out_step;
        if (i + COLUMN_PREFETCH < n) {
            if (is_long) {
                FN(column_prefetch)(source_row + COLUMN_PREFETCH * source_step, b->lanes);
            }
            FN(column_prefetch_write)(out_row + COLUMN_PREFETCH * b->out_step, b->lanes);
        }
        for (int v = 0; v < COLUMN_VECTORS; v++) {
            vd value = FN(column_load)(source_row, v, b->lanes);
            vd result;
            if (op == FSM_LOG_SOFTMAX) {
                result = (value - m[v]) - l[v];
            } else if (is_long) {
                result = FN(exp_shifted)(value, m[v], FN(exp_level)(FSM_SOFTMAX)) * f[v];
            } else {
                result = value * f[v];
            }
            FN(column_store)(out_row, v, b->lanes, result);
        }
    }
}

/* The lanes below `lanes` all ones, per vector of the block. */
static inline vl FN(column_lanes_below)(int v, ptrdiff_t lanes) {
    return FN(lanes_below)(lanes - v * VD_LANES);
}

/*
 * Special lanes (NaN, +inf, or a maximum of -inf) and lanes past the block
 * are marked in `special`; special_slice() writes their results last.
 */
static void FN(column_special_lanes)(fsm_op op, const FN(column_block) * b, ptrdiff_t n,
                                     const vl *special, const vl *nan, const vl *inf,
                                     const vd *max) {
    for (int v = 0; v < COLUMN_VECTORS; v++) {
        for (int j = 0; j < VD_LANES; j++) {
            ptrdiff_t lane = v * VD_LANES + j;
            if (lane >= b->lanes || !special[v][j]) {
                continue;
            }
            double lse = FN(special_slice)(op, b->x + lane * sizeof(T), b->x_step, n,
                                           b->out + lane * sizeof(T), b->out_step, nan[v][j] != 0,
                                           inf[v][j] ? INFINITY : max[v][j]);
            if (op == FSM_LOGSUMEXP) {
                *((T *)b->out + lane) = (T)lse;
            }
        }
    }
}

/* Step 3: scale, log_sum and, for logsumexp, the result of every lane. */
static void FN(column_results)(fsm_op op, const FN(column_block) * b, ptrdiff_t n,
                               const vl *special, const vd *max, const vd *sum_hi,
                               const vd *sum_lo, vd *scale, vd *log_sum) {
    for (int v = 0; v < COLUMN_VECTORS; v++) {
        scale[v] = vd_select(special[v], vd_set(0.0), vd_set(1.0) / (sum_hi[v] + sum_lo[v]));
        log_sum[v] = vd_set(0.0);
        if (op == FSM_SOFTMAX) {
            continue;
        }
        for (int j = 0; j < VD_LANES; j++) {
            if (!special[v][j]) {
                fsm_sum sum = {sum_hi[v][j], sum_lo[v][j]};
                log_sum[v][j] = fsm_log_sum(sum);
            }
        }
        if (op != FSM_LOGSUMEXP) {
            continue;
        }
        vd lse = max[v] + log_sum[v];
        for (int j = 0; j < VD_LANES; j++) {
            ptrdiff_t lane = v * VD_LANES + j;
            if (lane >= b->lanes || special[v][j]) {
                continue;
            }
            double value = lse[j];
            if (fsm_logsumexp_cancels(log_sum[v][j], value, DTYPE)) {
                value = fsm_logsumexp_precise(b->x + lane * sizeof(T), b->x_step, n, max[v][j],
                                              DTYPE);
            }
            *((T *)b->out + lane) = (T)value;
        }
    }
}

/* Write rows [start, start + len) of the tile to the block's output rows. */
static void FN(column_write)(const FN(column_block) * b, ptrdiff_t start, ptrdiff_t len,
                             const T *tile) {
    const size_t bytes = (size_t)b->lanes * sizeof(T);
    for (ptrdiff_t i = 0; i < len; i++) {
        char *row = b->out + (start + i) * b->out_step;
        if (i + COLUMN_PREFETCH < len) {
            FN(column_prefetch_write)(row + COLUMN_PREFETCH * b->out_step, b->lanes);
        }
        memcpy(row, tile + i * COLUMN_LANES, bytes);
    }
}

/*
 * The column twin of slice()'s final loop for a long float32 softmax: scale
 * each chunk's stored exponentials by exp(shift - max) / sum, as a float.
 */
static void FN(column_rescale_float)(const FN(column_block) * b, ptrdiff_t n,
                                     const float *chunk_shifts, const vd *max,
                                     const vd *scale) {
    for (ptrdiff_t start = 0; start < n; start += FSM_CHUNK) {
        ptrdiff_t len = n - start < FSM_CHUNK ? n - start : FSM_CHUNK;
        const float *shifts = chunk_shifts + (start / FSM_CHUNK) * COLUMN_LANES;
        vs factor[COLUMN_VECTORS / 2];
        for (int lane = 0; lane < COLUMN_LANES; lane++) {
            int v = lane / VD_LANES, j = lane % VD_LANES;
            double shift = shifts[lane];
            factor[lane / VS_LANES][lane % VS_LANES] =
                shift == -INFINITY ? 0.0f
                                   : (float)(fsm_exp_difference(shift, max[v][j]) * scale[v][j]);
        }
        for (ptrdiff_t i = start; i < start + len; i++) {
            float *row = (float *)(b->out + i * b->out_step);
            if (i + COLUMN_PREFETCH < start + len) {
                FN(column_prefetch_write)((char *)row + COLUMN_PREFETCH * b->out_step, b->lanes);
            }
            for (int u = 0; u < COLUMN_VECTORS / 2; u++) {
                ptrdiff_t count = b->lanes - u * VS_LANES;
                if (count >= VS_LANES) {
                    vs_store(row + u * VS_LANES, vs_load(row + u * VS_LANES) * factor[u]);
                } else if (count > 0) {
                    vs value = load_partial_float(row + u * VS_LANES, count, 0.0f);
                    store_partial_float(row + u * VS_LANES, count, value * factor[u]);
                }
            }
        }
    }
}

/* The whole block: the column twin of slice(). tile has room for FSM_CHUNK rows. */
static void FN(column_slices)(fsm_op op, const FN(column_block) * b, ptrdiff_t n, T *tile) {
    vd max[COLUMN_VECTORS], shift[COLUMN_VECTORS], sum_hi[COLUMN_VECTORS],
        sum_lo[COLUMN_VECTORS];
    vd scale[COLUMN_VECTORS], log_sum[COLUMN_VECTORS];
    vl nan[COLUMN_VECTORS], inf[COLUMN_VECTORS], special[COLUMN_VECTORS];
    int is_long = n > FSM_CHUNK;
    int level = FN(exp_level)(op);
    int keep_chunks = !PRECISE && op == FSM_SOFTMAX && is_long &&
                      (n - 1) / FSM_CHUNK < FSM_STORED_CHUNKS;
    float *chunk_shifts = (float *)((char *)tile + (size_t)FSM_CHUNK * FSM_COLUMN_BYTES);

    if (!is_long) {
        FN(column_copy)(b, 0, n, tile);
        FN(column_max)(tile, n, max, nan);
        for (int v = 0; v < COLUMN_VECTORS; v++) {
            inf[v] = max[v] == vd_set(INFINITY);
            special[v] = nan[v] | inf[v] | (max[v] == vd_set(-INFINITY)) |
                         ~FN(column_lanes_below)(v, b->lanes);
            /* Special lanes are shifted by 0 so that the vector steps stay
               harmless; special_slice() overwrites their results. */
            shift[v] = vd_select(special[v], vd_set(0.0), max[v]);
        }
        FN(column_exp_sum)(tile, n, shift, op == FSM_SOFTMAX, sum_hi, sum_lo, level);
    } else {
        double lane_max[COLUMN_LANES];
        fsm_sum lane_sum[COLUMN_LANES];
        for (int lane = 0; lane < COLUMN_LANES; lane++) {
            lane_max[lane] = -INFINITY;
            lane_sum[lane].hi = lane_sum[lane].lo = 0.0;
        }
        for (int v = 0; v < COLUMN_VECTORS; v++) {
            nan[v] = inf[v] = (vl){0};
        }
        for (ptrdiff_t start = 0; start < n; start += FSM_CHUNK) {
            ptrdiff_t len = n - start < FSM_CHUNK ? n - start : FSM_CHUNK;
            vd chunk_max[COLUMN_VECTORS], chunk_shift[COLUMN_VECTORS];
            vl chunk_nan[COLUMN_VECTORS], usable[COLUMN_VECTORS];
            vd chunk_hi[COLUMN_VECTORS], chunk_lo[COLUMN_VECTORS];
            int any_usable = 0;
            FN(column_copy)(b, start, len, tile);
            FN(column_max)(tile, len, chunk_max, chunk_nan);
            for (int v = 0; v < COLUMN_VECTORS; v++) {
                nan[v] |= chunk_nan[v];
                inf[v] |= chunk_max[v] == vd_set(INFINITY);
                usable[v] = ~(nan[v] | inf[v] | (chunk_max[v] == vd_set(-INFINITY)));
                chunk_shift[v] = vd_select(usable[v], chunk_max[v], vd_set(0.0));
                any_usable |= FN(any_lane)(usable[v]);
            }
            if (keep_chunks) {
                /* As slice(): the exponentials go to the output, and each
                   lane's chunk shift is kept, -inf where the chunk had no
                   finite entry (its exponentials are then 0). */
                float *shifts = chunk_shifts + (start / FSM_CHUNK) * COLUMN_LANES;
                for (int lane = 0; lane < COLUMN_LANES; lane++) {
                    int v = lane / VD_LANES, j = lane % VD_LANES;
                    shifts[lane] = usable[v][j] ? (float)chunk_max[v][j] : -INFINITY;
                }
                FN(column_exp_sum)(tile, len, chunk_shift, 1, chunk_hi, chunk_lo, level);
                FN(column_write)(b, start, len, tile);
            } else if (!any_usable) {
                continue;
            } else {
                FN(column_exp_sum)(tile, len, chunk_shift, 0, chunk_hi, chunk_lo, level);
            }
            for (int lane = 0; lane < b->lanes; lane++) {
                int v = lane / VD_LANES, j = lane % VD_LANES;
                if (usable[v][j]) {
                    fsm_sum chunk = {chunk_hi[v][j], chunk_lo[v][j]};
                    fsm_combine_chunk(&lane_max[lane], &lane_sum[lane], chunk_max[v][j], chunk);
                }
            }
        }
        for (int v = 0; v < COLUMN_VECTORS; v++) {
            max[v] = vd_load_f64(lane_max + v * VD_LANES);
            for (int j = 0; j < VD_LANES; j++) {
                sum_hi[v][j] = lane_sum[v * VD_LANES + j].hi;
                sum_lo[v][j] = lane_sum[v * VD_LANES + j].lo;
            }
            special[v] = nan[v] | inf[v] | (max[v] == vd_set(-INFINITY)) |
                         ~FN(column_lanes_below)(v, b->lanes);
            shift[v] = vd_select(special[v], vd_set(0.0), max[v]);
        }
    }

    FN(column_results)(op, b, n, special, max, sum_hi, sum_lo, scale, log_sum);
    if (keep_chunks) {
        FN(column_rescale_float)(b, n, chunk_shifts, max, scale);
    } else if (op != FSM_LOGSUMEXP) {
        if (is_long) {
            FN(column_finish)(op, b, n, is_long, b->x, b->x_step, shift, scale, log_sum);
        } else {
            FN(column_finish)(op, b, n, is_long, (const char *)tile, TILE_STEP, shift, scale,
                              log_sum);
        }
    }

    int any_special = 0;
    for (int v = 0; v < COLUMN_VECTORS; v++) {
        any_special |= FN(any_lane)(special[v] & FN(column_lanes_below)(v, b->lanes));
    }
    if (any_special) {
        FN(column_special_lanes)(op, b, n, special, nan, inf, max);
    }
}

#undef TILE_STEP

/* --- Entry point -------------------------------------------------------- */

/*
 * Compute work units [begin, end) of `call`. scratch has room for 2 n
 * elements in gather mode, and for FSM_CHUNK rows of COLUMN_LANES elements in
 * column mode.
 */
static int FN(run)(const fsm_call *call, fsm_mode mode, ptrdiff_t begin, ptrdiff_t end,
                   void *scratch) {
    const ptrdiff_t n = call->n;

    for (ptrdiff_t unit = begin; unit < end; unit++) {
        ptrdiff_t x_offset, out_offset, mask_offset, lanes;
        fsm_unit_offsets(call, mode, unit, &x_offset, &out_offset, &mask_offset, &lanes);
        const char *x = call->x + x_offset;
        char *out = call->out + out_offset;

        if (mode == FSM_MODE_COLUMNS) {
            FN(column_block) block = {x, call->x_step, out, call->out_step, lanes};
            FN(column_slices)(call->op, &block, n, (T *)scratch);
        } else if (mode == FSM_MODE_ROWS) {
            FN(next_slice) next = {NULL, NULL};
            if (unit + 1 < end && n <= FSM_CHUNK) {
                ptrdiff_t next_x, next_out, next_mask, next_lanes;
                fsm_unit_offsets(call, mode, unit + 1, &next_x, &next_out, &next_mask,
                                 &next_lanes);
                next.x = (const T *)(call->x + next_x);
                next.out = call->op == FSM_LOGSUMEXP ? NULL : (T *)(call->out + next_out);
            }
            double lse = FN(slice)(call->op, (const T *)x, n,
                                   call->op == FSM_LOGSUMEXP ? NULL : (T *)out,
                                   next.x ? &next : NULL);
            if (call->op == FSM_LOGSUMEXP) {
                *(T *)out = (T)lse;
            }
        } else {
            /* Gather the slice, with excluded entries set to -inf. */
            T *x_copy = (T *)scratch;
            T *out_copy = x_copy + n;
            const unsigned char *mask = call->mask ? call->mask + mask_offset : NULL;
            for (ptrdiff_t i = 0; i < n; i++) {
                T value = *(const T *)(x + i * call->x_step);
                x_copy[i] = mask && !mask[i * call->mask_step] ? (T)-INFINITY : value;
            }
            double lse = FN(slice)(call->op, x_copy, n, out_copy, NULL);
            if (call->op == FSM_LOGSUMEXP) {
                *(T *)out = (T)lse;
            } else {
                for (ptrdiff_t i = 0; i < n; i++) {
                    *(T *)(out + i * call->out_step) = out_copy[i];
                }
            }
        }
    }
    return FSM_OK;
}
