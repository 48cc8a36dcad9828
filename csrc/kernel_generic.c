/*
 * The portable path: the kernel body compiled for the baseline target of the
 * build, with no intrinsics. It runs on every CPU and is the reference the
 * other paths are tested against.
 */
#include <math.h>
#include <string.h>

#include "kernel.h"
#include "vec.h"
#include "kernel_instances.h"

int fsm_kernel_generic(const fsm_call *call, fsm_mode mode, ptrdiff_t begin, ptrdiff_t end,
                       void *scratch) {
    if (call->dtype == FSM_FLOAT32) {
        return run_f32(call, mode, begin, end, scratch);
    }
    return run_f64(call, mode, begin, end, scratch);
}
