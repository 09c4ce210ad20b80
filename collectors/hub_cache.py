"""The Hugging Face hub cache layout: find a revision's snapshot in it, and place a saved
checkpoint folder into it, so that ``from_pretrained(repo_id, revision=...)`` with
``HF_HUB_OFFLINE=1`` resolves to it.

Layout (under ``HF_HOME/hub``)::

    models--ORG--NAME/blobs/<sha256>            file contents, shared between revisions
    models--ORG--NAME/snapshots/<commit>/<file>  symlinks to the blobs
    models--ORG--NAME/refs/<revision>            the commit hash of that revision
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def repo_cache_dir(repo_id: str, hub_cache: str | os.PathLike | None = None) -> Path:
    """The folder of ``repo_id`` in a hub cache (default: huggingface_hub's, HF_HUB_CACHE)."""
    if hub_cache is None:
        from huggingface_hub import constants

        hub_cache = constants.HF_HUB_CACHE
    return Path(hub_cache) / ("models--" + repo_id.replace("/", "--"))


def is_commit(revision: str) -> bool:
    """Whether ``revision`` is a commit hash (what snapshots are named by), not a branch or tag."""
    return _COMMIT.match(revision) is not None


def read_ref(ref_file: Path) -> str | None:
    """The commit a ``refs/<revision>`` file names; None when there is no such file."""
    return ref_file.read_text().strip() if ref_file.is_file() else None


def snapshot_dir(repo_id: str, revision: str) -> Path | None:
    """``repo_id@revision``'s snapshot folder in huggingface_hub's cache (``revision``: a commit,
    or a branch or tag its refs name); None when it is not cached."""
    repo = repo_cache_dir(repo_id)
    commit = revision if is_commit(revision) else read_ref(repo / "refs" / revision)
    if not commit:
        return None
    snapshot = repo / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


def hub_cache_of(hf_home: str | os.PathLike) -> Path:
    """The hub cache under an HF_HOME folder (as huggingface_hub lays it out)."""
    return Path(hf_home) / "hub"


def add_revision(folder: str | os.PathLike, repo_id: str, revision: str,
                 hf_home: str | os.PathLike) -> str:
    """Copy every file of ``folder`` into the cache as ``repo_id@revision``; return the commit."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"{folder} holds no files")
    digests = {p: _sha256(p) for p in files}
    commit = hashlib.sha1(
        "".join(f"{p.relative_to(folder)}:{digests[p]}\n" for p in files).encode()
    ).hexdigest()
    repo = repo_cache_dir(repo_id, hub_cache_of(hf_home))
    snapshot = repo / "snapshots" / commit
    for path in files:
        blob = repo / "blobs" / digests[path]
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            tmp = blob.with_suffix(".incomplete")
            shutil.copyfile(path, tmp)
            os.replace(tmp, blob)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            os.symlink(os.path.relpath(blob, link.parent), link)
    refs = repo / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / revision).write_text(commit)
    return commit


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
