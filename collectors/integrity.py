"""Which revisions serve the same weights, known before any weights are downloaded.

- ``audit_revisions(ref, revisions) -> {revision: RevisionWeights}``: each revision's weight files,
  their bytes and the *weights digest*, from the hub's LFS metadata (one tree listing per revision,
  no download) or, offline or when the hub cannot be read, from the HF cache.
- ``assign_keepers(audits, stored) -> {revision: keeper}``: the keep rule over the audited
  revisions and those already in the store.
- ``audit_table(ref, revisions, stored)``: what ``layerdb audit`` prints.

Definitions, each made once, here:

- The *weight files* of a revision are the files ``from_pretrained`` loads: its top-level
  ``model*.safetensors`` files when it has any, else its top-level ``pytorch_model*.bin`` files.  A
  revision holding both is digested by its safetensors (what transformers loads); other files
  (optimizer states, TF/Flax weights, adapters) are not weights here.
- The *weights digest* is sha256 over the sorted lines ``path:sha256\\n`` of the weight files
  (64 hex characters), where each file's sha256 is its LFS object id.  Offline it is read from the
  HF cache, where the client names an LFS file's blob by its sha256.  Where a weight file has no LFS
  metadata (kept in git itself; cached under its git id) or a revision has no weight files that can
  be seen, the digest is unknown and the fingerprint of the loaded weights decides after loading
  (``collectors.checkpoints.weights_fingerprint``).
- The *keep rule*: in each group of revisions with the same digest (the planned ones and the
  store's), the revision with the highest step keeps the results; a revision whose name carries no
  step (``main``) defers to one that does; among revisions without a step, the first by name
  keeps them.  Every other revision of the group gets ``same_weights_as`` = that revision and is
  neither downloaded nor swept (unless ``--sweep-duplicates``).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Iterable

from layerdb.errors import LayerdbError
from layerdb.revisions import parse_revision

from .checkpoints import ModelRef, unknown_revision_message
from .hub import hub_reachable, hub_refs
from .hub_cache import is_commit, repo_cache_dir, snapshot_dir

SAFETENSORS = "model*.safetensors"
PYTORCH_BIN = "pytorch_model*.bin"
# Besides the weight files, what a download fetches: config, generation config, tokenizer.
SMALL_FILE_PATTERNS = ("*.json", "*.txt", "*.model", "*.tiktoken")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class RevisionWeights:
    """One revision's weights as the hub (or the HF cache) describes them."""

    revision: str
    step: int | None
    commit: str | None  # the commit the revision names, where known
    files: tuple[str, ...] = ()  # the weight files (top-level paths)
    bytes: int | None = None  # their total size
    digest: str | None = None  # None: unknown before loading (see ``note``)
    blobs: frozenset[str] = field(default_factory=frozenset)  # cache blob names of its files
    source: str = "none"  # hub | cache | none
    note: str = ""  # why the digest is unknown

    @property
    def download_patterns(self) -> list[str]:
        """What to download for ``from_pretrained``: the weight files and the small files; when
        the weight files are unknown, every safetensors file."""
        return [*SMALL_FILE_PATTERNS, *(self.files or ("*.safetensors",))]

    def row(self, model: str) -> dict:
        """Its columns of a ``checkpoints`` row."""
        return dict(model=model, revision=self.revision, step=self.step,
                    tokens_seen=parse_revision(self.revision).tokens, commit_hash=self.commit,
                    **self.weight_columns())

    def weight_columns(self) -> dict:
        """The columns of a ``checkpoints`` row that describe its weight files."""
        return dict(weights_digest=self.digest, weight_files=len(self.files) or None,
                    weight_bytes=self.bytes)


def weight_files(paths: Iterable[str]) -> list[str]:
    """The top-level files ``from_pretrained`` loads, sorted (see the module docstring)."""
    top = sorted(p for p in paths if "/" not in p)
    return ([p for p in top if fnmatchcase(p, SAFETENSORS)]
            or [p for p in top if fnmatchcase(p, PYTORCH_BIN)])


def weights_digest(sha256_by_path: dict[str, str]) -> str:
    """sha256 over the sorted lines ``path:sha256`` of the weight files."""
    lines = "".join(f"{path}:{sha}\n" for path, sha in sorted(sha256_by_path.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def keeper(members: Iterable[tuple[str, int | None]]) -> str:
    """The revision of (revision, step) pairs that keeps the group's results: the highest step;
    a revision without a step defers to one with a step; ties go to the first by name."""
    return min(members, key=lambda m: (m[1] is None, -(m[1] or 0), m[0]))[0]


def assign_keepers(audits: dict[str, RevisionWeights], stored: Iterable[dict]) -> dict[str, str]:
    """revision -> the revision keeping its group's results, for every revision (audited or in
    ``stored`` checkpoint rows) that shares its digest with another.  An audit supersedes the
    stored digest of the same revision (a branch may have moved)."""
    groups: dict[str, dict[str, int | None]] = {}
    for row in stored:
        if row.get("weights_digest") and row["revision"] not in audits:
            groups.setdefault(row["weights_digest"], {})[row["revision"]] = row.get("step")
    for audit in audits.values():
        if audit.digest:
            groups.setdefault(audit.digest, {})[audit.revision] = audit.step
    keepers: dict[str, str] = {}
    for members in groups.values():
        if len(members) > 1:
            kept = keeper(members.items())
            keepers.update({revision: kept for revision in members})
    return keepers


# -- reading the hub and the cache -------------------------------------------------------------
def audit_revisions(ref: ModelRef, revisions: Iterable[str]) -> dict[str, RevisionWeights]:
    """Each revision's weights, from the hub when it can be read, else from the HF cache; nothing
    is downloaded but the listings.  An unknown revision fails here, naming the nearest known."""
    revisions = list(dict.fromkeys(revisions))
    if ref.local:
        return {r: RevisionWeights(r, None, None, note="a local folder: fingerprinted after loading")
                for r in revisions}
    online = hub_reachable()
    if not online and not repo_cache_dir(ref.source).exists():
        raise LayerdbError(f"unknown model {ref.source}: not a local folder and not found on the "
                           "hub (HF_HUB_OFFLINE is set and it is not in the HF cache)")
    commits = hub_refs(ref.source) or {}  # {} offline or unreadable
    audits = {}
    for revision in revisions:
        audit = _from_hub(ref, revision, commits) if online else None
        if audit is None or audit.digest is None:
            cached = _from_cache(ref, revision)
            if cached is not None and (audit is None or cached.digest is not None):
                audit = cached
        if audit is None:
            if not online:
                raise LayerdbError(unknown_revision_message(ref.source, revision))
            audit = RevisionWeights(revision, parse_revision(revision).step,
                                    commits.get(revision), note="the hub could not be read")
        audits[revision] = audit
    return audits


def _from_hub(ref: ModelRef, revision: str, commits: dict[str, str]) -> RevisionWeights | None:
    """From the hub's listing of the revision's top folder (LFS sha256 included); None when the
    hub cannot be read.  An unknown model or revision is a LayerdbError."""
    from huggingface_hub import HfApi, errors
    from huggingface_hub.hf_api import RepoFile

    try:
        entries = [e for e in HfApi().list_repo_tree(ref.source, revision=revision)
                   if isinstance(e, RepoFile)]
    except errors.RepositoryNotFoundError:
        raise LayerdbError(f"unknown model {ref.source}: not a local folder and not found on "
                           "the hub") from None
    except errors.RevisionNotFoundError:
        raise LayerdbError(unknown_revision_message(ref.source, revision)) from None
    except Exception:  # 5xx after the client's retries, no connection: try the cache
        return None
    by_path = {e.path: e for e in entries}
    files = weight_files(by_path)
    shas = {p: by_path[p].lfs.sha256 for p in files if by_path[p].lfs is not None}
    blobs = frozenset(e.lfs.sha256 if e.lfs is not None else e.blob_id for e in entries)
    commit = revision if is_commit(revision) else commits.get(revision)
    return _weights(revision, commit, files, sum(by_path[p].size for p in files), shas, blobs,
                    "hub", "without LFS metadata")


def _from_cache(ref: ModelRef, revision: str) -> RevisionWeights | None:
    """From the revision's snapshot in the HF cache (blobs of LFS files are named by their
    sha256); None when the revision is not cached."""
    snapshot = snapshot_dir(ref.source, revision)
    if snapshot is None:
        return None
    commit = snapshot.name
    blob_of = {p.name: os.path.basename(os.readlink(p)) if p.is_symlink() else None
               for p in snapshot.iterdir() if p.is_file()}
    files = weight_files(blob_of)
    shas = {p: blob_of[p] for p in files if blob_of[p] and _SHA256.match(blob_of[p])}
    size = sum((snapshot / p).stat().st_size for p in files)
    blobs = frozenset(b for b in blob_of.values() if b)
    return _weights(revision, commit, files, size, shas, blobs, "cache",
                    "cached without their sha256", empty="no weight files in the HF cache")


def _weights(revision: str, commit: str | None, files: list[str], size: int,
             shas: dict[str, str], blobs: frozenset[str], source: str, no_sha: str,
             empty: str = "no weight files") -> RevisionWeights:
    complete = bool(files) and len(shas) == len(files)
    note = "" if complete else (f"weight files {no_sha}" if files else empty)
    return RevisionWeights(revision, parse_revision(revision).step, commit, tuple(files),
                           size if files else None, weights_digest(shas) if complete else None,
                           blobs, source, note)


# -- the audit table ---------------------------------------------------------------------------
AUDIT_COLUMNS = ["revision", "step", "weight_files", "weight_bytes", "weights_digest",
                 "same_weights_as", "source", "note"]


def audit_table(ref: ModelRef, audits: dict[str, RevisionWeights], stored: Iterable[dict] = ()):
    """One row per audited revision: its weight files, bytes, digest, and ``same_weights_as``
    (the revision that keeps the results of its weights, by the keep rule over the audited
    revisions and the ``stored`` checkpoints; empty where it keeps them itself)."""
    import pandas as pd

    stored = list(stored)
    keepers = assign_keepers(audits, stored)
    in_store = {row["revision"] for row in stored}
    rows = []
    for audit in audits.values():
        kept_by = keepers.get(audit.revision, audit.revision)
        same_as = None if kept_by == audit.revision else kept_by
        note = audit.note
        if same_as and same_as in in_store and same_as not in audits:
            note = f"{same_as} is in the store"
        rows.append(dict(revision=audit.revision, step=audit.step,
                         weight_files=len(audit.files), weight_bytes=audit.bytes,
                         weights_digest=audit.digest, same_weights_as=same_as,
                         source=audit.source, note=note))
    df = pd.DataFrame(rows, columns=AUDIT_COLUMNS)
    for column in ("step", "weight_bytes"):
        df[column] = df[column].astype("Int64")
    return df
