"""Cython hot paths of mm-engine. Imports nothing of ours."""
