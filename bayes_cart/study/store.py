"""The study directory: the spec it was made by, and one small JSON file per finished task.

Layout::

    DIR/study.toml          the study spec, copied as given (when it was read from a file)
    DIR/spec.json           the validated spec (what the hash is computed over)
    DIR/study.json          name, hash, replicates, bayes_cart version, creation time
    DIR/tasks/<key>.json    one record per finished task (ok or failed)
    DIR/metrics.csv         written by the summary (bayes_cart.study.summary)

Every file is written atomically: to a temporary file in the same folder, flushed to disk,
then renamed over the target (:func:`os.replace`), so a killed study leaves either the whole
record or none; leftover temporary files are removed when the directory is opened again, and a
record that cannot be read (truncated by a crash of the disk itself) counts as not done and is
reported. One file per task, rather than SQLite, because only the client writes (no locking
needed), the files can live on a cluster's network file system where SQLite's locks are
unreliable, a damaged record damages nothing else, and two copies of a directory (runs on two
machines) merge by copying files.

A directory carries the hash of the spec that made it (:attr:`StudySpec.hash`): opening it
with a different spec is refused (:class:`bayes_cart.errors.OutputError`), never mixed. The
hash leaves out ``replicates``, so raising them extends the study.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bayes_cart as bc

__all__ = ["StudyStore", "write_atomic"]

STUDY_FILE = "study.json"
SPEC_FILE = "study.toml"
SPEC_JSON = "spec.json"
TASKS = "tasks"
_TMP_PREFIX = ".tmp-"


def _file_mode() -> int:
    """Return the mode of a new file under the process umask (mkstemp would make it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _file_mode()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX, suffix=path.suffix)
    try:
        os.fchmod(fd, _MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StudyStore:
    """A study directory (see the module docstring); create it with :meth:`open`.

    Parameters
    ----------
    root : Path
        The directory.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.tasks = self.root / TASKS
        self.unreadable: list[Path] = []

    @classmethod
    def open(cls, root: str | Path, study: Any) -> StudyStore:
        """Open (or create) the directory of ``study``; refuse a directory of another spec.

        Raises
        ------
        bayes_cart.errors.OutputError
            The directory holds another study, or something that is not a study.
        """
        store = cls(root)
        meta_path = store.root / STUDY_FILE
        if store.root.exists() and not store.root.is_dir():
            raise bc.OutputError(f"{store.root}: is a file, not a study directory")
        if meta_path.exists():
            meta = store.meta()
            if meta.get("hash") != study.hash:
                raise bc.OutputError(
                    f"{store.root} holds the results of another study spec (hash "
                    f"{meta.get('hash')}, study {meta.get('name')!r}); the spec given "
                    f"({study.source}, hash {study.hash}) differs, and results of two specs are "
                    f"never mixed. Use a new directory, or run the spec it was made with "
                    f"({store.root / SPEC_FILE} or {SPEC_JSON})."
                )
            if study.replicates != meta.get("replicates"):
                meta["replicates"] = study.replicates
                write_atomic(meta_path, json.dumps(meta, indent=1))
            for tmp in store.tasks.glob(f"{_TMP_PREFIX}*"):
                tmp.unlink(missing_ok=True)
            return store
        if store.root.exists() and any(store.root.iterdir()):
            raise bc.OutputError(
                f"{store.root}: not empty and not a study directory (no {STUDY_FILE}); "
                "give a new or empty directory"
            )
        store.tasks.mkdir(parents=True, exist_ok=True)
        if not study.text.lstrip().startswith("{"):
            write_atomic(store.root / SPEC_FILE, study.text)
        content = json.dumps(study.doc.model_dump(mode="json"), indent=1, sort_keys=True)
        write_atomic(store.root / SPEC_JSON, content)
        meta = {
            "name": study.name,
            "hash": study.hash,
            "replicates": study.replicates,
            "source": study.source,
            "bayes_cart": bc.__version__,
            "created": datetime.now(UTC).isoformat(),
        }
        write_atomic(meta_path, json.dumps(meta, indent=1))
        return store

    @classmethod
    def existing(cls, root: str | Path) -> StudyStore:
        """Open a directory made by a study run (for status and summary).

        Raises
        ------
        bayes_cart.errors.OutputError
            ``root`` is not a study directory.
        """
        store = cls(root)
        if not (store.root / STUDY_FILE).is_file():
            raise bc.OutputError(f"{store.root}: not a study directory (no {STUDY_FILE})")
        return store

    def meta(self) -> dict[str, Any]:
        """Return the content of ``study.json``."""
        path = self.root / STUDY_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise bc.OutputError(f"{path}: cannot be read ({exc})") from None

    def study(self) -> Any:
        """Return the study spec the directory was made with (``spec.json``, replicates as run)."""
        from bayes_cart.study.spec import study_from_dict

        path = self.root / SPEC_JSON
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise bc.OutputError(f"{path}: cannot be read ({exc})") from None
        original = self.root / SPEC_FILE
        text = original.read_text(encoding="utf-8") if original.exists() else None
        spec = study_from_dict(raw, source=str(path), text=text)
        replicates = self.meta().get("replicates", spec.replicates)
        return spec if replicates == spec.replicates else spec.with_replicates(replicates)

    def path(self, key: str) -> Path:
        """Return the file of task ``key``."""
        return self.tasks / f"{key}.json"

    def write(self, record: dict[str, Any]) -> Path:
        """Write one task record atomically; return its path."""
        path = self.path(record["key"])
        write_atomic(path, json.dumps(record, indent=1, allow_nan=True))
        return path

    def remove(self, key: str) -> None:
        """Forget a task (it will be run again)."""
        self.path(key).unlink(missing_ok=True)

    def records(self) -> list[dict[str, Any]]:
        """Every readable record (unreadable files are listed in :attr:`unreadable`)."""
        out = []
        self.unreadable = []
        for path in sorted(self.tasks.glob("*.json")):
            if path.name.startswith(_TMP_PREFIX):
                continue
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                if record.get("key") != path.stem:
                    raise ValueError("key does not match the file name")
            except (OSError, ValueError) as exc:
                self.unreadable.append(path)
                warnings.warn(f"{path}: unreadable task record, run again ({exc})", stacklevel=2)
                continue
            out.append(record)
        return out

    def finished(self) -> dict[str, str]:
        """Finished task keys and their status (``ok``, ``error``, ``timeout``)."""
        return {r["key"]: r["status"] for r in self.records()}
