"""The stage: changes waiting for the next commit, kept in ``.kiln/stage.json``.

The stage records the commit it was computed against (``base``) and the working table's stats,
so that committing an unchanged HEAD needs no table reads. Before a commit moves a ref it writes
``committing`` into the stage; if a crash stops it after the ref moved but before the stage was
cleared, the next writer sees that the stage is already committed and drops it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorruptObject
from .store.fsutil import atomic_write
from .table import Changes


@dataclass
class Stage:
    base: str | None = None
    changes: Changes = field(default_factory=Changes)
    stats: dict[str, int] | None = None
    committing: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "base": self.base,
            "changes": self.changes.to_json(),
            "stats": self.stats,
            "committing": self.committing,
        }

    @classmethod
    def load(cls, path: Path) -> Stage:
        try:
            obj = json.loads(path.read_bytes())
        except FileNotFoundError:
            return cls()
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CorruptObject(f"{path} is damaged ({e}); 'kiln reset' discards the staged changes") from None
        return cls(
            base=obj.get("base"),
            changes=Changes.from_json(obj["changes"]),
            stats=obj.get("stats"),
            committing=obj.get("committing"),
        )

    def save(self, path: Path, tmp_dir: Path) -> None:
        if self.changes.is_empty() and self.committing is None:
            path.unlink(missing_ok=True)
            return
        atomic_write(path, json.dumps(self.to_json()).encode(), tmp_dir)
