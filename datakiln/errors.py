"""The exception tree. Every error datakiln raises on purpose is a ``KilnError``.

::

    KilnError                      anything datakiln raises on purpose
    ├── RepoNotFound               no .kiln directory here or above
    ├── RepoExists                 kiln init over an existing repository
    ├── RevisionError              a revision that does not name exactly one commit
    │   ├── RevisionNotFound
    │   └── AmbiguousRevision
    ├── ExampleError               an example id that does not name exactly one example
    │   ├── ExampleNotFound
    │   └── AmbiguousExample
    ├── BuildNotFound              a build id or prefix that names no build (or several)
    ├── PackageNotFound            a package name, version or range that names no published package
    ├── InputError                 bad user input; nothing was written
    │   ├── BadImage               not a PNG/JPEG/WebP image we can decode safely
    │   ├── BadManifest            a CSV/JSONL manifest or label file we cannot trust
    │   ├── BadLabel               a label with forbidden characters
    │   ├── BadName                a branch or tag name git would reject
    │   └── BadSpec                a build spec with an unknown key or a bad value
    ├── StateError                 the operation does not fit the repository's state
    │   ├── NothingToCommit
    │   ├── MergeInProgress
    │   ├── UnresolvedConflicts
    │   ├── NotBuildable           too few labels or classes to train on
    │   └── BuildFailed            a build worker failed or died; nothing was kept
    ├── ConcurrencyError           another writer got there first; retry
    │   ├── LockTimeout
    │   ├── RefMoved
    │   └── LabelChanged           a label changed since the caller read it
    ├── RemoteError                a hub refused a request or could not be reached
    │   ├── AuthRequired           no token for this hub, or it is wrong, expired or revoked
    │   ├── PermissionDenied       the token may not do this here
    │   └── PushRejected           a ref update the hub refused (not a fast-forward, or it moved)
    └── IntegrityError             the bytes on disk are not what they claim
        ├── CorruptObject
        ├── MissingObject
        ├── BadPackage             not a model package, or its files differ from its manifest
        └── SignatureError         a package whose signature does not verify, or whose key is not trusted

Messages name the bad value, what was expected, and how to fix it. The CLI prints the message
and exits with status 1 (2 for usage errors), so no traceback reaches a user for these.
"""

from __future__ import annotations


class KilnError(Exception):
    """Base class of every error datakiln raises on purpose."""


class RepoNotFound(KilnError):
    """No repository at or above the given directory."""


class RepoExists(KilnError):
    """A repository already exists where one was to be created."""


class RevisionError(KilnError):
    """A revision string does not name exactly one commit."""


class RevisionNotFound(RevisionError):
    """No commit, branch or tag matches the revision."""


class AmbiguousRevision(RevisionError):
    """A commit-id prefix matches several commits."""


class ExampleError(KilnError):
    """An example id does not name exactly one example."""


class ExampleNotFound(ExampleError):
    """No example has this id or id prefix."""


class AmbiguousExample(ExampleError):
    """An id prefix matches several examples."""


class BuildNotFound(KilnError):
    """No build (or more than one) matches a build id or prefix."""


class PackageNotFound(KilnError):
    """No published package has this name, or no version matches the range asked for."""


class InputError(KilnError):
    """Bad input from the user; nothing was written."""


class BadImage(InputError):
    """A file is not an image datakiln accepts."""


class BadManifest(InputError):
    """A manifest or label file is malformed."""


class BadLabel(InputError):
    """A label contains forbidden characters or is empty."""


class BadName(InputError):
    """A branch or tag name is not allowed."""


class BadSpec(InputError):
    """A build spec (kiln.toml or an override) has an unknown key or a bad value."""


class StateError(KilnError):
    """The operation does not fit the repository's current state."""


class NothingToCommit(StateError):
    """The stage is empty."""


class MergeInProgress(StateError):
    """A merge is under way; finish it (commit) or abort it first."""


class UnresolvedConflicts(StateError):
    """A merge still has conflicting examples."""


class NotBuildable(StateError):
    """The commit has too few labeled examples or classes to train a model."""


class BuildFailed(StateError):
    """A fit failed in a build worker, or a worker died; the build kept nothing."""


class ConcurrencyError(KilnError):
    """Another writer changed the repository first; the operation can be retried."""


class LabelChanged(ConcurrencyError):
    """An example's label changed since the caller read it (another tab, person or command)."""


class LockTimeout(ConcurrencyError):
    """The repository lock was held by another process for too long."""


class RefMoved(ConcurrencyError):
    """A ref no longer has the value the caller expected (compare-and-swap failed)."""


class RemoteError(KilnError):
    """A hub refused a request, answered something that is not the kiln protocol, or was down."""


class AuthRequired(RemoteError):
    """The hub wants a token and got none, or one that is wrong, expired or revoked."""


class PermissionDenied(RemoteError):
    """The token is valid but may not do this in this repository."""


class PushRejected(RemoteError):
    """The hub refused a ref update: not a fast-forward, or the ref moved since it was read."""


class IntegrityError(KilnError):
    """Stored bytes do not match their hash, or an object is missing."""


class CorruptObject(IntegrityError):
    """An object's bytes do not hash to its id, or cannot be decoded."""


class MissingObject(IntegrityError):
    """An object that should exist is not in the store."""


class BadPackage(IntegrityError):
    """A path is not a model package, or a file in it does not match the manifest's hash."""


class SignatureError(IntegrityError):
    """A package's signature does not verify, or the key that made it is not trusted."""
