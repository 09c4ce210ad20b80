"""Evaluation tokens: the fixed token sequences every checkpoint of a model is scored on.

Exactly: documents are tokenized with the checkpoint's tokenizer without special tokens, joined with
the tokenizer's EOS token *between* documents, cut into consecutive non-overlapping sequences of
``seq_len`` tokens, and the first ``floor(tokens / seq_len)`` sequences are kept (fewer when the data
runs out, never a partial one).  The eval-set id is a hash of the token ids and ``seq_len``.
``n_bytes`` counts the UTF-8 bytes of the document text the kept tokens cover (EOS separators cover
none), so losses convert to bits per byte across tokenizers.  ``tokenizer_fingerprint`` names what
maps text to ids, so a store can tell whether two models' tokenizers differ.

Sources: a ``.txt`` file (one document), ``.jsonl`` (one document per line, field ``text``),
``.parquet`` (column ``text``) or ``hf:NAME[:SPLIT]`` (the ``datasets`` library, column ``text``,
split ``train`` unless given).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from layerdb.errors import LayerdbError, first_line


@dataclass(frozen=True)
class EvalTokens:
    ids: np.ndarray  # (n_sequences, seq_len) int64
    eval_set: str  # hash of the ids and seq_len
    n_bytes: int  # UTF-8 bytes of the text the ids cover
    source: str
    tokenizer: str

    @property
    def n_sequences(self) -> int:
        return int(self.ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.ids.shape[1])

    @property
    def n_tokens(self) -> int:
        """Predicted tokens: positions 1..seq_len-1 of every sequence."""
        return self.n_sequences * (self.seq_len - 1)

    def check_fits(self, config, model: str) -> None:
        """Raise a one-line LayerdbError unless every sequence fits the model's context and
        every id its vocabulary (a tokenizer from another model would not)."""
        context = max_context(config)
        if context is not None and self.seq_len > context:
            raise LayerdbError(f"--seq-len {self.seq_len} is above the context of {model} "
                               f"({context} tokens)")
        vocab = getattr(config, "vocab_size", None)
        if vocab is not None and int(self.ids.max()) >= vocab:
            raise LayerdbError(f"token id {int(self.ids.max())} is outside the vocabulary of "
                               f"{model} ({vocab}): tokenizer and model do not match")

    def row(self) -> dict:
        """The eval_sets row."""
        return {"eval_set": self.eval_set, "name": f"{_short_source(self.source)}:"
                f"{self.n_sequences}x{self.seq_len}", "source": self.source,
                "tokenizer": self.tokenizer, "n_sequences": self.n_sequences,
                "seq_len": self.seq_len, "n_tokens": self.n_tokens, "n_bytes": self.n_bytes}


def max_context(config) -> int | None:
    """The longest sequence a model config allows, under whichever name its family uses."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def eval_set_id(ids: np.ndarray) -> str:
    ids = np.ascontiguousarray(ids, dtype="<i8")
    h = hashlib.sha256(f"seq_len={ids.shape[1]};".encode())
    h.update(ids.tobytes())
    return h.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer) -> str:
    """What turns text into token ids, as one short string (eval_sets.tokenizer): equal
    fingerprints mean equal ids for equal text.  For a fast tokenizer, a hash of its backend's
    model (vocabulary, merges), normalizer, pre-tokenizer and added tokens (not truncation,
    padding, post-processor or decoder, which do not change the ids of a document); otherwise a
    hash of its vocabulary.  Example: ``BPE 50277 tokens, sha256 1f0c6a7e9b2d4c38``."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if tokenizer.is_fast else None
    if backend is not None:
        spec = json.loads(backend.to_str())
        kind = spec["model"].get("type", "fast")
        what = {"model": spec["model"], "normalizer": spec.get("normalizer"),
                "pre_tokenizer": spec.get("pre_tokenizer"),
                "added_tokens": [(t["id"], t["content"]) for t in spec.get("added_tokens", [])]}
    else:
        kind = type(tokenizer).__name__
        what = sorted(tokenizer.get_vocab().items())
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode("utf-8")).hexdigest()
    return f"{kind} {len(tokenizer)} tokens, sha256 {digest[:16]}"


def build_eval_tokens(tokenizer, documents: Iterable[str], tokens: int, seq_len: int,
                      source: str = "", tokenizer_name: str = "") -> EvalTokens:
    """Tokenize ``documents`` lazily until ``floor(tokens/seq_len)`` sequences are filled."""
    if seq_len < 2:
        raise LayerdbError(f"--seq-len must be at least 2 (got {seq_len})")
    n_wanted = tokens // seq_len
    if n_wanted < 1:
        raise LayerdbError(f"--tokens {tokens} is less than one sequence of --seq-len {seq_len}")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise LayerdbError("the tokenizer has no EOS token to put between documents")
    budget = n_wanted * seq_len
    ids: list[int] = []
    pieces: list[tuple[int, str, list[int], bool]] = []  # (start in ids, doc, token ends, whole?)
    for i, doc in enumerate(documents):
        if i > 0:
            ids.append(eos)
        if len(ids) >= budget:
            break
        doc_ids, ends = _tokenize(tokenizer, doc, budget - len(ids) + 1)
        whole = len(doc_ids) <= budget - len(ids)
        doc_ids, ends = doc_ids[: budget - len(ids)], ends[: budget - len(ids)]
        pieces.append((len(ids), doc, ends, whole))
        ids.extend(doc_ids)
        if len(ids) >= budget:
            break
    n_sequences = min(n_wanted, len(ids) // seq_len)
    if n_sequences == 0:
        where = f" in {source}" if source else ""
        raise LayerdbError(f"the data{where} holds {len(ids)} tokens, fewer than one sequence "
                           f"of --seq-len {seq_len}")
    cut = n_sequences * seq_len
    kept = np.asarray(ids[:cut], dtype=np.int64).reshape(n_sequences, seq_len)
    n_bytes = sum(_bytes_covered(doc, ends, whole, cut - start)
                  for start, doc, ends, whole in pieces if start < cut)
    return EvalTokens(kept, eval_set_id(kept), n_bytes, source,
                      tokenizer_name or getattr(tokenizer, "name_or_path", ""))


def _tokenize(tokenizer, doc: str, limit: int) -> tuple[list[int], list[int]]:
    """At most ``limit`` token ids of ``doc``, and the character offset where each one ends."""
    if tokenizer.is_fast:
        enc = tokenizer(doc, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"][:limit]), [e for _, e in enc["offset_mapping"][:limit]]
    ids = list(tokenizer(doc, add_special_tokens=False)["input_ids"][:limit])
    return ids, [len(tokenizer.decode(ids[: j + 1])) for j in range(len(ids))]  # slow, rare


def _bytes_covered(doc: str, ends: list[int], whole: bool, n_kept: int) -> int:
    """UTF-8 bytes of ``doc`` covered by its first ``n_kept`` tokens."""
    if whole and n_kept >= len(ends):
        return len(doc.encode("utf-8"))
    n_kept = min(n_kept, len(ends))
    return len(doc[: max(ends[:n_kept])].encode("utf-8")) if n_kept > 0 else 0


def read_documents(source: str) -> Iterator[str]:
    """Documents of a data source, lazily (see the module docstring).  A file that is not UTF-8
    text is refused in one line, naming the file and where its bytes stop being text."""
    if source.startswith("hf:"):
        yield from _hf_documents(source)
        return
    path = Path(source)
    if not path.is_file():
        raise LayerdbError(f"no data file {source} (expected .txt, .jsonl, .parquet or hf:NAME[:SPLIT])")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        yield _decode(path.read_bytes(), source)
    elif suffix == ".jsonl":
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                line = _decode(raw, f"{source} line {n}")
                if not line.strip():
                    continue
                try:
                    yield _text_field(json.loads(line), f"{source} line {n}")
                except json.JSONDecodeError as exc:
                    raise LayerdbError(f"{source} line {n} is not JSON: {exc.msg}") from None
    elif suffix == ".parquet":
        yield from _parquet_documents(path, source)
    else:
        raise LayerdbError(f"unknown data format {suffix or source!r}: use .txt, .jsonl, .parquet or hf:NAME[:SPLIT]")


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LayerdbError(f"{where} is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}): "
                           "give a text file") from None


def _parquet_documents(path: Path, source: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise LayerdbError(f"cannot read {source} as Parquet: {first_line(exc)}") from None
    schema = pf.schema_arrow
    if "text" not in schema.names:
        raise LayerdbError(f"{source} has no column 'text' (columns: {', '.join(schema.names)})")
    kind = schema.field("text").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise LayerdbError(f"{source}: column 'text' holds {kind}, not strings")
    for batch in pf.iter_batches(columns=["text"], batch_size=1024):
        yield from (t for t in batch.column(0).to_pylist() if t is not None)


def _text_field(record, where: str) -> str:
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise LayerdbError(f"{where} has no string field 'text'")
    return record["text"]


def _hf_documents(source: str) -> Iterator[str]:
    name, _, split = source[3:].partition(":")
    if not name:
        raise LayerdbError(f"bad data source {source!r}: expected hf:NAME[:SPLIT]")
    try:
        import datasets
    except ImportError:
        raise LayerdbError(f"--data {source} needs the datasets library: pip install 'layerdb[datasets]'") from None
    try:
        dataset = datasets.load_dataset(name, split=split or "train")
    except Exception as exc:  # datasets raises many kinds; the user needs one line
        raise LayerdbError(f"cannot load dataset {name}: {first_line(exc)}") from None
    if "text" not in dataset.column_names:
        raise LayerdbError(f"dataset {name} has no column 'text' (columns: {', '.join(dataset.column_names)})")
    for record in dataset:
        yield record["text"]


def _short_source(source: str) -> str:
    return source if source.startswith("hf:") else Path(source).name
