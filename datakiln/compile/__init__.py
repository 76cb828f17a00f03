"""The compiler: build spec, data, architectures, training loop, the build cache, build jobs.

The only package that imports torch, and only when a build runs: ``models``, ``train``,
``torchdata`` and the export step of ``builder``; ``spec``, ``data``, ``records``, ``report`` and
``jobs`` are numpy at most. Entry points: ``builder.build``, ``records.list_builds`` and
``records.find_build``, ``data.dataset`` (also re-exported as ``datakiln.build`` and friends).
"""
