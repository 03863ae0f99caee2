"""Benchmarks: ``python -m tools.bench [NAME]``. Each prints its figures next to a baseline measured in
the same run, so the ratio holds on any machine."""
