"""The Hugging Face cache around a sweep: download a revision (retried), prefetch the next one,
evict finished ones.

- ``download_revision(repo_id, revision, patterns)``: ``snapshot_download`` of the files a load
  needs.  The client retries a dropped connection itself (from byte 0 below 10 MiB, from the last
  whole chunk above) but not a 5xx on a file or on the revision's info: a failed download is tried
  again up to ``DOWNLOAD_TRIES`` times in all, ``DOWNLOAD_BACKOFF_S`` x 1, 4, 16 ... seconds apart
  (``LAYERDB_DOWNLOAD_BACKOFF_S`` overrides the base), then fails with ``DownloadFailed``.  A model,
  revision or file the hub does not know (or refuses) fails at once, as ``DownloadFailed`` too.  A
  full disk raises ``DiskFull`` at once.
- ``Prefetcher``: one revision downloads in a background thread while the current one is swept
  (one try: the download before the load retries and reports).
- ``evict_revision(repo_id, revision, keep)``: delete a revision's snapshot, its refs and the blobs
  that no other cached snapshot uses and that are not in ``keep`` (the blobs revisions still to
  come need: identical files share blobs).
- ``hub_refs(repo_id)``: the hub's branches and tags and their commits.

Offline (``HF_HUB_OFFLINE=1``) nothing is downloaded: loads read the cache.
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import warnings
from pathlib import Path

from layerdb.errors import LayerdbError, first_line

from .hub_cache import read_ref, snapshot_dir

# Without an audit: the files from_pretrained needs for a causal LM and its tokenizer.
PREFETCH_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
DOWNLOAD_TRIES = 4
DOWNLOAD_BACKOFF_S = 1.0  # waits of 1, 4, 16 s between the tries
# The client warns before a download the free space may not hold; a disk that really fills
# raises DiskFull, one line.
warnings.filterwarnings("ignore", message="Not enough free disk space", category=UserWarning)


class DownloadFailed(LayerdbError):
    """A revision's files could not be downloaded after every try; the other revisions go on."""


class DiskFull(LayerdbError):
    """The disk of the HF cache filled during a download: the run stops (the rest would fail too)."""


def hub_reachable() -> bool:
    from huggingface_hub import constants

    return not constants.HF_HUB_OFFLINE


def hub_refs(repo_id: str) -> dict[str, str] | None:
    """Branch and tag -> commit, as the hub lists them; None offline or when it cannot be read
    (unreachable, unknown repo)."""
    if not hub_reachable():
        return None
    try:
        from huggingface_hub import HfApi

        refs = HfApi().list_repo_refs(repo_id)
    except Exception:
        return None
    return {r.name: r.target_commit for r in [*refs.branches, *refs.tags]}


def backoff_s() -> float:
    return float(os.environ.get("LAYERDB_DOWNLOAD_BACKOFF_S", DOWNLOAD_BACKOFF_S))


def download_revision(repo_id: str, revision: str, patterns: list[str] | None = None,
                      tries: int = DOWNLOAD_TRIES) -> str | None:
    """Download ``repo_id@revision``'s files matching ``patterns`` into the HF cache (retried, see
    the module docstring); return the snapshot folder.  Offline: nothing, None."""
    if not hub_reachable():
        return None
    from huggingface_hub import snapshot_download

    for attempt in range(tries):
        try:
            return snapshot_download(repo_id, revision=revision,
                                     allow_patterns=patterns or PREFETCH_PATTERNS)
        except Exception as exc:
            if _disk_full(exc):
                from huggingface_hub import constants

                raise DiskFull(f"the disk of the HF cache ({constants.HF_HUB_CACHE}) is full: "
                               f"downloading {repo_id}@{revision} stopped, nothing of it was "
                               "stored; free space (or collect with --evict) and run again") from None
            if _permanent(exc):  # unknown model, revision or file; no access: no retry
                raise DownloadFailed(f"download refused: {_describe(exc)}") from None
            if attempt + 1 == tries:
                raise DownloadFailed(f"download failed {tries} times, the last with "
                                     f"{_describe(exc)}") from None
            time.sleep(backoff_s() * 4 ** attempt)
    return None


def _disk_full(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _describe(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None) is not None:
        return f"{type(exc).__name__}: HTTP {response.status_code} {response.reason_phrase}"
    return f"{type(exc).__name__}: {first_line(exc)}"


def _permanent(exc: Exception) -> bool:
    """An error that another try will not change: unknown model, revision or file, no access."""
    from huggingface_hub import errors

    if isinstance(exc, (errors.RepositoryNotFoundError, errors.RevisionNotFoundError,
                        errors.RemoteEntryNotFoundError, errors.GatedRepoError)):
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status is not None and 400 <= status < 500 and status not in (408, 429)


class Prefetcher:
    """Downloads one revision in a background thread while the current one is swept."""

    def __init__(self, repo_id: str):
        self.repo_id = repo_id
        self._thread: threading.Thread | None = None

    def start(self, revision: str, patterns: list[str] | None = None) -> None:
        if not hub_reachable():
            return
        self.wait()
        self._thread = threading.Thread(target=self._download, args=(revision, patterns),
                                        daemon=True, name=f"prefetch {self.repo_id}@{revision}")
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _download(self, revision: str, patterns: list[str] | None) -> None:
        try:
            download_revision(self.repo_id, revision, patterns, tries=1)
        except Exception:  # best effort: the download before the load retries and reports
            pass


def evict_revision(repo_id: str, revision: str, keep: frozenset[str] | set[str] = frozenset()) -> int:
    """Delete ``repo_id@revision``'s snapshot and refs from the HF cache, and its blobs that no
    other cached snapshot uses and that are not in ``keep``; return the bytes freed (0 when it is
    not cached)."""
    snapshot = snapshot_dir(repo_id, revision)
    if snapshot is None:
        return 0
    repo, commit = snapshot.parent.parent, snapshot.name
    refs = repo / "refs"
    mine = _blobs_of(snapshot)
    used = set(keep)
    for other in (repo / "snapshots").iterdir():
        if other != snapshot:
            used |= _blobs_of(other)
    shutil.rmtree(snapshot)
    if refs.is_dir():
        for ref in [p for p in refs.rglob("*") if p.is_file()]:
            if read_ref(ref) == commit:
                ref.unlink()
    (repo / "trees" / f"{commit}.json").unlink(missing_ok=True)  # the client's tree listing
    freed = 0
    for name in mine - used:
        blob = repo / "blobs" / name
        if blob.is_file():
            freed += blob.stat().st_size
            blob.unlink()
    return freed


def _blobs_of(snapshot: Path) -> set[str]:
    """Names of the blobs the files of a snapshot link to."""
    return {os.path.basename(os.readlink(p)) for p in snapshot.rglob("*") if p.is_symlink()}

