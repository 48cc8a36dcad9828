/*
 * Vectors of eight doubles for the kernel body, written once with GNU C
 * vector extensions and compiled once per SIMD path: the including file sets
 * the target (AVX-512, AVX2 with FMA, or none) before it includes this header.
 *
 * Plain arithmetic comes from the vector extensions. The two operations they
 * lack, fused multiply-add and maximum, use intrinsics where the path has them.
 * The generic path multiplies and adds in two roundings instead; the build
 * turns off floating-point contraction, so every path computes exactly what
 * its source says.
 */
#ifndef FASTSOFTMAX_VEC_H
#define FASTSOFTMAX_VEC_H

#include <string.h>

#if defined(FSM_ISA_AVX512) || defined(FSM_ISA_AVX2)
#include <immintrin.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
/* GCC notes that 64-byte vectors change the calling convention without
   AVX-512; every function taking them here is static and inlined. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define VD_LANES 8

typedef double vd __attribute__((vector_size(64)));
typedef long long vl __attribute__((vector_size(64)));
typedef float vf __attribute__((vector_size(32)));

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

#if defined(FSM_ISA_AVX512)

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

static inline vd vd_fma(vd a, vd b, vd c) { return a * b + c; }

static inline vd vd_max(vd a, vd b) { return vd_select(a > b, a, b); }

#endif

#endif /* FASTSOFTMAX_VEC_H */
