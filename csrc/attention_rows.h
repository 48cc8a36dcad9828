/* Row kernels of the attention block softmax, written once and compiled once
 * per dtype and per SIMD path. attention.c includes this file six times, each
 * time inside a `#pragma GCC target` region and with these names defined:
 *
 *   REAL, INT         element type and the signed integer type of its width
 *   VREAL, VINT       64-byte GNU C vectors of REAL and INT
 *   LANES             elements per vector (64 / sizeof(REAL))
 *   LANE_INDEX        array {0, 1, ..., LANES - 1} of INT
 *   EXP_*             constants of the exponential, see exp_nonpositive
 *   ROWS_FN(name)     name with the dtype and path suffix
 *
 * A 64-byte vector is one AVX-512 register, two AVX2 registers or four SSE2
 * registers, so the same source serves every path.
 */

static inline VREAL ROWS_FN(broadcast)(REAL x)
{
    VREAL v = {0};
    return v + x;
}

static inline VREAL ROWS_FN(select)(VINT take_a, VREAL a, VREAL b)
{
    return (VREAL)(((VINT)a & take_a) | ((VINT)b & ~take_a));
}

/* exp(x) for x <= 0, NaN or -inf, to within about 2 ulp.
 *
 * Cody-Waite reduction x = n ln2 + r with |r| <= ln2 / 2, a Taylor polynomial
 * for exp(r) (degree 7 for float, 13 for double, truncation error below one
 * ulp), then a multiplication by 2^n built in the exponent bits. Arguments
 * below EXP_UNDERFLOW give 0 (their exact results are below the smallest
 * normal number, so subnormal results are flushed). NaN stays NaN because
 * every step propagates it, and -inf falls under the underflow test. */
static inline VREAL ROWS_FN(exp_nonpositive)(VREAL x)
{
    /* Step 1: n = round(x / ln2), read from the low bits of a shifted sum. */
    VREAL shifted = x * EXP_LOG2E + EXP_ROUND_SHIFT;
    VREAL n = shifted - EXP_ROUND_SHIFT;
    VINT n_int = (VINT)shifted - (VINT)ROWS_FN(broadcast)(EXP_ROUND_SHIFT);

    /* Step 2: r = x - n ln2 in two parts, so n * EXP_LN2_HI is exact. */
    VREAL r = x - n * EXP_LN2_HI;
    r = r - n * EXP_LN2_LO;

    /* Step 3: exp(r) by Horner's rule, highest coefficient first. */
    VREAL poly = ROWS_FN(broadcast)(EXP_POLY[0]);
    for (int i = 1; i < EXP_POLY_TERMS; i++) {
        poly = poly * r + EXP_POLY[i];
    }

    /* Step 4: scale by 2^n and flush the underflowing range to 0. */
    VINT exponent_bits = (n_int + EXP_BIAS) << EXP_MANTISSA_BITS;
    VREAL result = poly * (VREAL)exponent_bits;
    VINT underflow = x < EXP_UNDERFLOW;
    return (VREAL)((VINT)result & ~underflow);
}

/* Update one query row with one block of raw scores q . k.
 *
 * On entry scores[0, width) holds q . k for the block's keys (width is a
 * multiple of LANES; entries at or past `limit` are padding or keys beyond the
 * causal limit), bias[0, width) the additive mask (-inf excludes a key), and
 * row_max and row_sum the running maximum and sum of the row.
 *
 * On return scores holds the scaled, masked scores with every excluded key at
 * -inf, probs holds exp(score - new maximum), row_max and row_sum are updated
 * and *alpha is the factor exp(old maximum - new maximum) by which the caller
 * rescales the row's accumulator. Special values follow the softmax rules:
 * a NaN score makes the row NaN, +inf scores share the weight equally, and a
 * row without a finite or +inf score so far keeps zero weight. */
static void ROWS_FN(softmax_block_row)(REAL *scores, REAL *probs,
                                       const REAL *bias, int64_t limit,
                                       int64_t width, REAL scale,
                                       REAL *row_max, REAL *row_sum,
                                       REAL *alpha)
{
    const VREAL neg_inf = ROWS_FN(broadcast)(-INFINITY);
    const VREAL pos_inf = ROWS_FN(broadcast)(INFINITY);
    const VREAL zero = ROWS_FN(broadcast)(0);
    const VREAL one = ROWS_FN(broadcast)(1);
    VINT lane;
    memcpy(&lane, LANE_INDEX, sizeof lane);

    /* Step 1: scale, add the bias, exclude keys, track the max and NaNs. */
    VREAL block_max_v = neg_inf;
    VINT nan_seen = {0};
    for (int64_t c = 0; c < width; c += LANES) {
        VREAL s;
        VREAL b;
        memcpy(&s, scores + c, sizeof s);
        memcpy(&b, bias + c, sizeof b);
        VINT allowed = ((lane + (INT)c) < (INT)limit) & (b != neg_inf);
        s = s * scale + b;
        s = ROWS_FN(select)(allowed, s, neg_inf);
        memcpy(scores + c, &s, sizeof s);
        nan_seen |= (s != s);
        block_max_v = ROWS_FN(select)(s > block_max_v, s, block_max_v);
    }
    REAL block_max = -INFINITY;
    int any_nan = 0;
    for (int i = 0; i < LANES; i++) {
        if (block_max_v[i] > block_max) {
            block_max = block_max_v[i];
        }
        any_nan |= nan_seen[i] != 0;
    }

    /* Step 2: the new running maximum and the accumulator factor. */
    REAL old_max = *row_max;
    REAL new_max;
    if (any_nan || old_max != old_max) {
        new_max = NAN;
    } else {
        new_max = old_max > block_max ? old_max : block_max;
    }

    /* Step 3: the block's probabilities and their sum. */
    VREAL sum_v = zero;
    if (new_max != new_max || new_max == -INFINITY) {
        /* A NaN row stays NaN through alpha; a row with no weight yet adds
         * nothing. Either way the block contributes zeros. */
        for (int64_t c = 0; c < width; c += LANES) {
            memcpy(probs + c, &zero, sizeof zero);
        }
        *alpha = new_max != new_max ? (REAL)NAN : (REAL)1;
    } else if (new_max == INFINITY) {
        for (int64_t c = 0; c < width; c += LANES) {
            VREAL s;
            memcpy(&s, scores + c, sizeof s);
            VREAL p = ROWS_FN(select)(s == pos_inf, one, zero);
            memcpy(probs + c, &p, sizeof p);
            sum_v += p;
        }
        *alpha = old_max == INFINITY ? (REAL)1 : (REAL)0;
    } else {
        for (int64_t c = 0; c < width; c += LANES) {
            VREAL s;
            memcpy(&s, scores + c, sizeof s);
            VREAL p = ROWS_FN(exp_nonpositive)(s - new_max);
            memcpy(probs + c, &p, sizeof p);
            sum_v += p;
        }
        VREAL old_shifted = ROWS_FN(broadcast)(old_max - new_max);
        *alpha = ROWS_FN(exp_nonpositive)(old_shifted)[0];
    }
    REAL block_sum = 0;
    for (int i = 0; i < LANES; i++) {
        block_sum += sum_v[i];
    }

    *row_max = new_max;
    *row_sum = *row_sum * *alpha + block_sum;
}

/* Return 1 if x[0, n) holds only finite numbers. x - x is 0 for finite x and
 * NaN for inf and NaN, so the sum is 0 exactly when every element is finite. */
static int ROWS_FN(row_is_finite)(const REAL *x, int64_t n)
{
    VREAL acc = ROWS_FN(broadcast)(0);
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        VREAL v;
        memcpy(&v, x + i, sizeof v);
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

/* Multiply x[0, n) by factor; n is a multiple of LANES. */
static void ROWS_FN(scale_row)(REAL *x, int64_t n, REAL factor)
{
    for (int64_t i = 0; i < n; i += LANES) {
        VREAL v;
        memcpy(&v, x + i, sizeof v);
        v = v * factor;
        memcpy(x + i, &v, sizeof v);
    }
}
