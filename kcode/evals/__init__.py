"""kcode.evals: SWE-bench-style evaluation runs and grading (``kcode eval``; not built yet:
the benchmarks and suites live in the repository's top-level ``evals/``)."""

__all__: list[str] = []
