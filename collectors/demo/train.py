"""Train the demo's tiny Pythia-style models on CPU and cache their checkpoints like hub revisions.

    result = train_demo("demo", seed=0, progress=callback)
    # then, with HF_HOME=demo/hf_home and HF_HUB_OFFLINE=1 set before transformers is imported:
    # GPTNeoXForCausalLM.from_pretrained("demo/pythia-6l", revision="step64")

Layout of the demo folder::

    heldout.jsonl              held-out documents (never trained on), field "text"
    tokenizer/                 the byte-level BPE, with tokenizer_manifest.json
    hf_home/hub/models--demo--pythia-6l/...   revisions step0, step1, 2, 4, ..., final, and main
    train/demo--pythia-6l.json the manifest: spec, seed, losses; a rerun with the same one reuses it

A plain loop: AdamW, linear warmup then cosine decay, gradient clipping, no dropout. Deterministic for a
seed: the init comes from ``torch.manual_seed(seed)``, the batches from a generator seeded with it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..cpu_malloc import tune_glibc_malloc
from ..hub_cache import add_revision, hub_cache_of, repo_cache_dir
from .corpus import (Corpus, encode_documents, load_tokenizer, prepare_corpus, train_tokenizer,
                     write_jsonl)
from .specs import DEMO_VOCAB_SIZE, FULL, DemoModelSpec

# progress(key, done, total, message): one bar per key ("corpus", "tokenizer", or a repo id).
ProgressFn = Callable[[str, int, int, str], None]


@dataclass
class TrainedModel:
    repo_id: str
    revisions: list[str]  # "step0", "step1", ... in step order; "main" also points at the last
    steps: int
    n_params: int
    final_loss: float  # mean training loss over the last eighth of the steps, at most 50 (nats/token)
    losses: list[float]  # training loss of every step, 1..steps
    train_seconds: float  # of the run that trained it (a reused model keeps its original figure)
    reused: bool = False


@dataclass
class DemoTraining:
    out_dir: Path
    hf_home: Path  # set HF_HOME to this (and HF_HUB_OFFLINE=1) to load the models by repo id
    heldout_path: Path  # pass as `layerdb collect --data`
    tokenizer_dir: Path
    models: list[TrainedModel] = field(default_factory=list)
    seconds: float = 0.0


def checkpoint_steps(steps: int) -> list[int]:
    """Pythia's log-spaced start: 0, 1, 2, 4, ... below ``steps``, then ``steps`` itself."""
    return sorted({0, steps} | {2**i for i in range(steps.bit_length()) if 2**i < steps})


def train_demo(out_dir: str | os.PathLike, seed: int = 0, specs=FULL.specs,
               vocab_size: int = DEMO_VOCAB_SIZE, max_docs: int | None = None,
               progress: ProgressFn | None = None, threads: int | None = None) -> DemoTraining:
    """Everything the demo trains: corpus split, held-out jsonl, tokenizer, one model per spec.

    Reuses the tokenizer and every model whose manifest matches (spec, seed, corpus, tokenizer).
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    report = progress or (lambda *args: None)
    report("corpus", 0, 1, "reading the standard library's source")
    corpus = prepare_corpus(seed, max_docs=max_docs)
    heldout_path = write_jsonl(corpus.heldout_docs, out_dir / "heldout.jsonl")
    report("corpus", 1, 1, f"corpus: {len(corpus.train_docs)} train / "
                           f"{len(corpus.heldout_docs)} held-out files")
    tokenizer = demo_tokenizer(corpus, vocab_size, out_dir / "tokenizer", report)
    result = DemoTraining(out_dir, out_dir / "hf_home", heldout_path, out_dir / "tokenizer")
    tokens = None  # the training stream, encoded once for all models that need training
    for spec in specs:
        trained = _reusable(spec, seed, corpus, tokenizer, out_dir, result.hf_home)
        if trained is None:
            if tokens is None:
                report(spec.repo_id, 0, spec.steps, f"{spec.repo_id}: tokenizing the training text")
                tokens = encode_documents(tokenizer, corpus.train_docs,
                                          max_tokens=max(_stream_tokens(s) for s in specs))
            trained = train_demo_model(spec, corpus, tokenizer, out_dir, result.hf_home, seed,
                                       progress, threads=threads, tokens=tokens)
        else:
            report(spec.repo_id, spec.steps, spec.steps,
                   f"{spec.repo_id}: reused, loss {trained.final_loss:.3f}")
        result.models.append(trained)
    result.seconds = time.perf_counter() - start
    return result


def demo_tokenizer(corpus: Corpus, vocab_size: int, folder: Path, report: ProgressFn):
    """The tokenizer saved in ``folder`` if it was trained on this corpus, else a new one."""
    manifest = folder / "tokenizer_manifest.json"
    key = {"corpus": corpus.fingerprint(), "vocab_size": vocab_size}
    if manifest.exists() and json.loads(manifest.read_text()) == key:
        report("tokenizer", 1, 1, f"tokenizer: reused ({vocab_size} tokens)")
        return load_tokenizer(folder)
    report("tokenizer", 0, 1, f"training a {vocab_size}-token byte-level BPE")
    tokenizer = train_tokenizer(corpus.train_docs, vocab_size, folder)
    manifest.write_text(json.dumps(key))
    report("tokenizer", 1, 1, f"tokenizer: {len(tokenizer)} tokens")
    return tokenizer


def pythia_config(spec: DemoModelSpec, tokenizer):
    """A GPT-NeoX config shaped like Pythia's: parallel residual, partial rotary, untied output."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=spec.d_model, num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads, intermediate_size=4 * spec.d_model, hidden_act="gelu",
        max_position_embeddings=spec.seq_len, use_parallel_residual=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
        tie_word_embeddings=False, attention_dropout=0.0, hidden_dropout=0.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )


def train_demo_model(spec: DemoModelSpec, corpus: Corpus, tokenizer, out_dir: str | os.PathLike,
                     hf_home: str | os.PathLike, seed: int, progress: ProgressFn | None = None,
                     threads: int | None = None, tokens: torch.Tensor | None = None) -> TrainedModel:
    """Train one model from scratch and cache its checkpoints as revisions of ``spec.repo_id``.

    ``tokens``: the encoded training stream, if the caller has it already (else encoded here).
    Returns the manifest's model if an identical one was trained before.
    """
    from transformers import GPTNeoXForCausalLM

    out_dir, hf_home = Path(out_dir), Path(hf_home)
    reused = _reusable(spec, seed, corpus, tokenizer, out_dir, hf_home)
    if reused is not None:
        return reused
    report = progress or (lambda *args: None)
    report(spec.repo_id, 0, spec.steps, f"{spec.repo_id}: preparing")
    if tokens is None:
        tokens = encode_documents(tokenizer, corpus.train_docs, max_tokens=_stream_tokens(spec))
    batches = _batches(tokens[:_stream_tokens(spec)], spec, seed)  # a function of this spec alone
    _manifest_path(out_dir, spec.repo_id).unlink(missing_ok=True)
    shutil.rmtree(repo_cache_dir(spec.repo_id, hub_cache_of(hf_home)), ignore_errors=True)  # no stale revisions
    staging = out_dir / "train" / _slug(spec.repo_id)
    save_at = set(checkpoint_steps(spec.steps))
    losses: list[float] = []
    tune_glibc_malloc()  # fewer page faults per step (collectors.cpu_malloc)
    start = time.perf_counter()
    with _torch_threads(threads), _no_progress_bars():
        torch.manual_seed(seed)
        model = GPTNeoXForCausalLM(pythia_config(spec, tokenizer))
        model.train()
        n_params = sum(p.numel() for p in model.parameters())
        optimizer = _adamw(model, spec)
        _save_checkpoint(model, tokenizer, staging, spec.repo_id, 0, hf_home)
        for step in range(1, spec.steps + 1):
            lr = learning_rate(spec, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = next(batches)  # (B, T) each
            logits = model(input_ids=x).logits  # (B, T, V)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            optimizer.step()
            losses.append(loss.item())
            if step in save_at:
                _save_checkpoint(model, tokenizer, staging, spec.repo_id, step, hf_home)
            report(spec.repo_id, step, spec.steps, f"{spec.repo_id}: step {step}, loss {losses[-1]:.3f}")
    add_revision(staging / f"step{spec.steps}", spec.repo_id, "main", hf_home)
    shutil.rmtree(staging, ignore_errors=True)
    trained = TrainedModel(
        repo_id=spec.repo_id, revisions=[f"step{s}" for s in sorted(save_at)], steps=spec.steps,
        n_params=n_params, final_loss=_final_loss(losses), losses=losses,
        train_seconds=time.perf_counter() - start)
    _write_manifest(out_dir, _reuse_key(spec, seed, corpus, tokenizer), trained)
    return trained


def learning_rate(spec: DemoModelSpec, step: int) -> float:
    """Linear warmup to ``spec.lr``, then cosine decay to ``spec.lr * spec.min_lr_ratio`` (step 1-based)."""
    if step <= spec.warmup_steps:
        return spec.lr * step / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    floor = spec.lr * spec.min_lr_ratio
    return floor + (spec.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def rich_progress_callback(progress) -> ProgressFn:
    """Adapt a ``rich.progress.Progress`` to ``ProgressFn``: one task per key."""
    tasks: dict[str, int] = {}

    def update(key: str, done: int, total: int, message: str) -> None:
        if key not in tasks:
            tasks[key] = progress.add_task(message, total=total)
        progress.update(tasks[key], completed=done, total=total, description=message)

    return update


# ---------------------------------------------------------------------------------------------------


STREAM_FACTOR = 2  # the training stream holds this many times the tokens a run reads


def _stream_tokens(spec: DemoModelSpec) -> int:
    return STREAM_FACTOR * spec.steps * spec.tokens_per_step


def _batches(tokens: torch.Tensor, spec: DemoModelSpec, seed: int):
    """Windows of T + 1 tokens at random offsets (nanoGPT style), from a generator seeded by ``seed``."""
    B, T = spec.batch_size, spec.seq_len
    if len(tokens) < T + 1:
        raise ValueError(f"the corpus gives {len(tokens)} tokens, fewer than one window of {T + 1}")
    generator = torch.Generator().manual_seed(seed)
    span = torch.arange(T + 1)
    while True:
        starts = torch.randint(len(tokens) - T, (B,), generator=generator)
        window = tokens[starts[:, None] + span]  # (B, T + 1)
        yield window[:, :-1], window[:, 1:]


def _adamw(model, spec: DemoModelSpec):
    """AdamW with weight decay on matrices only (not on biases, norms)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": spec.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=spec.lr, betas=(0.9, 0.95), eps=1e-8)


def _final_loss(losses: list[float]) -> float:
    """A smoothed end-of-training loss: one step's batch of 8 sequences varies by ~0.3 nats."""
    tail = losses[-max(1, min(50, len(losses) // 8)):]
    return sum(tail) / len(tail)


def _save_checkpoint(model, tokenizer, staging: Path, repo_id: str, step: int, hf_home: Path) -> None:
    folder = staging / f"step{step}"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    add_revision(folder, repo_id, f"step{step}", hf_home)
    if step > 0:  # keep only the latest folder (the final one becomes "main")
        for old in staging.glob("step*"):
            if old != folder:
                shutil.rmtree(old)


@contextlib.contextmanager
def _no_progress_bars():
    """Silence save_pretrained's tqdm bars, which would break up the caller's rich display."""
    from transformers.utils import logging

    enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _slug(repo_id: str) -> str:
    return repo_id.replace("/", "--")


def _reuse_key(spec: DemoModelSpec, seed: int, corpus: Corpus, tokenizer) -> dict:
    vocab = hashlib.sha1(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
    return {"spec": asdict(spec), "seed": seed, "corpus": corpus.fingerprint(), "tokenizer": vocab,
            "torch": torch.__version__}


def _manifest_path(out_dir: Path, repo_id: str) -> Path:
    return out_dir / "train" / f"{_slug(repo_id)}.json"


def _write_manifest(out_dir: Path, key: dict, trained: TrainedModel) -> None:
    path = _manifest_path(out_dir, trained.repo_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "model": asdict(trained)}, indent=1))
    os.replace(tmp, path)


def _reusable(spec: DemoModelSpec, seed: int, corpus: Corpus, tokenizer, out_dir: Path,
              hf_home: Path) -> TrainedModel | None:
    """The manifest's model if it was trained with the same key and its revisions are all cached."""
    path = _manifest_path(Path(out_dir), spec.repo_id)
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    if saved.get("key") != _reuse_key(spec, seed, corpus, tokenizer):
        return None
    refs = repo_cache_dir(spec.repo_id, hub_cache_of(hf_home)) / "refs"
    trained = TrainedModel(**{**saved["model"], "reused": True})
    if not all((refs / rev).exists() for rev in trained.revisions + ["main"]):
        return None
    return trained
