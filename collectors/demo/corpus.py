"""The demo's text and tokenizer: the Python standard library's own source, which every install has.

    corpus = prepare_corpus(seed=0)                      # train_docs / heldout_docs, split by seed
    write_jsonl(corpus.heldout_docs, "demo/heldout.jsonl")  # for `layerdb collect --data`
    tokenizer = train_tokenizer(corpus.train_docs, 2048, "demo/tokenizer")
    ids = encode_documents(tokenizer, corpus.train_docs, max_tokens=600_000)
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

EOS = "<|endoftext|>"  # Pythia's one special token: bos = eos = unk
VERY_LONG = 10**30  # tokenizer's model_max_length: no warning on long documents (Pythia's is ~1e30 too)

# Directories of the standard library that are not library source (tests hold odd encodings on purpose).
SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})


@dataclass(frozen=True)
class Document:
    path: str  # relative to the stdlib folder, e.g. "json/decoder.py"
    text: str


@dataclass(frozen=True)
class Corpus:
    train_docs: list[Document]
    heldout_docs: list[Document]  # never seen in training; the collector evaluates on these

    def fingerprint(self) -> str:
        """A hash of the split and its texts: a model trained on another corpus is not reused."""
        h = hashlib.sha1()
        for tag, docs in (("train", self.train_docs), ("heldout", self.heldout_docs)):
            for doc in docs:
                h.update(f"{tag}\0{doc.path}\0".encode())
                h.update(doc.text.encode())
        return h.hexdigest()


def stdlib_documents(root: str | os.PathLike | None = None) -> list[Document]:
    """Every UTF-8 ``.py`` file of the standard library (tests and site-packages skipped), by path."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if SKIPPED_DIRS.intersection(rel.parts):
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if text.strip():
            docs.append(Document(rel.as_posix(), text))
    return docs


def prepare_corpus(seed: int, heldout_fraction: float = 0.05, max_docs: int | None = None,
                   root: str | os.PathLike | None = None) -> Corpus:
    """Shuffle the stdlib files with ``seed`` and hold out a fraction of them from training.

    ``max_docs`` keeps only the first documents of the shuffled order (small corpora for tests).
    """
    assert 0 < heldout_fraction < 1
    docs = stdlib_documents(root)
    random.Random(seed).shuffle(docs)
    if max_docs is not None:
        docs = docs[:max_docs]
    n_heldout = max(1, round(len(docs) * heldout_fraction))
    if len(docs) < n_heldout + 1:
        raise ValueError(f"need at least 2 documents, found {len(docs)}")
    return Corpus(train_docs=docs[n_heldout:], heldout_docs=docs[:n_heldout])


def write_jsonl(docs: list[Document], path: str | os.PathLike) -> Path:
    """One document per line: ``{"text": ..., "path": ...}`` (the collector reads field ``text``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps({"text": doc.text, "path": doc.path}) + "\n")
    os.replace(tmp, path)
    return path


def train_tokenizer(docs: list[Document], vocab_size: int, out_dir: str | os.PathLike):
    """A byte-level BPE (like GPT-2/Pythia) trained on ``docs``; saved to ``out_dir`` and returned.

    Returns a ``PreTrainedTokenizerFast`` whose bos/eos/unk token is ``<|endoftext|>``; it adds no
    special tokens when encoding. Deterministic for the same documents in the same order.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],  # id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable
        show_progress=False,
    )
    bpe.train_from_iterator((doc.text for doc in docs), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=EOS, eos_token=EOS, unk_token=EOS,
        model_max_length=VERY_LONG, clean_up_tokenization_spaces=False,
    )
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def load_tokenizer(folder: str | os.PathLike):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(folder)


def encode_documents(tokenizer, docs: list[Document], max_tokens: int | None = None):
    """Token ids of ``docs`` in order, each followed by EOS, as one 1-D int64 tensor.

    The same layout the collector evaluates on (no special tokens inside a document, EOS between).
    Stops once ``max_tokens`` are collected, so only the documents needed are tokenized.
    """
    import torch

    eos = tokenizer.eos_token_id
    ids: list[int] = []
    chunk = 32  # documents per batch call into the Rust tokenizer
    for start in range(0, len(docs), chunk):
        batch = [doc.text for doc in docs[start:start + chunk]]
        for encoded in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            ids.extend(encoded)
            ids.append(eos)
        if max_tokens is not None and len(ids) >= max_tokens:
            del ids[max_tokens:]
            break
    return torch.tensor(ids, dtype=torch.long)
