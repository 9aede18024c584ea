"""Build of gimtool's one compiled module (the .bed association kernel). Everything else is in
pyproject.toml. The module is optional: without a C compiler gimtool installs and runs on its
numpy kernels (slower `gwas`)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gimtool.stats._bedkernel",
            ["gimtool/stats/_bedkernel.c"],
            extra_compile_args=["-O3", "-fno-math-errno", "-mprefer-vector-width=512", "-Wno-psabi"],
            optional=True,
        )
    ]
)
