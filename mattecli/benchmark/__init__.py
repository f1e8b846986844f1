"""Benchmarking: test sets, the two published metric conventions, and ``mattecli bench``'s runs and reports.

One room: only the CLI's ``bench`` command (:mod:`mattecli.cli.bench`) and the repository's
``bench/`` scripts import it, and it imports only downwards (methods, runtime, weights, io and the
shared leaves). Importing the package imports none of its modules; import the one you need.

Datasets
    :mod:`~mattecli.benchmark.datasets` (``load_dataset`` by name, ``DATASETS``),
    :mod:`~mattecli.benchmark.samples` (``Sample``, ``Dataset``),
    :mod:`~mattecli.benchmark.layouts` (one loader per test set's folder layout),
    :mod:`~mattecli.benchmark.composition` (Adobe's Composition-1k recipe, bit-exact),
    :mod:`~mattecli.benchmark.manifest` (``datasets_manifest.json``),
    :mod:`~mattecli.benchmark.store` (default folders, completeness, Hub downloads),
    :mod:`~mattecli.benchmark.parquet` (unpacking the Hub's parquet copies).
Metrics
    :mod:`~mattecli.benchmark.metrics` (SAD, MSE, MAD and ``evaluate``; the entry point),
    :mod:`~mattecli.benchmark.metric_inputs`, :mod:`~mattecli.benchmark.gradient_error`,
    :mod:`~mattecli.benchmark.connectivity_error`.
Runs and reports
    :mod:`~mattecli.benchmark.settings` (``BenchSettings``), :mod:`~mattecli.benchmark.run`
    (``run_bench``), :mod:`~mattecli.benchmark.scoring` (one sample's row),
    :mod:`~mattecli.benchmark.row_cache` (resume), :mod:`~mattecli.benchmark.machine` (machine and
    peak memory), :mod:`~mattecli.benchmark.reports` (build, merge, read, write),
    :mod:`~mattecli.benchmark.report_text` (the wording of tables and lines),
    :mod:`~mattecli.benchmark.html_report` and ``templates/report.html.j2`` (``bench --html``),
    :mod:`~mattecli.benchmark.thumbnails`.
"""
