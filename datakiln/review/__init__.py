"""Debugging the data of a repository with a build: the porcelain over ``datakiln.insight``.

``view`` lines a build's arrays up with the working table; ``issues`` (suspected label errors),
``outliers`` (unusual examples, duplicates), ``slices`` (weak slices), ``seed`` (suggestions for
unlabeled examples), ``queue`` (what to label next), ``accept`` and ``keep`` (decisions).
"""

from .accept import accept
from .issues import LabelIssue, issues_in, label_issues
from .keep import Decision, keep, restore
from .outliers import find_outliers
from .queue import clear_queue, pending, queue, unpredicted
from .seed import seed
from .slices import weak_slices
from .view import View, view

__all__ = [
    "Decision",
    "LabelIssue",
    "View",
    "accept",
    "clear_queue",
    "find_outliers",
    "issues_in",
    "keep",
    "label_issues",
    "pending",
    "queue",
    "restore",
    "seed",
    "unpredicted",
    "view",
    "weak_slices",
]
