"""Build of gimtool's one compiled module (the .bed association kernel). Everything else is in
pyproject.toml. The module is optional: without a C compiler gimtool installs and runs on its
numpy kernels (slower `gwas`)."""

import platform
import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    args = ["/O2"]
else:
    args = ["-O3", "-fno-math-errno"]
    if sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64"):
        # the kernel is compiled for AVX-512, AVX2 and baseline x86-64 (chosen at load time);
        # 512-bit vectors where the CPU has them
        args += ["-mprefer-vector-width=512", "-Wno-psabi"]

setup(
    ext_modules=[
        Extension("gimtool._speedups", ["gimtool/_speedups.c", "gimtool/_sumstats_format.c"],
                  depends=["gimtool/_speedups_buffers.h"], extra_compile_args=args, optional=True)
    ]
)
