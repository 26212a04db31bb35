"""Builds the compiled hot path (``core_ext``) with Cython against OpenSSL's libcrypto.

Everything else lives in pyproject.toml; setuptools needs this file only for the
extension modules.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

EXTENSIONS = [
    Extension("core_ext._token_c", ["core_ext/_token_c.pyx"], libraries=["crypto"]),
    Extension("core_ext._fsm_c", ["core_ext/_fsm_c.pyx"]),
    Extension("core_ext._chain_c", ["core_ext/_chain_c.pyx"], libraries=["crypto"]),
]

setup(
    ext_modules=cythonize(
        EXTENSIONS,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
