"""The compiler: build spec, data, architectures, training loop, and the build cache.

Only ``models``, ``train`` and the export step of ``builder`` import torch, and only when a build
runs; ``spec``, ``data`` and ``records`` are numpy at most.
"""
