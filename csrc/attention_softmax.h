/* Block softmax kernels of the attention, written once and compiled once per
 * dtype and per SIMD path. attention.c includes this file six times, each
 * time inside a `#pragma GCC target` region and with these names defined:
 *
 *   REAL, INT         element type and the signed integer type of its width
 *   VREAL, VINT       64-byte GNU C vectors of REAL and INT
 *   LANES             elements per vector (64 / sizeof(REAL))
 *   LANE_INDEX        array {0, 1, ..., LANES - 1} of INT
 *   EXP_*             constants of the exponential, see exp_nonpositive
 *   SOFTMAX_FN(name)  name with the dtype and path suffix; the includer also
 *                     defines SOFTMAX_FN(multiply_add)(a, b, c) = a * b + c
 *
 * A 64-byte vector is one AVX-512 register, two AVX2 registers or four SSE2
 * registers, so the same source serves every path.
 *
 * Layout. A block of scores is stored keys x rows: element (c, r) at
 * c * rows_padded + r, where rows_padded is a multiple of LANES. A vector
 * thus contains LANES query rows for one key, and the per-row maximum, sum and
 * rescaling factor are lane-wise operations with no horizontal reduction.
 * The lanes past the block's last row hold values that are never read back.
 */

static inline VREAL SOFTMAX_FN(broadcast)(REAL x)
{
    VREAL v = {0};
    return v + x;
}

static inline VREAL SOFTMAX_FN(select)(VINT take_a, VREAL a, VREAL b)
{
    return (VREAL)(((VINT)a & take_a) | ((VINT)b & ~take_a));
}

static inline VREAL SOFTMAX_FN(load)(const REAL *p)
{
    VREAL v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void SOFTMAX_FN(store)(REAL *p, VREAL v)
{
    memcpy(p, &v, sizeof v);
}

/* Lane-wise maximum that keeps a NaN of either argument: b replaces a when
 * it is larger or NaN, and nothing is larger than a NaN in a. */
static inline VREAL SOFTMAX_FN(max_keep_nan)(VREAL a, VREAL b)
{
    return SOFTMAX_FN(select)((b > a) | (b != b), b, a);
}

/* exp(x) for x <= 0, NaN or -inf, to within about 2 ulp.
 *
 * Cody-Waite reduction x = n ln2 + r with |r| <= ln2 / 2, a Taylor polynomial
 * for exp(r) (degree 7 for float, 13 for double, truncation error below one
 * ulp), then a multiplication by 2^n built in the exponent bits. Arguments
 * below EXP_UNDERFLOW give 0 (their exact results are below the smallest
 * normal number, so subnormal results are flushed). NaN stays NaN because
 * every step propagates it, and -inf falls under the underflow test. */
static inline VREAL SOFTMAX_FN(exp_nonpositive)(VREAL x)
{
    const VREAL round_shift = SOFTMAX_FN(broadcast)(EXP_ROUND_SHIFT);

    /* Step 1: n = round(x / ln2), read from the low bits of a shifted sum. */
    VREAL shifted = SOFTMAX_FN(multiply_add)(
        x, SOFTMAX_FN(broadcast)(EXP_LOG2E), round_shift);
    VREAL n = shifted - EXP_ROUND_SHIFT;
    VINT n_int = (VINT)shifted - (VINT)round_shift;

    /* Step 2: r = x - n ln2 in two parts, so n * EXP_LN2_HI is exact. */
    VREAL r =
        SOFTMAX_FN(multiply_add)(-n, SOFTMAX_FN(broadcast)(EXP_LN2_HI), x);
    r = SOFTMAX_FN(multiply_add)(-n, SOFTMAX_FN(broadcast)(EXP_LN2_LO), r);

    /* Step 3: exp(r) by Horner's rule, highest coefficient first. */
    VREAL poly = SOFTMAX_FN(broadcast)(EXP_POLY[0]);
#pragma GCC unroll 16
    for (int i = 1; i < EXP_POLY_TERMS; i++) {
        poly = SOFTMAX_FN(multiply_add)(poly, r,
                                        SOFTMAX_FN(broadcast)(EXP_POLY[i]));
    }

    /* Step 4: scale by 2^n and flush the underflowing range to 0. */
    VINT exponent_bits = (n_int + EXP_BIAS) << EXP_MANTISSA_BITS;
    VREAL result = poly * (VREAL)exponent_bits;
    VINT underflow = x < EXP_UNDERFLOW;
    return (VREAL)((VINT)result & ~underflow);
}

/* Update the running softmax state of a block of query rows with one block
 * of keys.
 *
 * On entry scores (keys x rows_padded) contains the raw products q . k and bias
 * the additive mask in the same layout (-inf excludes a key), or bias is NULL
 * without a mask. Row r may see key c only when r >= c + causal_shift.
 * row_max and row_sum (rows_padded each) hold the running maximum and sum.
 *
 * On return scores contains the scaled, masked scores with every excluded key
 * at -inf, probs contains exp(score - new maximum), row_max and row_sum are
 * updated, and alpha contains exp(old maximum - new maximum), by which the
 * caller rescales each row's accumulator. Special values follow the softmax
 * rules: a NaN score makes the row NaN, +inf scores share the weight equally,
 * and a row with no score above -inf so far keeps zero weight. */
static void SOFTMAX_FN(softmax_block)(REAL *scores, REAL *probs,
                                      const REAL *bias, int64_t keys,
                                      int64_t rows_padded, int64_t causal_shift,
                                      REAL scale, REAL *row_max, REAL *row_sum,
                                      REAL *alpha)
{
    const VREAL neg_inf = SOFTMAX_FN(broadcast)(-INFINITY);
    const VREAL pos_inf = SOFTMAX_FN(broadcast)(INFINITY);
    const VREAL zero = SOFTMAX_FN(broadcast)(0);
    const VREAL one = SOFTMAX_FN(broadcast)(1);
    VINT lane;
    memcpy(&lane, LANE_INDEX, sizeof lane);

    for (int64_t r0 = 0; r0 < rows_padded; r0 += LANES) {
        VINT row = lane + (INT)r0;

        /* Step 1: scale, add the bias, exclude keys, take the maximum. */
        VREAL block_max = neg_inf;
        for (int64_t c = 0; c < keys; c++) {
            REAL *cell = scores + c * rows_padded + r0;
            VREAL s = SOFTMAX_FN(load)(cell) * scale;
            VINT allowed = row >= (INT)(c + causal_shift);
            if (bias != NULL) {
                VREAL b = SOFTMAX_FN(load)(bias + c * rows_padded + r0);
                allowed &= b != neg_inf;
                s = s + b;
            }
            s = SOFTMAX_FN(select)(allowed, s, neg_inf);
            SOFTMAX_FN(store)(cell, s);
            block_max = SOFTMAX_FN(max_keep_nan)(block_max, s);
        }

        /* Step 2: the new maximum and the factor for the old accumulator.
         * Rows whose maximum is -inf (nothing seen) or +inf need fixed
         * values where exp would meet inf - inf. */
        VREAL old_max = SOFTMAX_FN(load)(row_max + r0);
        VREAL new_max = SOFTMAX_FN(max_keep_nan)(old_max, block_max);
        VINT none_seen = new_max == neg_inf;
        VINT infinite = new_max == pos_inf;
        VREAL factor = SOFTMAX_FN(exp_nonpositive)(old_max - new_max);
        VREAL infinite_factor =
            SOFTMAX_FN(select)(old_max == pos_inf, one, zero);
        factor = SOFTMAX_FN(select)(infinite, infinite_factor, factor);
        factor = SOFTMAX_FN(select)(none_seen, one, factor);

        /* Step 3: probabilities and their sum. With a +inf maximum the +inf
         * scores get 1 each and the rest 0; the selects for that are
         * skipped when no lane needs them. */
        VINT special = none_seen | infinite;
        int any_special = 0;
        for (int i = 0; i < LANES; i++) {
            any_special |= special[i] != 0;
        }
        VREAL block_sum = zero;
        for (int64_t c = 0; c < keys; c++) {
            VREAL s = SOFTMAX_FN(load)(scores + c * rows_padded + r0);
            VREAL p = SOFTMAX_FN(exp_nonpositive)(s - new_max);
            if (any_special) {
                VREAL infinite_p = SOFTMAX_FN(select)(s == pos_inf, one, zero);
                p = SOFTMAX_FN(select)(infinite, infinite_p, p);
                p = SOFTMAX_FN(select)(none_seen, zero, p);
            }
            SOFTMAX_FN(store)(probs + c * rows_padded + r0, p);
            block_sum += p;
        }

        VREAL old_sum = SOFTMAX_FN(load)(row_sum + r0);
        SOFTMAX_FN(store)(row_max + r0, new_max);
        SOFTMAX_FN(store)(row_sum + r0, old_sum * factor + block_sum);
        SOFTMAX_FN(store)(alpha + r0, factor);
    }
}

/* Return 1 if x[0, n) contains only finite numbers. x - x is 0 for finite x and
 * NaN for inf and NaN, so the sum is 0 exactly when every element is finite. */
static int SOFTMAX_FN(row_is_finite)(const REAL *x, int64_t n)
{
    VREAL acc = SOFTMAX_FN(broadcast)(0);
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        VREAL v = SOFTMAX_FN(load)(x + i);
        acc += v - v;
    }
    REAL total = 0;
    for (; i < n; i++) {
        total += x[i] - x[i];
    }
    for (int l = 0; l < LANES; l++) {
        total += acc[l];
    }
    return total == 0;
}

/* Multiply row r of acc (rows x width, width a multiple of LANES) by
 * factor[r], skipping rows whose factor is 1. */
static void SOFTMAX_FN(rescale_rows)(REAL *acc, int64_t rows, int64_t width,
                                     const REAL *factor)
{
    for (int64_t r = 0; r < rows; r++) {
        REAL f = factor[r];
        if (f == 1) {
            continue;
        }
        REAL *acc_row = acc + r * width;
        for (int64_t i = 0; i < width; i += LANES) {
            SOFTMAX_FN(store)(acc_row + i, SOFTMAX_FN(load)(acc_row + i) * f);
        }
    }
}

/* Divide row r of acc (rows x width, width a multiple of LANES) by
 * row_sum[r], or set it to zeros when row_max[r] is -inf (no key seen). */
static void SOFTMAX_FN(normalize_rows)(REAL *acc, int64_t rows, int64_t width,
                                       const REAL *row_max, const REAL *row_sum)
{
    for (int64_t r = 0; r < rows; r++) {
        REAL *acc_row = acc + r * width;
        if (row_max[r] == -INFINITY) {
            memset(acc_row, 0, (size_t)width * sizeof(REAL));
            continue;
        }
        REAL l = row_sum[r];
        for (int64_t i = 0; i < width; i += LANES) {
            SOFTMAX_FN(store)(acc_row + i, SOFTMAX_FN(load)(acc_row + i) / l);
        }
    }
}
