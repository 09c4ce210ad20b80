"""Collect's bookkeeping of revisions with identical weights; the rules are collectors.integrity's.

``SameWeights.read(db_path, ref, revisions, sweep_duplicates)`` audits the revisions to do (hub LFS
digests, no download) and reads the store's checkpoints; then

- ``plan(todo, done, say)``: the revisions to sweep.  In each group with one digest only the
  keeper is swept; the others get a ``checkpoints`` row with ``same_weights_as`` and no results,
  written in the keeper's transaction (at once when the keeper is already complete).  A keeper
  from the store that is not complete for this request is swept in their place.  Stored rows whose
  keeper changes (a higher step arrived) are re-marked in the same transaction; their results
  stay, and the charts leave them out.
- ``complete(rows)``: a swept checkpoint's rows with its digest, its mark and the rows that go
  with it; after loading, a fingerprint equal to a kept revision's marks the one that defers.
- ``duplicate(dup)``: the row of a revision found after loading to hold a kept revision's weights
  (``DuplicateWeights``, raised by ``run_checkpoint`` before the sweep).
- ``patterns(revision)``, ``blobs_needed(revisions)``: what a download fetches, and the cache
  blobs revisions still to come need (eviction keeps them).
"""
from __future__ import annotations

import dataclasses

from layerdb.errors import LayerdbError
from layerdb.revisions import parse_revision
from layerdb.schema import arrow_rows

from .checkpoints import ModelRef
from .integrity import RevisionWeights, assign_keepers, audit_revisions, keeper
from .rows import now
from .writer import stored_checkpoints, write_checkpoints


class DuplicateWeights(Exception):
    """Raised after loading: ``revision`` holds the weights of the kept ``same_as``; not swept."""

    def __init__(self, revision: str, same_as: str, fingerprint: str, commit: str | None):
        super().__init__(revision, same_as, fingerprint, commit)
        self.revision, self.same_as, self.fingerprint, self.commit = (revision, same_as,
                                                                      fingerprint, commit)


class SameWeights:
    def __init__(self, db_path: str, ref: ModelRef, audits: dict[str, RevisionWeights],
                 stored: list[dict], sweep_duplicates: bool = False):
        self.db_path, self.ref, self.audits = db_path, ref, audits
        self.stored = {row["revision"]: row for row in stored}
        self.sweep_duplicates = sweep_duplicates
        self.keepers = assign_keepers(audits, stored)
        self.duplicates: dict[str, str] = {}  # planned revision -> the revision keeping its results
        self._with: dict[str, list[dict]] = {}  # keeper -> checkpoints rows written with it

    @classmethod
    def read(cls, db_path: str, ref: ModelRef, revisions: list[str],
             sweep_duplicates: bool = False) -> SameWeights:
        audits = audit_revisions(ref, revisions) if revisions and not ref.local else {}
        return cls(db_path, ref, audits, stored_checkpoints(db_path, ref.name), sweep_duplicates)

    # -- before the sweep ----------------------------------------------------------------------
    def plan(self, todo: list[str], done: set[str], say) -> list[str]:
        """The revisions to sweep, in order; writes the rows of duplicates whose keeper is done."""
        sweep: list[str] = []
        at_once: list[dict] = []  # rows whose keeper is done: written now
        for revision in todo:
            kept_by = self.keepers.get(revision, revision)
            if kept_by == revision or self.sweep_duplicates:
                sweep.append(revision)
                if kept_by != revision:
                    self.duplicates[revision] = kept_by
                continue
            self.duplicates[revision] = kept_by
            row = self._row(revision, same_weights_as=kept_by)
            if kept_by in done:
                at_once.append(row)
                continue
            self._with.setdefault(kept_by, []).append(row)
            if kept_by not in todo and kept_by not in sweep:
                sweep.append(kept_by)
                try:  # for its download patterns and blobs; without, the defaults serve
                    self.audits.update(audit_revisions(self.ref, [kept_by]))
                except LayerdbError:
                    pass
                say(f"{revision} has the weights of {kept_by}, which keeps their results: "
                    f"sweeping {kept_by}", highlight=False)
        for revision, row in self.stored.items():  # stored rows whose keeper changed
            kept_by = self.keepers.get(revision)
            mark = None if kept_by == revision else kept_by
            if kept_by is None or revision in todo or row.get("same_weights_as") == mark:
                continue
            rewritten = dict(row, same_weights_as=mark)
            if kept_by in done:
                at_once.append(rewritten)
            else:
                self._with.setdefault(kept_by, []).append(rewritten)
        write_checkpoints(self.db_path, at_once)
        self._say_duplicates(say)
        return sweep

    def _say_duplicates(self, say) -> None:
        by_keeper: dict[str, list[str]] = {}
        for revision, kept_by in self.duplicates.items():
            by_keeper.setdefault(kept_by, []).append(revision)
        what = ("swept anyway (--sweep-duplicates)" if self.sweep_duplicates
                else "not downloaded, not swept")
        for kept_by, revisions in by_keeper.items():
            digest = (self.audits.get(kept_by) or self.audits[revisions[0]]).digest or ""
            have = "has" if len(revisions) == 1 else "have"
            say(f"[yellow]same weights:[/] {', '.join(revisions)} {have} the weights of {kept_by} "
                f"(weights digest {digest[:12]}): {what}", highlight=False)

    def _row(self, revision: str, **columns) -> dict:
        audit = self.audits.get(revision)
        if audit is not None:
            row = audit.row(self.ref.name)
        else:
            parsed = parse_revision(revision)
            row = dict(model=self.ref.name, revision=revision, step=parsed.step,
                       tokens_seen=parsed.tokens)
        return dict(row, created_at=now(), **columns)

    # -- during the sweep ----------------------------------------------------------------------
    def patterns(self, revision: str) -> list[str] | None:
        audit = self.audits.get(revision)
        return audit.download_patterns if audit is not None else None

    def blobs_needed(self, revisions) -> frozenset[str]:
        """The HF cache blobs these revisions' downloads use (identical files share blobs)."""
        return frozenset().union(*(self.audits[r].blobs for r in revisions if r in self.audits))

    def kept_fingerprints(self) -> dict[str, tuple[str, int | None]] | None:
        """fingerprint -> (revision, step) of the kept revisions, for the check after loading
        (None with --sweep-duplicates: nothing is skipped)."""
        if self.sweep_duplicates:
            return None
        kept: dict[str, tuple[str, int | None]] = {}
        for row in self.stored.values():
            fp = row.get("weights_fingerprint")
            if fp and not row.get("same_weights_as"):
                candidates = [(row["revision"], row.get("step"))] + ([kept[fp]] if fp in kept else [])
                chosen = keeper(candidates)
                kept[fp] = next(c for c in candidates if c[0] == chosen)
        return kept

    def complete(self, rows):
        """``rows`` (SweepRows) with the checkpoint's digest and mark, and the rows written with it."""
        row = rows.checkpoints.to_pylist()[0]
        revision = row["revision"]
        audit = self.audits.get(revision)
        if audit is not None:
            row.update(audit.weight_columns(), commit_hash=row["commit_hash"] or audit.commit)
        kept_by = self.keepers.get(revision, revision)
        row["same_weights_as"] = None if kept_by == revision else kept_by
        extra = self._with.pop(revision, [])
        other = (self.kept_fingerprints() or {}).get(row["weights_fingerprint"])
        if other and other[0] != revision and row["same_weights_as"] is None:
            if keeper([(revision, row["step"]), other]) == revision:  # it takes over
                extra += [dict(r, same_weights_as=revision) for r in self.stored.values()
                          if other[0] in (r["revision"], r.get("same_weights_as"))]
            else:  # swept before the other was known (another task); marked, results kept
                row["same_weights_as"] = other[0]
        by_revision = {r["revision"]: r for r in extra if r["revision"] != revision}
        checkpoints = [row, *by_revision.values()]
        self._remember(checkpoints)
        return dataclasses.replace(rows, checkpoints=arrow_rows("checkpoints", checkpoints))

    def duplicate(self, dup: DuplicateWeights) -> None:
        """Write the row of a revision found after loading to hold ``dup.same_as``'s weights
        (with the rows that were to go with it, now pointing at ``dup.same_as``)."""
        self.duplicates[dup.revision] = dup.same_as
        moved = [dict(r, same_weights_as=dup.same_as) for r in self._with.pop(dup.revision, [])]
        rows = [self._row(dup.revision, weights_fingerprint=dup.fingerprint,
                          commit_hash=dup.commit, same_weights_as=dup.same_as)] + moved
        write_checkpoints(self.db_path, rows)
        self._remember(rows)

    def dropped(self, revision: str) -> None:
        """A keeper failed: the rows that were to go with it are dropped (written on a re-run)."""
        self._with.pop(revision, None)

    def _remember(self, rows: list[dict]) -> None:
        for row in rows:
            self.stored[row["revision"]] = dict(self.stored.get(row["revision"], {}), **row)
