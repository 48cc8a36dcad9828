/*
 * The kernel body compiled for AVX-512 (F, DQ, VL, BW): eight doubles per instruction.
 * Only these functions get the target, so the rest of the library runs on any
 * x86-64 CPU; dispatch.c calls them only when the CPU supports the target.
 */
#include <math.h>
#include <string.h>

#include "kernel.h"

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
#endif

#define FSM_ISA_AVX512
#include "vec.h"
#include "kernel_instances.h"

int fsm_kernel_avx512(const fsm_call *call, fsm_mode mode, ptrdiff_t begin, ptrdiff_t end,
                    void *scratch) {
    if (call->dtype == FSM_FLOAT32) {
        return run_f32(call, mode, begin, end, scratch);
    }
    return run_f64(call, mode, begin, end, scratch);
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif
