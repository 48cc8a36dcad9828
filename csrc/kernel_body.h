/*
 * The softmax kernel body, written once and compiled per SIMD path and dtype.
 *
 * The including file defines:
 *   T        the element type, float or double;
 *   FN(name) the name of a function for this element type;
 *   VLOAD, VSTORE  vd_load_f32/vd_store_f32 or their float64 twins;
 *   PRECISE  1 for float64, 0 for float32.
 *
 * Design. Every slice is computed in double precision: find the maximum,
 * exponentiate the shifted values while summing them, then normalise. The
 * float32 path gets its accuracy from the wider type alone. The float64 path
 * adds one step: x - max is split exactly into hi + lo (TwoSum) and lo is
 * fed into the exponential. Both paths
 * compensate their sums (TwoSum per addition, then an error-free reduction), so that the
 * sum minus its leading 1 stays accurate for log_softmax and logsumexp near 0. Error bound, for slices of up to 2^20 elements, against
 * the correctly rounded exact value: softmax and log_softmax within 4 ulp of
 * the output dtype (float32 results are within about 1 ulp, float64 within
 * about 3); logsumexp within 4 ulp unless max + log(sum) cancels, which can
 * only happen for a negative maximum (the absolute error is then about one
 * ulp of the maximum).
 *
 * Slices of at most FSM_CHUNK elements stay in cache: the exponentials are
 * stored in the output and rescaled in place. Longer slices are summed chunk
 * by chunk, each chunk shifted by its own maximum and folded into the running
 * sum (an online normaliser), and the final pass exponentiates again; so x is
 * read from memory twice and the output written once.
 *
 * Element i of a slice always goes to partial sum i % FSM_PARTIALS, in row and
 * column modes alike, so a slice's result is bitwise the same whatever mode,
 * thread or batch computes it.
 *
 * Special values (NaN, +inf, a maximum of -inf) never reach the vector steps:
 * special_slice() handles those slices with the rules stated in the README.
 */

#define ACCS_PER_VECTOR (FSM_PARTIALS / VD_LANES)
#define COLUMN_VECTORS (FSM_COLUMN_LANES / VD_LANES)

/*
 * exp(x - max) in each lane for x <= max and finite max. Lanes with
 * x - max < -746 (x = -inf included) give exactly 0.
 *
 * Range reduction: x - max = k ln2 + r with |r| <= ln2 / 2, exp(r) from its
 * Taylor polynomial of degree 13 (truncation error below 2^-57) and 2^k
 * applied in two halves so that results in the subnormal range are rounded
 * once. float32 needs the full double accuracy too: logsumexp subtracts
 * log(sum) from the maximum and can cancel most of its digits.
 */
static inline vd FN(exp_shifted)(vd x, vd max) {
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
    }
    d = vd_max(d, vd_set(-746.0));

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
    vd q = vd_set(1.0 / 6227020800.0);
    q = vd_fma(q, r, vd_set(1.0 / 479001600.0));
    q = vd_fma(q, r, vd_set(1.0 / 39916800.0));
    q = vd_fma(q, r, vd_set(1.0 / 3628800.0));
    q = vd_fma(q, r, vd_set(1.0 / 362880.0));
    q = vd_fma(q, r, vd_set(1.0 / 40320.0));
    q = vd_fma(q, r, vd_set(1.0 / 5040.0));
    q = vd_fma(q, r, vd_set(1.0 / 720.0));
    q = vd_fma(q, r, vd_set(1.0 / 120.0));
    q = vd_fma(q, r, vd_set(1.0 / 24.0));
    q = vd_fma(q, r, vd_set(1.0 / 6.0));
    q = vd_fma(q, r, vd_set(0.5));
    vd p = vd_fma(q, r * r, r) + vd_set(1.0);

    /* Scale by 2^k, k in [-1076, 0], as 2^k1 * 2^k2 with both halves normal. */
    vl k_int = (vl)t - (vl)shifter;
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
 * lose c when a 1 is added to a small partial sum; log_softmax and logsumexp
 * near 0 need the small terms of 1 + small kept to full precision.
 */
static inline void FN(accumulate)(vd *s, vd *c, vd e) {
    vd t = *s + e;
    vd e_part = t - *s;
    vd s_part = t - e_part;
    *c += (*s - s_part) + (e - e_part);
    *s = t;
}

static inline void FN(accumulate_lanes)(vd *s, vd *c, vd e, vl keep) {
    vd s_new = *s, c_new = *c;
    FN(accumulate)(&s_new, &c_new, e);
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
 * compensations indexed by i % FSM_PARTIALS. With `store`, also write each
 * exponential there.
 */
static void FN(row_exp_sum)(const T *x, ptrdiff_t n, double max, T *store, double *sums,
                            double *compensations) {
    const vd m = vd_set(max);
    vd s0 = vd_set(0.0), s1 = s0, s2 = s0, s3 = s0;
    vd c0 = s0, c1 = s0, c2 = s0, c3 = s0;
    ptrdiff_t i = 0;

    for (; i + FSM_PARTIALS <= n; i += FSM_PARTIALS) {
        vd e0 = FN(exp_shifted)(VLOAD(x + i), m);
        vd e1 = FN(exp_shifted)(VLOAD(x + i + VD_LANES), m);
        vd e2 = FN(exp_shifted)(VLOAD(x + i + 2 * VD_LANES), m);
        vd e3 = FN(exp_shifted)(VLOAD(x + i + 3 * VD_LANES), m);
        FN(accumulate)(&s0, &c0, e0);
        FN(accumulate)(&s1, &c1, e1);
        FN(accumulate)(&s2, &c2, e2);
        FN(accumulate)(&s3, &c3, e3);
        if (store) {
            VSTORE(store + i, e0);
            VSTORE(store + i + VD_LANES, e1);
            VSTORE(store + i + 2 * VD_LANES, e2);
            VSTORE(store + i + 3 * VD_LANES, e3);
        }
    }

    /* The tail: fewer than FSM_PARTIALS elements, lanes past n left alone. */
    vd s[ACCS_PER_VECTOR] = {s0, s1, s2, s3};
    vd c[ACCS_PER_VECTOR] = {c0, c1, c2, c3};
    for (int k = 0; i < n; i += VD_LANES, k++) {
        ptrdiff_t count = n - i < VD_LANES ? n - i : VD_LANES;
        vd v = count == VD_LANES ? VLOAD(x + i) : FN(load_partial)(x + i, count, -INFINITY);
        vd e = FN(exp_shifted)(v, m);
        FN(accumulate_lanes)(&s[k], &c[k], e, FN(lanes_below)(count));
        if (store) {
            FN(store_partial)(store + i, count, e);
        }
    }

    for (int k = 0; k < ACCS_PER_VECTOR; k++) {
        for (int j = 0; j < VD_LANES; j++) {
            sums[k * VD_LANES + j] = s[k][j];
            compensations[k * VD_LANES + j] = c[k][j];
        }
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
        VSTORE(out + i, FN(exp_shifted)(VLOAD(x + i), m) * f);
    }
    if (i < n) {
        vd v = FN(load_partial)(x + i, n - i, -INFINITY);
        FN(store_partial)(out + i, n - i, FN(exp_shifted)(v, m) * f);
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

/* One contiguous slice: softmax or log_softmax into out; returns logsumexp. */
static double FN(slice)(fsm_op op, const T *x, ptrdiff_t n, T *out) {
    double sums[FSM_PARTIALS], compensations[FSM_PARTIALS];
    double max;
    int has_nan = 0, has_inf = 0;
    int is_long = n > FSM_CHUNK;
    fsm_sum sum = {0.0, 0.0};

    if (!is_long) {
        FN(row_max)(x, n, &max, &has_nan);
        has_inf = max == INFINITY;
        if (!has_nan && !has_inf && max != -INFINITY) {
            FN(row_exp_sum)(x, n, max, op == FSM_SOFTMAX ? out : NULL, sums, compensations);
            sum = fsm_reduce_partials(sums, compensations);
        }
    } else {
        max = -INFINITY;
        for (ptrdiff_t start = 0; start < n && !has_nan; start += FSM_CHUNK) {
            ptrdiff_t len = n - start < FSM_CHUNK ? n - start : FSM_CHUNK;
            double chunk_max;
            FN(row_max)(x + start, len, &chunk_max, &has_nan);
            has_inf |= chunk_max == INFINITY;
            if (has_nan || has_inf || chunk_max == -INFINITY) {
                continue;
            }
            FN(row_exp_sum)(x + start, len, chunk_max, NULL, sums, compensations);
            fsm_combine_chunk(&max, &sum, chunk_max, fsm_reduce_partials(sums, compensations));
        }
    }

    if (has_nan || has_inf || max == -INFINITY) {
        return FN(special_slice)(op, (const char *)x, sizeof(T), n, (char *)out, sizeof(T),
                                 has_nan, has_inf ? INFINITY : max);
    }

    double log_sum = fsm_log_sum(sum);
    if (op == FSM_SOFTMAX) {
        double scale = 1.0 / (sum.hi + sum.lo);
        if (is_long) {
            FN(row_exp_scale)(x, n, max, scale, out);
        } else {
            FN(row_scale)(out, n, scale);
        }
    } else if (op == FSM_LOG_SOFTMAX) {
        FN(row_log)(x, n, max, log_sum, out);
    }
    return max + log_sum;
}

/* --- Column mode: FSM_COLUMN_LANES slices side by side ---------------- */

/*
 * The slices are columns: element i of lane j is at x + i * x_step + j *
 * sizeof(T). Each lane does exactly what slice() does for its column, in the
 * same order, one lane per vector element.
 */
typedef struct {
    const char *x;
    ptrdiff_t x_step;
    char *out;
    ptrdiff_t out_step;
    ptrdiff_t lanes; /* 1 to FSM_COLUMN_LANES */
} FN(column_block);

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

/* Step 1: per-lane maxima and NaN flags over rows [start, start + len). */
static void FN(column_max)(const FN(column_block) * b, ptrdiff_t start, ptrdiff_t len,
                           double *max, int *has_nan) {
    vd m[COLUMN_VECTORS];
    vl nan[COLUMN_VECTORS];
    for (int v = 0; v < COLUMN_VECTORS; v++) {
        m[v] = vd_set(-INFINITY);
        nan[v] = (vl){0};
    }
    for (ptrdiff_t i = start; i < start + len; i++) {
        const char *row = b->x + i * b->x_step;
        for (int v = 0; v < COLUMN_VECTORS; v++) {
            vd a = FN(column_load)(row, v, b->lanes);
            nan[v] |= a != a;
            m[v] = vd_max(m[v], a);
        }
    }
    for (int v = 0; v < COLUMN_VECTORS; v++) {
        for (int j = 0; j < VD_LANES; j++) {
            max[v * VD_LANES + j] = m[v][j];
            has_nan[v * VD_LANES + j] = nan[v][j] != 0;
        }
    }
}

/* Step 2: per-lane sums of exp(x - max) over rows [start, start + len). */
static void FN(column_exp_sum)(const FN(column_block) * b, ptrdiff_t start, ptrdiff_t len,
                               const double *max, int store, fsm_sum *sum) {
    vd s[FSM_PARTIALS][COLUMN_VECTORS], c[FSM_PARTIALS][COLUMN_VECTORS];
    vd m[COLUMN_VECTORS];

    for (int v = 0; v < COLUMN_VECTORS; v++) {
        m[v] = vd_load_f64(max + v * VD_LANES);
        for (int k = 0; k < FSM_PARTIALS; k++) {
            s[k][v] = c[k][v] = vd_set(0.0);
        }
    }
    for (ptrdiff_t i = 0; i < len; i++) {
        const char *row = b->x + (start + i) * b->x_step;
        int k = (int)(i % FSM_PARTIALS);
        for (int v = 0; v < COLUMN_VECTORS; v++) {
            vd e = FN(exp_shifted)(FN(column_load)(row, v, b->lanes), m[v]);
            FN(accumulate)(&s[k][v], &c[k][v], e);
            if (store) {
                FN(column_store)(b->out + (start + i) * b->out_step, v, b->lanes, e);
            }
        }
    }

    double sums[FSM_PARTIALS], compensations[FSM_PARTIALS];
    for (ptrdiff_t lane = 0; lane < b->lanes; lane++) {
        int v = (int)(lane / VD_LANES), j = (int)(lane % VD_LANES);
        for (int k = 0; k < FSM_PARTIALS; k++) {
            sums[k] = s[k][v][j];
            compensations[k] = c[k][v][j];
        }
        sum[lane] = fsm_reduce_partials(sums, compensations);
    }
}

/* Step 3 for every lane at once: the column twin of the end of slice(). */
static void FN(column_finish)(fsm_op op, const FN(column_block) * b, ptrdiff_t n, int is_long,
                              const double *shift, const double *scale,
                              const double *log_sum) {
    vd m[COLUMN_VECTORS], f[COLUMN_VECTORS], l[COLUMN_VECTORS];
    for (int v = 0; v < COLUMN_VECTORS; v++) {
        m[v] = vd_load_f64(shift + v * VD_LANES);
        f[v] = vd_load_f64(scale + v * VD_LANES);
        l[v] = vd_load_f64(log_sum + v * VD_LANES);
    }
    for (ptrdiff_t i = 0; i < n; i++) {
        const char *x_row = b->x + i * b->x_step;
        char *out_row = b->out + i * b->out_step;
        for (int v = 0; v < COLUMN_VECTORS; v++) {
            vd result;
            if (op == FSM_LOG_SOFTMAX) {
                result = (FN(column_load)(x_row, v, b->lanes) - m[v]) - l[v];
            } else if (is_long) {
                result = FN(exp_shifted)(FN(column_load)(x_row, v, b->lanes), m[v]) * f[v];
            } else {
                result = FN(column_load)(out_row, v, b->lanes) * f[v];
            }
            FN(column_store)(out_row, v, b->lanes, result);
        }
    }
}

/* The whole block: the column twin of slice(). */
static void FN(column_slices)(fsm_op op, const FN(column_block) * b, ptrdiff_t n) {
    double max[FSM_COLUMN_LANES], shift[FSM_COLUMN_LANES];
    double chunk_max[FSM_COLUMN_LANES];
    double scale[FSM_COLUMN_LANES], log_sum[FSM_COLUMN_LANES];
    int has_nan[FSM_COLUMN_LANES] = {0}, has_inf[FSM_COLUMN_LANES] = {0};
    int chunk_nan[FSM_COLUMN_LANES], usable[FSM_COLUMN_LANES];
    fsm_sum sum[FSM_COLUMN_LANES], chunk_sum[FSM_COLUMN_LANES];
    int is_long = n > FSM_CHUNK;

    if (!is_long) {
        FN(column_max)(b, 0, n, max, has_nan);
        for (int lane = 0; lane < FSM_COLUMN_LANES; lane++) {
            has_inf[lane] = max[lane] == INFINITY;
            /* Special lanes are shifted by 0 so that the vector steps stay
               harmless; special_slice() overwrites their results. */
            shift[lane] = has_nan[lane] || !isfinite(max[lane]) ? 0.0 : max[lane];
        }
        FN(column_exp_sum)(b, 0, n, shift, op == FSM_SOFTMAX, sum);
    } else {
        for (int lane = 0; lane < FSM_COLUMN_LANES; lane++) {
            max[lane] = -INFINITY;
            sum[lane].hi = sum[lane].lo = 0.0;
        }
        for (ptrdiff_t start = 0; start < n; start += FSM_CHUNK) {
            ptrdiff_t len = n - start < FSM_CHUNK ? n - start : FSM_CHUNK;
            int any_usable = 0;
            FN(column_max)(b, start, len, chunk_max, chunk_nan);
            for (int lane = 0; lane < FSM_COLUMN_LANES; lane++) {
                has_nan[lane] |= chunk_nan[lane];
                has_inf[lane] |= chunk_max[lane] == INFINITY;
                usable[lane] = !has_nan[lane] && !has_inf[lane] && chunk_max[lane] != -INFINITY;
                shift[lane] = usable[lane] ? chunk_max[lane] : 0.0;
                any_usable |= usable[lane];
            }
            if (!any_usable) {
                continue;
            }
            FN(column_exp_sum)(b, start, len, shift, 0, chunk_sum);
            for (int lane = 0; lane < b->lanes; lane++) {
                if (usable[lane]) {
                    fsm_combine_chunk(&max[lane], &sum[lane], chunk_max[lane], chunk_sum[lane]);
                }
            }
        }
    }

    int special[FSM_COLUMN_LANES];
    for (int lane = 0; lane < FSM_COLUMN_LANES; lane++) {
        special[lane] = lane >= b->lanes || has_nan[lane] || has_inf[lane] ||
                        max[lane] == -INFINITY;
        shift[lane] = special[lane] ? 0.0 : max[lane];
        scale[lane] = special[lane] ? 0.0 : 1.0 / (sum[lane].hi + sum[lane].lo);
        log_sum[lane] = special[lane] ? 0.0 : fsm_log_sum(sum[lane]);
    }

    if (op == FSM_LOGSUMEXP) {
        for (int lane = 0; lane < b->lanes; lane++) {
            *((T *)b->out + lane) = (T)(max[lane] + log_sum[lane]);
        }
    } else {
        FN(column_finish)(op, b, n, is_long, shift, scale, log_sum);
    }

    for (int lane = 0; lane < b->lanes; lane++) {
        if (!special[lane]) {
            continue;
        }
        double lse = FN(special_slice)(op, b->x + lane * sizeof(T), b->x_step, n,
                                       b->out + lane * sizeof(T), b->out_step, has_nan[lane],
                                       has_inf[lane] ? INFINITY : max[lane]);
        if (op == FSM_LOGSUMEXP) {
            *((T *)b->out + lane) = (T)lse;
        }
    }
}

/* --- Entry point -------------------------------------------------------- */

/* Compute work units [begin, end) of `call`; scratch holds 2 n elements. */
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
            FN(column_slices)(call->op, &block, n);
        } else if (mode == FSM_MODE_ROWS) {
            double lse = FN(slice)(call->op, (const T *)x, n,
                                   call->op == FSM_LOGSUMEXP ? NULL : (T *)out);
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
            double lse = FN(slice)(call->op, x_copy, n, out_copy);
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
