"""Data debugging: label issues, outliers and duplicates, weak slices, label seeding and active
learning. numpy in, numpy out: every function takes arrays (``labels``, ``pred_probs``,
``embeddings``), never a model, so the CLI and the IDE call them on a build's stored arrays.
"""
