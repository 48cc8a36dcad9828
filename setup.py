"""Build the C kernels and the Cython bridge.

OpenMP is optional: when the compiler cannot compile a small OpenMP program,
the extension is built without it and runs on one thread. The build then
prints a warning, which pip shows with -v, and get_config()["openmp"] is False.
Setting FASTSOFTMAX_NO_OPENMP=1 builds without OpenMP on purpose. SIMD paths are compiled per function with target attributes
and chosen at run time, so no ``-march`` flag is used.
"""

import os
import sys
import tempfile
import textwrap

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNEL_SOURCES = [
    "csrc/dispatch.c",
    "csrc/kernel_generic.c",
    "csrc/kernel_avx2.c",
    "csrc/kernel_avx512.c",
]

# -ffp-contract=off keeps every multiply-add as written, so the vector body and
# its scalar tail round alike; fused multiply-adds are spelled out where wanted.
BASE_FLAGS = ["-O2", "-std=gnu11", "-ffp-contract=off", "-fno-math-errno"]

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    int main(void) {
        int n = 0;
    #pragma omp parallel reduction(+ : n)
        n += omp_get_num_threads() > 0;
        return n > 0 ? 0 : 1;
    }
    """
)


def compiler_has_openmp(compiler):
    """Return True if ``compiler`` compiles an OpenMP program with -fopenmp."""
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(OPENMP_PROBE)
        try:
            compiler.compile([source], output_dir=tmp, extra_postargs=["-fopenmp"])
        except Exception:  # noqa: BLE001 - any failure means no OpenMP
            return False
    return True


class BuildExt(build_ext):
    """Add OpenMP flags when the compiler supports them."""

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            sys.exit("fastsoftmax needs GCC or Clang: the kernels use GNU C vectors")
        use_openmp = os.environ.get("FASTSOFTMAX_NO_OPENMP", "") == ""
        if use_openmp and not compiler_has_openmp(self.compiler):
            use_openmp = False
            print(
                "WARNING: the C compiler cannot build OpenMP programs; fastsoftmax "
                "is built without threads and every call runs on one thread.",
                file=sys.stderr,
            )
        for ext in self.extensions:
            ext.extra_compile_args = BASE_FLAGS + list(ext.extra_compile_args)
            if use_openmp:
                ext.extra_compile_args.append("-fopenmp")
                ext.extra_link_args = list(ext.extra_link_args) + ["-fopenmp"]
        super().build_extensions()


extensions = [
    Extension(
        "fastsoftmax._core",
        sources=["src/fastsoftmax/_core.pyx", *KERNEL_SOURCES],
        include_dirs=["csrc"],
        depends=["csrc/fastsoftmax.h", "csrc/kernel_body.h", "csrc/vec.h"],
    ),
    Extension(
        "fastsoftmax._attention",
        sources=["src/fastsoftmax/_attention.pyx", "csrc/attention.c"],
        include_dirs=["csrc"],
        depends=[
            "csrc/attention.h",
            "csrc/attention_softmax.h",
            "csrc/attention_tile.h",
        ],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False},
    ),
    cmdclass={"build_ext": BuildExt},
)
