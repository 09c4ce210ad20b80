"""Evaluation tokens built exactly as specified; data sources; revision planning."""
import hashlib
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from collectors.checkpoints import (ModelRef, known_revisions, plan_revisions, resolve_model,
                                   step_schedule)
from collectors.eval_tokens import (build_eval_tokens, eval_set_id, read_documents,
                                   tokenizer_fingerprint)
from layerdb.errors import LayerdbError
from layerdb.revisions import PYTHIA_STEPS, parse_revision
from tests.fixtures.hub import WORDS, build_char_tokenizer, build_tokenizer

EOS = 0


def ids_of(text):
    return [WORDS.index(w) + 2 for w in text.split()]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_documents_joined_by_eos_cut_into_full_sequences(tokenizer):
    docs = ["the a of", "and to", "in is it that"]
    et = build_eval_tokens(tokenizer, docs, tokens=7, seq_len=3)  # floor(7/3) = 2 sequences
    expected = ids_of("the a of") + [EOS] + ids_of("and to")
    assert et.ids.tolist() == [expected[:3], expected[3:]]
    assert et.ids.dtype == np.int64
    assert et.n_bytes == len("the a of") + len("and to")  # EOS covers no text
    assert (et.n_sequences, et.seq_len, et.n_tokens) == (2, 3, 4)


def test_a_document_cut_in_the_middle_counts_only_its_covered_bytes(tokenizer):
    docs = ["the a of", "and to", "in is it that"]
    et = build_eval_tokens(tokenizer, docs, tokens=9, seq_len=4)  # 2 sequences, 8 tokens
    stream = ids_of("the a of") + [EOS] + ids_of("and to") + [EOS] + ids_of("in is it that")
    assert et.ids.reshape(-1).tolist() == stream[:8]
    assert et.n_bytes == len("the a of") + len("and to") + len("in")


def test_data_shorter_than_asked_keeps_whole_sequences_only(tokenizer):
    docs = ["the a of and to in", "is it"]  # 6 + 1 + 2 = 9 tokens
    et = build_eval_tokens(tokenizer, docs, tokens=1000, seq_len=4)
    assert et.n_sequences == 2
    assert et.n_bytes == len("the a of and to in") + len("is")  # 8 tokens kept: "it" is cut off
    with pytest.raises(LayerdbError, match="9 tokens, fewer than one sequence of --seq-len 10"):
        build_eval_tokens(tokenizer, docs, tokens=1000, seq_len=10)
    with pytest.raises(LayerdbError, match="less than one sequence"):
        build_eval_tokens(tokenizer, docs, tokens=3, seq_len=4)


def test_eval_set_id_is_a_hash_of_ids_and_seq_len(tokenizer):
    docs = ["the a of and to in is it"]
    a = build_eval_tokens(tokenizer, docs, tokens=8, seq_len=4)
    b = build_eval_tokens(tokenizer, docs, tokens=8, seq_len=2)  # same ids, other shape
    expected = hashlib.sha256(b"seq_len=4;" + a.ids.astype("<i8").tobytes()).hexdigest()[:16]
    assert a.eval_set == expected == eval_set_id(a.ids)
    assert a.ids.reshape(-1).tolist() == b.ids.reshape(-1).tolist()
    assert a.eval_set != b.eval_set
    assert build_eval_tokens(tokenizer, docs, tokens=8, seq_len=4).eval_set == a.eval_set


def test_multibyte_text_counts_utf8_bytes(tokenizer):
    docs = ["the é a of", "and"]  # é is [UNK], 2 bytes in UTF-8
    et = build_eval_tokens(tokenizer, docs, tokens=6, seq_len=3)
    assert et.n_bytes == len("the é a of".encode()) + len("and")


def test_the_tokenizer_fingerprint_tells_tokenizers_apart(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    words = tokenizer_fingerprint(tokenizer)
    assert words.startswith("WordLevel 64 tokens, sha256 ") and len(words) == 44
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    reloaded.model_max_length = 7  # a setting that does not change the ids of a document
    assert tokenizer_fingerprint(reloaded) == words
    assert tokenizer_fingerprint(build_char_tokenizer()).startswith("WordLevel 30 tokens, ")
    assert tokenizer_fingerprint(build_char_tokenizer()) != words
    et = build_eval_tokens(tokenizer, ["the cat"], tokens=2, seq_len=2,
                           tokenizer_name=tokenizer_fingerprint(tokenizer))
    assert et.row()["tokenizer"] == words


def test_sources_read_the_same_documents(tmp_path):
    docs = ["the a of", "and to", "in is"]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs) + "\n")
    pq.write_table(pa.table({"text": docs}), tmp_path / "d.parquet")
    (tmp_path / "d.txt").write_text("the a of\nand to")
    assert list(read_documents(str(tmp_path / "d.jsonl"))) == docs
    assert list(read_documents(str(tmp_path / "d.parquet"))) == docs
    assert list(read_documents(str(tmp_path / "d.txt"))) == ["the a of\nand to"]  # one document


@pytest.mark.parametrize("content,name,message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00", "image.txt", r"image.txt is not UTF-8 text \(byte 0 is 0x89\)"),
    (b'{"text": "ok"}\n{"text": "\xff"}\n', "bytes.jsonl", r"bytes.jsonl line 2 is not UTF-8 text"),
    (b"PAR1 not really", "fake.parquet", "cannot read .*fake.parquet as Parquet"),
    ('{"text": "a"}\nnot json\n', "bad.jsonl", "line 2 is not JSON"),
    ('{"body": "a"}\n', "nofield.jsonl", "line 1 has no string field 'text'"),
    ("a", "data.csv", "unknown data format"),
    (None, "missing.txt", "no data file"),
    (None, "hf:", "expected hf:NAME"),
])
def test_bad_sources(tmp_path, content, name, message):
    path = str(tmp_path / name) if not name.startswith("hf:") else name
    if isinstance(content, bytes):
        (tmp_path / name).write_bytes(content)
    elif content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(LayerdbError, match=message):
        list(read_documents(path))


def test_hf_source_without_datasets_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` fails, installed or not
    with pytest.raises(LayerdbError, match="needs the datasets library"):
        list(read_documents("hf:NeelNanda/pile-10k"))


def test_revision_names_parse():
    assert (parse_revision("step1000").step, parse_revision("step1000").tokens) == (1000, None)
    olmo = parse_revision("stage1-step1000-tokens5B")
    assert (olmo.step, olmo.tokens) == (1000, 5 * 10**9)
    assert parse_revision("ckpt_123").step == 123
    assert parse_revision("main").step is None


def test_pythia_schedule_and_step_selection():
    # offline and not in the cache: neither lists revisions, so Pythia's published schedule serves
    ref = ModelRef("EleutherAI/pythia-160m", "EleutherAI/pythia-160m", False)
    assert known_revisions(ref.source) is None
    assert len(step_schedule(ref)) == 154
    assert step_schedule(ModelRef("acme/other", "acme/other", False)) == {}
    log = plan_revisions(ref, steps="log")
    assert log[:11] == ["step0"] + [f"step{2**i}" for i in range(10)]
    assert log[11:] == [f"step{1000 * 2**i}" for i in range(8)] + ["step143000"]
    assert plan_revisions(ref, steps="all") == [f"step{s}" for s in PYTHIA_STEPS]
    assert plan_revisions(ref, ["main"], steps="1000,0") == ["main", "step1000", "step0"]
    with pytest.raises(LayerdbError, match=r"\[1500\] are not in the checkpoint schedule "
                                           r"\(nearest: 1000, 2000\)"):
        plan_revisions(ref, steps="1500")
    with pytest.raises(LayerdbError, match="comma list"):
        plan_revisions(ref, steps="lots")


def test_a_pythia_named_model_uses_the_steps_it_has(tiny_hub):
    ref = resolve_model(tiny_hub.repo("pythia-named"))
    assert step_schedule(ref) == {0: "step0", 3: "step3"}
    assert plan_revisions(ref, steps="log") == ["step0", "step3"]  # not step512, which it lacks
    with pytest.raises(LayerdbError, match=r"step\(s\) \[512\] are not in the checkpoint schedule"):
        plan_revisions(ref, steps="512")


def test_schedule_from_the_cache_and_local_folders(tiny_hub):
    ref = resolve_model(tiny_hub.repo("gpt-neox"))
    assert step_schedule(ref) == {0: "step0", 1: "step1", 2: "step2", 4: "step4"}
    assert plan_revisions(ref, steps="log") == ["step0", "step1", "step2", "step4"]
    assert plan_revisions(ref, ["step2"], steps="2,4") == ["step2", "step4"]
    assert plan_revisions(ref) == ["main"]
    local = resolve_model(str(tiny_hub.local_folder))
    assert (local.name, local.local, plan_revisions(local)) == ("local-gpt2", True, ["local"])
    with pytest.raises(LayerdbError, match="local folder"):
        plan_revisions(local, steps="log")
    with pytest.raises(LayerdbError, match="no config.json"):
        resolve_model(str(tiny_hub.root))
    with pytest.raises(LayerdbError, match="no such checkpoint folder"):
        resolve_model(str(tiny_hub.root / "nothing-here"))


def test_nearest_revisions_by_step_or_by_spelling():
    from layerdb.revisions import nearest_revisions

    known = ["main", "step0", "step1", "step2", "step4", "step8", "v1.0"]
    assert nearest_revisions("step3", known) == ["step2", "step4"]
    assert nearest_revisions("step100", known) == ["step8"]
    assert nearest_revisions("mian", known) == ["main"]
    assert nearest_revisions("step3", ["main", "v1.0"]) == ["main", "v1.0"]
