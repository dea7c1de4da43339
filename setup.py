"""The one compiled part of the package: filmorph._native (the arms' hot loops in C).

Everything else is in pyproject.toml. The extension is optional: without a C compiler the
install still succeeds and the arms run their pure-Python reference code (same output,
slower; `python -m filmorph.arms` says which one is in use).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("filmorph._native", ["src/filmorph/_native.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                                 "-Wno-missing-field-initializers"])])
