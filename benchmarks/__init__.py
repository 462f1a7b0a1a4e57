"""Speed and scale measurements of the book's code (``python -m benchmarks.NAME``).

Benchmarks are measurements, not tests: each prints a table of ratios measured side by side in
one run and appends it, with the device, torch version and date, to ``benchmarks/RESULTS.md``.
"""
