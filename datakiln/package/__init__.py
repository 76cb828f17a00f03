"""Model packages, a leaf: the format, archives, verification, and loading a path to predict.

``datakiln.package`` imports nothing above the store: it knows no repository and no build. To
load a build by id, ``datakiln.load`` resolves the id to its package path first.
"""

from .archive import archive_bytes, read_package_files, write_archive
from .format import FILES, FORMAT, MANIFEST, parse_manifest, rewrite_manifest, write_package
from .model import Model, Predictions, load

__all__ = [
    "FILES",
    "FORMAT",
    "MANIFEST",
    "Model",
    "Predictions",
    "archive_bytes",
    "parse_manifest",
    "rewrite_manifest",
    "load",
    "read_package_files",
    "write_archive",
    "write_package",
]
