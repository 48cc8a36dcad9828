/*
 * Vectors of eight doubles for the kernel body, written once with GNU C
 * vector extensions and compiled once per SIMD path: the including file sets
 * the target (AVX-512, AVX2 with FMA, or none) before it includes this header.
 *
 * Plain arithmetic comes from the vector extensions. The two operations they
 * lack, fused multiply-add and maximum, use intrinsics where the path has them.
 * The generic path multiplies and adds in two roundings instead. The build
 * turns off floating-point contraction, so every path computes exactly the
 * operations its source spells out.
 */
#ifndef FASTSOFTMAX_VEC_H
#define FASTSOFTMAX_VEC_H

#include <string.h>

#if defined(FSM_ISA_AVX512) || defined(FSM_ISA_AVX2)
#include <immintrin.h>
#endif

/* GCC and Clang note that 64-byte vectors change the calling convention
   without AVX-512; every function taking them here is static and inlined. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define VD_LANES 8

typedef double vd __attribute__((vector_size(64)));
typedef long long vl __attribute__((vector_size(64)));
typedef float vf __attribute__((vector_size(32)));

/* Sixteen floats, for the float32 softmax path that computes in float. */
#define VS_LANES 16
typedef float vs __attribute__((vector_size(64)));
typedef int vi __attribute__((vector_size(64)));

static inline vd vd_set(double a) { return (vd){a, a, a, a, a, a, a, a}; }

static inline vd vd_load_f64(const double *p) {
    vd v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline vd vd_load_f32(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, vd);
}

static inline void vd_store_f64(double *p, vd v) { memcpy(p, &v, sizeof v); }

static inline void vd_store_f32(float *p, vd v) {
    vf f = __builtin_convertvector(v, vf);
    memcpy(p, &f, sizeof f);
}

/* Lanes of a where `mask` is all ones, lanes of b where it is zero. */
static inline vd vd_select(vl mask, vd a, vd b) {
    return (vd)((mask & (vl)a) | (~mask & (vl)b));
}

static inline vs vs_set(float a) {
    return (vs){a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a};
}

static inline vs vs_load(const float *p) {
    vs v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vs_store(float *p, vs v) { memcpy(p, &v, sizeof v); }

static inline vs vs_select(vi mask, vs a, vs b) {
    return (vs)((mask & (vi)a) | (~mask & (vi)b));
}

/* The low and high eight lanes of v as doubles. */
static inline void vs_widen(vs v, vd *low, vd *high) {
    union {
        vs whole;
        vf half[2];
    } u = {v};
    *low = __builtin_convertvector(u.half[0], vd);
    *high = __builtin_convertvector(u.half[1], vd);
}

/* Sixteen floats from two vectors of eight doubles, rounded. */
static inline vs vs_narrow(vd low, vd high) {
    union {
        vs whole;
        vf half[2];
    } u;
    u.half[0] = __builtin_convertvector(low, vf);
    u.half[1] = __builtin_convertvector(high, vf);
    return u.whole;
}

#if defined(FSM_ISA_AVX512)

static inline vs vs_fma(vs a, vs b, vs c) {
    return (vs)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
}

static inline vs vs_max(vs a, vs b) { return (vs)_mm512_max_ps((__m512)a, (__m512)b); }

static inline vd vd_fma(vd a, vd b, vd c) {
    return (vd)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
}

/* The larger of a and b; b where either is NaN. */
static inline vd vd_max(vd a, vd b) { return (vd)_mm512_max_pd((__m512d)a, (__m512d)b); }

#elif defined(FSM_ISA_AVX2)

typedef union {
    vd whole;
    __m256d half[2];
} vd_halves;

typedef union {
    vs whole;
    __m256 half[2];
} vs_halves;

static inline vs vs_fma(vs a, vs b, vs c) {
    vs_halves ua = {a}, ub = {b}, uc = {c}, r;
    r.half[0] = _mm256_fmadd_ps(ua.half[0], ub.half[0], uc.half[0]);
    r.half[1] = _mm256_fmadd_ps(ua.half[1], ub.half[1], uc.half[1]);
    return r.whole;
}

static inline vs vs_max(vs a, vs b) {
    vs_halves ua = {a}, ub = {b}, r;
    r.half[0] = _mm256_max_ps(ua.half[0], ub.half[0]);
    r.half[1] = _mm256_max_ps(ua.half[1], ub.half[1]);
    return r.whole;
}

static inline vd vd_fma(vd a, vd b, vd c) {
    vd_halves ua = {a}, ub = {b}, uc = {c}, r;
    r.half[0] = _mm256_fmadd_pd(ua.half[0], ub.half[0], uc.half[0]);
    r.half[1] = _mm256_fmadd_pd(ua.half[1], ub.half[1], uc.half[1]);
    return r.whole;
}

static inline vd vd_max(vd a, vd b) {
    vd_halves ua = {a}, ub = {b}, r;
    r.half[0] = _mm256_max_pd(ua.half[0], ub.half[0]);
    r.half[1] = _mm256_max_pd(ua.half[1], ub.half[1]);
    return r.whole;
}

#else

static inline vs vs_fma(vs a, vs b, vs c) { return a * b + c; }

static inline vs vs_max(vs a, vs b) { return vs_select(a > b, a, b); }

static inline vd vd_fma(vd a, vd b, vd c) { return a * b + c; }

static inline vd vd_max(vd a, vd b) { return vd_select(a > b, a, b); }

#endif

#endif /* FASTSOFTMAX_VEC_H */
