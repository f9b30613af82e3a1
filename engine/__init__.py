"""mm-engine: Python orchestration over the Cython hot paths in ``ext``."""
