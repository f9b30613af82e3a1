"""Build the Cython extensions of ``ext/``.

All compiler directives live here, in one place. ``MM_DEBUG=1`` rebuilds with
bounds checks, wraparound, initialized checks, line tracing and annotated HTML,
and defines the ``MM_DEBUG`` C macro.
"""
import os

import numpy as np
from Cython.Build import cythonize
from Cython.Compiler import Options
from setuptools import Extension, setup

DEBUG = os.environ.get("MM_DEBUG", "") not in ("", "0")

# Treat Cython warnings as errors so a sloppy declaration cannot slip in.
Options.warning_errors = True

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": not DEBUG,
    "nonecheck": DEBUG,
    "embedsignature": True,
}
if DEBUG:
    DIRECTIVES["linetrace"] = True

MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if DEBUG:
    MACROS += [("MM_DEBUG", "1"), ("CYTHON_TRACE_NOGIL", "1")]

CFLAGS = ["-O0", "-g"] if DEBUG else ["-O3"]

# One extension per module; they share declarations through .pxd cimports.
# Per-module options (language defaults to "c"):
# ext.book is C++ for std::map (its overflow levels); its .pxd stays plain C.
# ext.sign links OpenSSL's libcrypto (SHA-256 for HMAC request signing).
MODULES = {
    "ext.book": {"language": "c++"},
    "ext.parsers": {},
    "ext.sign": {"libraries": ["crypto"]},
    "ext.dedup": {},
}

extensions = [
    Extension(
        name,
        [name.replace(".", "/") + ".pyx"],
        include_dirs=[np.get_include()],
        define_macros=MACROS,
        extra_compile_args=CFLAGS,
        **{"language": "c", **opts},
    )
    for name, opts in MODULES.items()
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=DIRECTIVES,
        annotate=DEBUG,
    ),
)
