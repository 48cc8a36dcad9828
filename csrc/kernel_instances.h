/*
 * The kernel body for float32 and float64, included once per SIMD path by
 * kernel_generic.c, kernel_avx2.c and kernel_avx512.c after they set the
 * target. Defines static run_f32() and run_f64().
 */
#ifndef FASTSOFTMAX_KERNEL_INSTANCES_H
#define FASTSOFTMAX_KERNEL_INSTANCES_H

#define T float
#define FN(name) name##_f32
#define VLOAD vd_load_f32
#define VSTORE vd_store_f32
#define PRECISE 0
#include "kernel_body.h"
#undef T
#undef FN
#undef VLOAD
#undef VSTORE
#undef PRECISE

#define T double
#define FN(name) name##_f64
#define VLOAD vd_load_f64
#define VSTORE vd_store_f64
#define PRECISE 1
#include "kernel_body.h"
#undef T
#undef FN
#undef VLOAD
#undef VSTORE
#undef PRECISE

#endif /* FASTSOFTMAX_KERNEL_INSTANCES_H */
