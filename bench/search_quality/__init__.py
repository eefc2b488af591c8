"""The search-quality benchmark (``bench/bench_search_quality.py``), in parts: settings, cells, analysis, report."""
