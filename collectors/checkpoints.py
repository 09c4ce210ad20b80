"""Which checkpoints to sweep, and loading one.

- ``resolve_model(model)``: a Hugging Face repo id or a local checkpoint folder -> ``ModelRef``.
- ``plan_revisions(ref, revisions, steps)``: ``--revision`` names plus ``--steps`` (all | log | a
  comma list) over the model's schedule (the revisions the hub, or else the local HF cache, lists
  whose names carry a step; Pythia's published one when neither can be read) -> revision names,
  in order, without repeats.
- ``load_config(ref, revision)``: the HF config; bad model/revision -> one-line LayerdbError.
- ``load_checkpoint(ref, revision, dtype, device)``: the model in eval mode, its family and the
  fingerprint of its weights.  Loading goes through ``from_pretrained(repo, revision=...)`` so the
  hub cache, ``HF_HOME`` and ``HF_HUB_OFFLINE`` behave as users expect.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layerdb.errors import LayerdbError, first_line
from layerdb.revisions import PYTHIA_STEPS, nearest_revisions, parse_revision, select_steps

from .families import Family, family_for
from .hub import hub_refs
from .hub_cache import is_commit, repo_cache_dir
from .placement import Placement, input_device

LOCAL_REVISION = "local"  # the revision stored for a local checkpoint folder


class CheckpointLoadError(LayerdbError):
    """The config was fine but the weights of one revision could not be loaded."""


@dataclass(frozen=True)
class ModelRef:
    name: str  # stored in models.model: the repo id, or the folder name of a local checkpoint
    source: str  # what from_pretrained is given: the repo id or the folder path
    local: bool


@dataclass
class Checkpoint:
    ref: ModelRef
    revision: str
    model: Any  # a *ForCausalLM in eval mode
    family: Family
    fingerprint: str  # hash of the loaded weights (names, dtypes, shapes, bytes)
    commit_hash: str | None  # resolved hub commit, where known
    dtype: Any  # torch dtype the weights were loaded in
    device: Any


def resolve_model(model: str) -> ModelRef:
    path = Path(model).expanduser()
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1  # ids: ORG/NAME
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LayerdbError(f"{model} is a folder but holds no config.json: not a checkpoint")
        return ModelRef(path.resolve().name, str(path.resolve()), True)
    if path.exists() or looks_like_path:
        raise LayerdbError(f"{model}: no such checkpoint folder")
    return ModelRef(model, model, False)


# -- revisions ---------------------------------------------------------------------------------
def step_schedule(ref: ModelRef) -> dict[int, str]:
    """step -> revision name for the model's checkpoints: the revisions the hub lists (or, offline
    or unreachable, the HF cache) whose names carry a step.  Pythia's published schedule serves
    only for a Pythia model when neither could be read."""
    if ref.local:
        return {}
    listed = known_revisions(ref.source)
    if listed is None:
        return {s: f"step{s}" for s in PYTHIA_STEPS} if "pythia" in ref.name.lower() else {}
    schedule: dict[int, str] = {}
    for revision in sorted(listed):
        step = parse_revision(revision).step
        if step is not None:
            schedule.setdefault(step, revision)
    return schedule


def plan_revisions(ref: ModelRef, revisions: tuple[str, ...] | list[str] = (),
                   steps: str | None = None) -> list[str]:
    """Revision names to sweep, in the order given (explicit ones first), without repeats."""
    if ref.local:
        if steps or any(r != LOCAL_REVISION for r in revisions):
            raise LayerdbError(f"{ref.source} is a local folder: --revision/--steps do not apply")
        return [LOCAL_REVISION]
    planned = list(revisions)
    if steps:
        schedule = step_schedule(ref)
        if not schedule:
            raise LayerdbError(f"no checkpoint schedule known for {ref.name} (no revisions named "
                               "by step in the hub or the HF cache); use --revision")
        try:
            planned += [schedule[s] for s in select_steps(steps, sorted(schedule))]
        except ValueError as exc:
            raise LayerdbError(str(exc)) from None
    planned = planned or ["main"]
    return list(dict.fromkeys(planned))


def known_revisions(repo_id: str) -> set[str] | None:
    """Branches and tags the hub lists (when reachable) and the refs of the local HF cache;
    None when neither could be read."""
    listed = hub_refs(repo_id)  # None offline, or unreachable hub, unknown repo: the cache
    names = None if listed is None else set(listed)
    refs_dir = repo_cache_dir(repo_id) / "refs"
    if refs_dir.is_dir():
        names = (names or set()) | {str(p.relative_to(refs_dir)) for p in refs_dir.rglob("*")
                                    if p.is_file()}
    return names


# -- loading -----------------------------------------------------------------------------------
def load_config(ref: ModelRef, revision: str):
    """The config of ``ref@revision`` (checks the model and revision exist, cheaply)."""
    from transformers import AutoConfig

    try:
        if ref.local:
            return AutoConfig.from_pretrained(ref.source)
        return AutoConfig.from_pretrained(ref.source, revision=revision)
    except Exception as exc:  # transformers/hub raise OSError, ValueError, KeyError ...
        raise LayerdbError(_explain_load_error(ref, revision, exc)) from None


def commit_hash(ref: ModelRef, revision: str) -> str | None:
    if ref.local:
        return None
    if is_commit(revision):
        return revision
    try:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(ref.source, "config.json", revision=revision))
        return path.parent.name if is_commit(path.parent.name) else None
    except Exception:
        return None


def load_checkpoint(ref: ModelRef, revision: str, dtype, device,
                    placement: Placement = Placement()) -> Checkpoint:
    """Load ``ref@revision`` in ``dtype`` on ``device`` (or spread by ``placement``'s device map),
    in eval mode, with PyTorch's scaled-dot-product attention, fingerprinted."""
    import torch
    from transformers import AutoModelForCausalLM

    config = load_config(ref, revision)
    family = family_for(config)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": "sdpa",
                              **placement.load_kwargs()}
    if not ref.local:
        kwargs["revision"] = revision
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.source, **kwargs)
    except Exception as exc:
        raise CheckpointLoadError(_explain_load_error(ref, revision, exc)) from None
    model.eval()
    model.requires_grad_(False)
    fingerprint = weights_fingerprint(model)
    if placement.device_map is None:
        model.to(torch.device(device))
    return Checkpoint(ref, revision, model, family, fingerprint, commit_hash(ref, revision),
                      dtype, input_device(model))


def weights_fingerprint(model) -> str | None:
    """sha256 over every parameter and buffer: name, dtype, shape and raw bytes (24 hex chars);
    None when a device map offloaded weights to disk (their bytes are not in memory)."""
    import torch

    h = hashlib.sha256()
    state = model.state_dict()
    if any(t.device.type == "meta" for t in state.values()):
        return None
    for name, tensor in sorted(state.items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # hashed in place, no copy
    return h.hexdigest()[:24]


def _explain_load_error(ref: ModelRef, revision: str, exc: Exception) -> str:
    from huggingface_hub import constants

    text = first_line(exc)
    if ref.local:
        return f"cannot load checkpoint {ref.source}: {text}"
    name = type(exc).__name__
    repo_dir = repo_cache_dir(ref.source)
    if "RepositoryNotFound" in name or (constants.HF_HUB_OFFLINE and not repo_dir.exists()):
        where = " (HF_HUB_OFFLINE is set and it is not in the HF cache)" if constants.HF_HUB_OFFLINE else ""
        return f"unknown model {ref.source}: not a local folder and not found on the hub{where}"
    if "RevisionNotFound" in name or (constants.HF_HUB_OFFLINE and not _cached(repo_dir, revision)):
        return unknown_revision_message(ref.source, revision)
    return f"cannot load {ref.source}@{revision}: {text}"


def unknown_revision_message(repo_id: str, revision: str) -> str:
    """One line naming an unknown revision and the nearest known ones."""
    known = known_revisions(repo_id) or set()
    if not known:
        return f"unknown revision {revision} of {repo_id} (no known revisions)"
    near = nearest_revisions(revision, known)
    return (f"unknown revision {revision} of {repo_id} (nearest known: {', '.join(near)}; "
            f"{len(known)} known)")


def _cached(repo_dir: Path, revision: str) -> bool:
    return (repo_dir / "refs" / revision).is_file() or (repo_dir / "snapshots" / revision).is_dir()
