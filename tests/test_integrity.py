"""The definitions of collectors.integrity (weight files, digest, keep rule) and collect's
bookkeeping of identical weights against what a store already holds (collectors.same_weights).
Over HTTP with the real client: tests/test_hub_collect.py."""
from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from collectors.checkpoints import ModelRef
from collectors.integrity import (RevisionWeights, assign_keepers, audit_revisions, keeper,
                                  weight_files, weights_digest)
from collectors.same_weights import SameWeights
from layerdb import LayerdbError, Store
from tests.fixtures.collect import sql_rows

MODEL = "acme/pythia"
REF = ModelRef(MODEL, MODEL, False)


def test_weight_files_are_what_from_pretrained_loads():
    assert weight_files(["model.safetensors", "pytorch_model.bin", "config.json"]) == [
        "model.safetensors"]  # both formats: transformers loads the safetensors
    shards = ["model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors",
              "model.safetensors.index.json"]
    assert weight_files(shards) == shards[1::-1]
    assert weight_files(["pytorch_model.bin", "training_args.bin", "optimizer.pt"]) == [
        "pytorch_model.bin"]
    assert weight_files(["sub/model.safetensors", "adapter_model.safetensors", "tf_model.h5"]) == []


def test_the_digest_is_sha256_over_sorted_path_sha_lines():
    shas = {"model-2.safetensors": "b" * 64, "model-1.safetensors": "a" * 64}
    lines = f"model-1.safetensors:{'a' * 64}\nmodel-2.safetensors:{'b' * 64}\n"
    assert weights_digest(shas) == hashlib.sha256(lines.encode()).hexdigest()


def test_the_highest_step_keeps_and_a_revision_without_a_step_defers():
    assert keeper([("step0", 0), ("main", None), ("step143000", 143000)]) == "step143000"
    assert keeper([("main", None), ("step0", 0)]) == "step0"
    assert keeper([("v1", None), ("main", None)]) == "main"


def audit(revision: str, step: int | None, digest: str | None) -> RevisionWeights:
    return RevisionWeights(revision, step, None, ("model.safetensors",), 100, digest,
                           frozenset({f"blob-{digest}"}), "hub")


def test_keepers_span_the_audited_revisions_and_the_store():
    audits = {r.revision: r for r in [audit("step0", 0, "final"), audit("main", None, "final"),
                                      audit("step2", 2, "early"), audit("step8", 8, None)]}
    stored = [dict(revision="step143000", step=143000, weights_digest="final"),
              dict(revision="step2", step=2, weights_digest="moved"),  # the audit supersedes it
              dict(revision="step4", step=4, weights_digest="moved")]
    assert assign_keepers(audits, stored) == {"step0": "step143000", "main": "step143000",
                                              "step143000": "step143000"}


def test_offline_the_digest_comes_from_the_cache_blob_names(tiny_hub):
    ref = ModelRef(tiny_hub.repo("gpt-neox"), tiny_hub.repo("gpt-neox"), False)
    audits = audit_revisions(ref, ["step2", "step4", "step1"])
    assert audits["step2"].digest == audits["step4"].digest != audits["step1"].digest
    assert [a.source for a in audits.values()] == ["cache"] * 3
    assert audits["step2"].files == ("model.safetensors",) and audits["step2"].bytes > 0
    with pytest.raises(LayerdbError, match="unknown model acme/none: .* not in the HF cache"):
        audit_revisions(ModelRef("acme/none", "acme/none", False), ["main"])
    with pytest.raises(LayerdbError, match=r"unknown revision step3 of layerdb-test/tiny-gpt-neox "
                                           r"\(nearest known: step2, step4; 6 known\)"):
        audit_revisions(ref, ["step3"])


CREATED = dt.datetime(2026, 1, 1)


def store_with(path, revisions: dict[str, tuple[int, str]]) -> str:
    """A store holding checkpoints rows (revision -> (step, digest)), fingerprinted like swept ones."""
    db = str(path / "s.duckdb")
    with Store.open(db) as store:
        store.upsert("checkpoints", [dict(model=MODEL, revision=r, step=step, weights_digest=d,
                                          weights_fingerprint=f"fp-{d}", created_at=CREATED)
                                     for r, (step, d) in revisions.items()])
    return db


def marks(db: str) -> list[tuple]:
    return sql_rows(db, "SELECT revision, same_weights_as FROM checkpoints ORDER BY revision")


def test_a_rerun_planning_an_early_step_marks_it_with_the_stored_keepers_weights(tmp_path):
    db = store_with(tmp_path, {"step143000": (143000, "final")})
    weights = SameWeights(db, REF, {"step0": audit("step0", 0, "final")},
                          [dict(revision="step143000", step=143000, weights_digest="final")])
    said = []
    assert weights.plan(["step0"], {"step143000"}, lambda text, **_: said.append(text)) == []
    assert marks(db) == [("step0", "step143000"), ("step143000", None)]  # written at once
    assert said == ["[yellow]same weights:[/] step0 has the weights of step143000 (weights "
                    "digest final): not downloaded, not swept"]


def test_a_higher_step_arriving_takes_over_and_the_stored_one_is_remarked_with_it(tmp_path):
    db = store_with(tmp_path, {"step0": (0, "final")})
    stored = [dict(model=MODEL, revision="step0", step=0, weights_digest="final",
                   weights_fingerprint="fp-final", created_at=CREATED)]
    weights = SameWeights(db, REF, {"step143000": audit("step143000", 143000, "final")}, stored)
    assert weights.plan(["step143000"], {"step0"}, lambda *a, **k: None) == ["step143000"]
    assert marks(db) == [("step0", None)]  # re-marked only with step143000's own rows
    assert [(r["revision"], r["same_weights_as"]) for r in weights._with["step143000"]] == [
        ("step0", "step143000")]


def test_a_stored_keeper_incomplete_for_this_request_is_swept_in_place_of_its_duplicate(tmp_path):
    db = store_with(tmp_path, {"step143000": (143000, "final")})
    weights = SameWeights(db, REF, {"step0": audit("step0", 0, "final")},
                          [dict(revision="step143000", step=143000, weights_digest="final")])
    said = []
    sweep = weights.plan(["step0"], set(), lambda text, **_: said.append(text))
    assert sweep == ["step143000"] and weights.duplicates == {"step0": "step143000"}
    assert said[0] == "step0 has the weights of step143000, which keeps their results: " \
                      "sweeping step143000"
    assert marks(db) == [("step143000", None)]  # step0's row waits for step143000's results


@pytest.mark.parametrize("sweep_duplicates", [False, True])
def test_kept_fingerprints_are_the_unmarked_ones(tmp_path, sweep_duplicates):
    stored = [dict(revision="step2", step=2, weights_fingerprint="a", same_weights_as="step4"),
              dict(revision="step4", step=4, weights_fingerprint="a"),
              dict(revision="step1", step=1, weights_fingerprint="b"),
              dict(revision="main", step=None, weights_fingerprint="b")]
    weights = SameWeights(str(tmp_path / "none.duckdb"), REF, {}, stored, sweep_duplicates)
    expected = None if sweep_duplicates else {"a": ("step4", 4), "b": ("step1", 1)}
    assert weights.kept_fingerprints() == expected
