"""The Hugging Face cache around a sweep: prefetch the next revision, evict finished ones.

Both only matter where the hub is used; offline (``HF_HUB_OFFLINE=1``) prefetching does nothing and
a failed prefetch is silent (the load that follows reports the real problem).
"""
from __future__ import annotations

import threading

# Files from_pretrained needs for a causal LM and its tokenizer (safetensors preferred over .bin).
PREFETCH_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]


def hub_reachable() -> bool:
    from huggingface_hub import constants

    return not constants.HF_HUB_OFFLINE


class Prefetcher:
    """Downloads one revision in a background thread while the current one is swept."""

    def __init__(self, repo_id: str):
        self.repo_id = repo_id
        self._thread: threading.Thread | None = None

    def start(self, revision: str) -> None:
        if not hub_reachable():
            return
        self.wait()
        self._thread = threading.Thread(target=self._download, args=(revision,), daemon=True,
                                        name=f"prefetch {self.repo_id}@{revision}")
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _download(self, revision: str) -> None:
        try:
            from huggingface_hub import snapshot_download

            snapshot_download(self.repo_id, revision=revision, allow_patterns=PREFETCH_PATTERNS)
        except Exception:  # best effort: the real load reports what is wrong
            pass


def evict_revision(repo_id: str, revision: str) -> int:
    """Delete ``repo_id@revision``'s snapshot (and blobs no other revision uses) from the HF cache;
    return the bytes freed (0 when it is not cached)."""
    from huggingface_hub import scan_cache_dir

    cache = scan_cache_dir()
    commits = [rev.commit_hash for repo in cache.repos
               if repo.repo_id == repo_id and repo.repo_type == "model"
               for rev in repo.revisions if revision in rev.refs or rev.commit_hash == revision]
    if not commits:
        return 0
    strategy = cache.delete_revisions(*commits)
    strategy.execute()
    return strategy.expected_freed_size
