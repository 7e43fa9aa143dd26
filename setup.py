"""Build the optional C fast path of the codecs' value check (pure Python is the fallback)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "motadata_actors.codecs._fastcheck",
            ["codecs/_fastcheck.c"],
            optional=True,  # no compiler: the pure-Python check runs instead
        )
    ]
)
