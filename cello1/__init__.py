__version__ = "0.1.0"


def __getattr__(name):
    "`cello1.annotate` on first use, so `import cello1` stays light (no scanpy, no solvers until asked)."
    if name == "annotate":
        from cello1.annotation import annotate
        return annotate
    raise AttributeError(f"module 'cello1' has no attribute {name!r}")
