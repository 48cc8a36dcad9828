/*
 * The kernel body for float32 and float64, included once per SIMD path by
 * kernel_generic.c, kernel_avx2.c and kernel_avx512.c after they set the
 * target. Defines static run_f32() and run_f64(); float32 softmax also uses
 * the float steps of kernel_float.h.
 */
#ifndef FASTSOFTMAX_KERNEL_INSTANCES_H
#define FASTSOFTMAX_KERNEL_INSTANCES_H

#include "kernel_float.h"

#define T float
#define FN(name) name##_f32
#define VLOAD vd_load_f32
#define VSTORE vd_store_f32
#define PRECISE 0
#define DTYPE FSM_FLOAT32
#include "kernel_body.h"
#undef T
#undef FN
#undef VLOAD
#undef VSTORE
#undef PRECISE
#undef DTYPE

#define T double
#define FN(name) name##_f64
#define VLOAD vd_load_f64
#define VSTORE vd_store_f64
#define PRECISE 1
#define DTYPE FSM_FLOAT64
#include "kernel_body.h"
#undef T
#undef FN
#undef VLOAD
#undef VSTORE
#undef PRECISE
#undef DTYPE

#endif /* FASTSOFTMAX_KERNEL_INSTANCES_H */
