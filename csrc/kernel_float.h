/*
 * float32 softmax computed in float, sixteen lanes at a time: the kernel
 * body's steps for the one case where float arithmetic is accurate enough.
 * Included once per SIMD path, after vec.h.
 *
 * Accuracy. x - max is split exactly into hi + lo (TwoSum), so the argument of
 * exp carries no rounding error. exp(r) comes from a degree-7 Taylor
 * polynomial (truncation below 2^-27) evaluated in float, within about 1 ulp,
 * and the exponentials are summed in double. Each output is exp * (float)(1 / sum),
 * within about 2.5 ulp in all. float32 log_softmax and logsumexp keep the
 * double path: they need the small terms of their sums more exactly.
 *
 * Element i still goes to double partial sum i % FSM_PARTIALS, in row and
 * column modes alike, so both modes give the same bits.
 */
#ifndef FASTSOFTMAX_KERNEL_FLOAT_H
#define FASTSOFTMAX_KERNEL_FLOAT_H

/*
 * exp(x - max) per lane for x <= max and finite max; 0 below x - max = -104,
 * where exp is under half of float's smallest subnormal.
 */
static inline __attribute__((always_inline)) vs exp_shifted_float(vs x, vs max) {
    const vs shifter = vs_set(0x1.8p23f);
    vs d = x - max;

    /* TwoSum: d + lo == x - max exactly. */
    vs max_neg = -max;
    vs x_part = d - max_neg;
    vs max_part = d - x_part;
    vs lo = (x - x_part) + (max_neg - max_part);
    lo = vs_select(d > vs_set(-103.0f), lo, vs_set(0.0f));
    d = vs_max(d, vs_set(-104.0f));

    /* d = k ln2 + r; ln2's high part has 16 bits, so k * hi is exact. */
    vs t = vs_fma(d, vs_set(0x1.715476p0f), shifter);
    vs k = t - shifter;
    vs r = vs_fma(k, vs_set(-0x1.62e4p-1f), d);
    r = vs_fma(k, vs_set(-0x1.7f7d1cp-20f), r);
    r = r + lo;

    vs q = vs_set(0x1.a01a02p-13f);
    q = vs_fma(q, r, vs_set(0x1.6c16c2p-10f));
    q = vs_fma(q, r, vs_set(0x1.111112p-7f));
    q = vs_fma(q, r, vs_set(0x1.555556p-5f));
    q = vs_fma(q, r, vs_set(0x1.555556p-3f));
    q = vs_fma(q, r, vs_set(0.5f));
    vs p = vs_fma(q, r * r, r) + vs_set(1.0f);

    /* 2^k for k in [-150, 0] as 2^k1 * 2^k2, both normal, one rounding. */
    vi k_int = (vi)t - (vi)shifter;
    vi k1 = k_int >> 1;
    vi k2 = k_int - k1;
    return (p * (vs)((k1 + 127) << 23)) * (vs)((k2 + 127) << 23);
}

static inline vs load_partial_float(const float *p, ptrdiff_t count, float fill) {
    float buffer[VS_LANES];
    for (ptrdiff_t i = 0; i < VS_LANES; i++) {
        buffer[i] = i < count ? p[i] : fill;
    }
    return vs_load(buffer);
}

static inline void store_partial_float(float *p, ptrdiff_t count, vs v) {
    float buffer[VS_LANES];
    vs_store(buffer, v);
    memcpy(p, buffer, (size_t)count * sizeof(float));
}

/* Add the sixteen exponentials of e, elements i .. i + 15, to the partials. */
static inline void accumulate_float(vd *sum, vs e) {
    vd low, high;
    vs_widen(e, &low, &high);
    *sum += low;
    *sum += high;
}

/* Step 1: the maximum of x[0:n], and whether any element is NaN. */
static void row_max_float(const float *x, ptrdiff_t n, double *max, int *has_nan) {
    vs m = vs_set(-INFINITY);
    vi nan = {0};
    ptrdiff_t i = 0;

    for (; i + VS_LANES <= n; i += VS_LANES) {
        vs a = vs_load(x + i);
        nan |= a != a;
        m = vs_max(m, a);
    }
    if (i < n) {
        vs a = load_partial_float(x + i, n - i, -INFINITY);
        nan |= a != a;
        m = vs_max(m, a);
    }

    float result = m[0];
    int any_nan = 0;
    for (int j = 0; j < VS_LANES; j++) {
        result = m[j] > result ? m[j] : result;
        any_nan |= nan[j] != 0;
    }
    *max = result;
    *has_nan = any_nan;
}

/*
 * Step 2: the partial sums of exp(x - max) over x[0:n], by i % FSM_PARTIALS,
 * with the exponentials written to `store` unless it is NULL. `next_x` and `next_out`, when not
 * NULL, are prefetched along the way.
 */
static void row_exp_sum_float(const float *x, ptrdiff_t n, double max, float *store,
                              double *sums, const float *next_x, float *next_out) {
    const vs m = vs_set((float)max);
    vd s = vd_set(0.0);
    ptrdiff_t i = 0;

    for (; i + 2 * VS_LANES <= n; i += 2 * VS_LANES) {
        if (next_x) {
            __builtin_prefetch(next_x + i);
            __builtin_prefetch(next_x + i + VS_LANES);
            __builtin_prefetch(next_out + i, 1);
            __builtin_prefetch(next_out + i + VS_LANES, 1);
        }
        vs e0 = exp_shifted_float(vs_load(x + i), m);
        vs e1 = exp_shifted_float(vs_load(x + i + VS_LANES), m);
        accumulate_float(&s, e0);
        accumulate_float(&s, e1);
        if (store) {
            vs_store(store + i, e0);
            vs_store(store + i + VS_LANES, e1);
        }
    }
    /* Past n the padding is -inf, whose exponential adds an exact 0. */
    for (; i < n; i += VS_LANES) {
        ptrdiff_t count = n - i < VS_LANES ? n - i : VS_LANES;
        vs e = exp_shifted_float(load_partial_float(x + i, count, -INFINITY), m);
        accumulate_float(&s, e);
        if (store) {
            store_partial_float(store + i, count, e);
        }
    }

    for (int j = 0; j < VD_LANES; j++) {
        sums[j] = s[j];
    }
}

/* Step 3 for short slices: out[i] *= scale. */
static void row_scale_float(float *out, ptrdiff_t n, float scale) {
    const vs f = vs_set(scale);
    ptrdiff_t i = 0;
    for (; i + VS_LANES <= n; i += VS_LANES) {
        vs_store(out + i, vs_load(out + i) * f);
    }
    if (i < n) {
        store_partial_float(out + i, n - i, load_partial_float(out + i, n - i, 0.0f) * f);
    }
}

/* Step 3 for long slices: out[i] = exp(x[i] - max) * scale. */
static void row_exp_scale_float(const float *x, ptrdiff_t n, double max, float scale,
                                float *out) {
    const vs m = vs_set((float)max), f = vs_set(scale);
    ptrdiff_t i = 0;
    for (; i + VS_LANES <= n; i += VS_LANES) {
        vs_store(out + i, exp_shifted_float(vs_load(x + i), m) * f);
    }
    if (i < n) {
        vs v = load_partial_float(x + i, n - i, -INFINITY);
        store_partial_float(out + i, n - i, exp_shifted_float(v, m) * f);
    }
}

#endif /* FASTSOFTMAX_KERNEL_FLOAT_H */
