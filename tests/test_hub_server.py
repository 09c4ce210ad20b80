"""The real huggingface_hub and transformers download code against the test hub over HTTP.

Each client runs in a subprocess (``run_client``): the client reads HF_ENDPOINT and HF_HUB_OFFLINE at
import, and this test session is offline. The server runs in a thread of the test process, so tests
set its faults and read its request log directly.
"""
from __future__ import annotations

import hashlib
import random
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.hub_server import PYTHIA_REPO, HubRepo, HubServer, git_blob_oid, run_client

CACHE = "hub/models--layerdb-test--hub-pythia"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _folder_bytes(repo: HubRepo, revision: str, name: str) -> bytes:
    return (repo.folders[revision] / name).read_bytes()


def _big_repo(size: int) -> HubRepo:
    """``layerdb-test/hub-big``: one LFS file, ``big.bin``, of ``size`` pseudo-random bytes."""
    repo = HubRepo("layerdb-test/hub-big")
    repo.add_revision("main", {"big.bin": random.Random(0).randbytes(size)})
    return repo


def test_list_repo_refs_gives_every_branch_and_its_commit(hub_server, hub_pythia, tmp_path):
    refs = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import HfApi
refs = HfApi().list_repo_refs("{PYTHIA_REPO}")
print(json.dumps({{"branches": {{b.name: [b.ref, b.target_commit] for b in refs.branches}},
                  "tags": refs.tags, "converts": refs.converts}}))
""")
    assert refs == {"branches": {name: [f"refs/heads/{name}", oid]
                                 for name, oid in hub_pythia.branches.items()},
                    "tags": [], "converts": []}
    assert len(set(hub_pythia.branches.values())) == 6  # identical content, distinct commits


def test_list_repo_tree_expand_gives_weight_sha256_across_pages(hub_server, hub_pythia, tmp_path):
    hub_server.expanded_tree_page_size = 3  # the hub pages expanded listings by 50; ours span pages
    trees = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import HfApi
out = {{}}
for rev in ["step0", "step1", "step2", "step4", "step8", "main"]:
    out[rev] = {{f.path: [f.blob_id, f.size, f.lfs and f.lfs.sha256, f.last_commit.oid]
                for f in HfApi().list_repo_tree("{PYTHIA_REPO}", revision=rev, expand=True)}}
print(json.dumps(out))
""")
    weights = {rev: tree["model.safetensors"][2] for rev, tree in trees.items()}
    assert weights["step0"] == weights["step1"] == weights["main"] == _sha256(
        _folder_bytes(hub_pythia, "main", "model.safetensors"))
    assert weights["step2"] == weights["step4"] == _sha256(
        _folder_bytes(hub_pythia, "step2", "model.safetensors"))
    assert weights["step8"] not in (weights["main"], weights["step2"])
    config = _folder_bytes(hub_pythia, "step8", "config.json")
    commit = hub_pythia.branches["step8"]
    assert trees["step8"]["config.json"] == [git_blob_oid(config), len(config), None, commit]
    assert sorted(trees["step8"]) == sorted(hub_pythia.commits[commit].files)
    pages = -(-len(trees["step8"]) // 3)
    assert hub_server.requests.count("GET", path="/api/models/*/tree/*") == 6 * pages


def test_get_paths_info_skips_missing_paths(hub_server, hub_pythia, tmp_path):
    infos = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import HfApi
infos = HfApi().get_paths_info("{PYTHIA_REPO}", ["model.safetensors", "config.json", "missing.txt"],
                               revision="step4")
print(json.dumps([[f.path, f.size, f.lfs and dict(f.lfs)] for f in infos]))
""")
    weights = hub_pythia.commit("step4").files["model.safetensors"]
    config = _folder_bytes(hub_pythia, "step4", "config.json")
    assert infos == [
        ["model.safetensors", weights.size,
         {"size": weights.size, "sha256": weights.sha256, "pointer_size": len(weights.pointer)}],
        ["config.json", len(config), None],
    ]


def test_hf_hub_download_caches_lfs_blobs_by_sha256_and_others_by_git_id(hub_server, hub_pythia,
                                                                        tmp_path):
    paths = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import hf_hub_download
print(json.dumps([hf_hub_download("{PYTHIA_REPO}", name, revision="step2")
                  for name in ["config.json", "model.safetensors"]]))
""")
    commit = hub_pythia.branches["step2"]
    cache = tmp_path / CACHE
    assert paths == [str(cache / "snapshots" / commit / name)
                     for name in ["config.json", "model.safetensors"]]
    assert (cache / "refs" / "step2").read_text() == commit
    config = _folder_bytes(hub_pythia, "step2", "config.json")
    weights = _folder_bytes(hub_pythia, "step2", "model.safetensors")
    files = hub_pythia.commit("step2").files
    assert sorted(p.name for p in (cache / "blobs").iterdir()) == sorted(
        [files["config.json"].etag, files["model.safetensors"].etag])
    assert Path(paths[0]).resolve() == cache / "blobs" / git_blob_oid(config)
    assert Path(paths[1]).resolve() == cache / "blobs" / _sha256(weights)
    assert Path(paths[0]).read_bytes() == config
    assert Path(paths[1]).read_bytes() == weights
    # the weights came from the CDN the hub redirected to, once
    assert [(r.host, r.method, r.status) for r in hub_server.requests.entries(file="model.safetensors")] \
        == [("hub", "HEAD", 302), ("cdn", "GET", 200)]


def test_hf_hub_download_by_commit_hash_and_from_resolve_without_redirect(hub_pythia, tmp_path):
    commit = hub_pythia.branches["step4"]
    with HubServer([hub_pythia], lfs_redirect=False) as server:
        path = run_client(server, tmp_path, f"""
import json
from huggingface_hub import hf_hub_download
print(json.dumps(hf_hub_download("{PYTHIA_REPO}", "model.safetensors", revision="{commit}")))
""")
        log = [(r.host, r.method, r.path, r.status) for r in server.requests.entries()]
    weights = _folder_bytes(hub_pythia, "step4", "model.safetensors")
    assert Path(path).resolve() == tmp_path / CACHE / "blobs" / _sha256(weights)
    assert Path(path).read_bytes() == weights
    resolve = f"/{PYTHIA_REPO}/resolve/{commit}/model.safetensors"
    assert log == [("hub", "HEAD", resolve, 200), ("hub", "GET", resolve, 200)]
    assert not (tmp_path / CACHE / "refs").exists()  # a commit hash needs no ref


def test_snapshot_download_fetches_every_file_of_the_revision(hub_server, hub_pythia, tmp_path):
    folder = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import snapshot_download
print(json.dumps(snapshot_download("{PYTHIA_REPO}", revision="step8")))
""")
    commit = hub_pythia.commit("step8")
    assert folder == str(tmp_path / CACHE / "snapshots" / commit.oid)
    assert (tmp_path / CACHE / "refs" / "step8").read_text() == commit.oid
    files = {p.relative_to(folder).as_posix(): p.read_bytes()
             for p in Path(folder).rglob("*") if p.is_file()}
    assert files == {path: f.data for path, f in commit.files.items()}
    assert hub_server.requests.count("GET", file="model.safetensors") == 1


def test_snapshot_download_with_allow_patterns_does_not_fetch_weights(hub_server, hub_pythia, tmp_path):
    folder = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import snapshot_download
print(json.dumps(snapshot_download("{PYTHIA_REPO}", revision="step2", allow_patterns=["*.json"])))
""")
    assert sorted(p.name for p in Path(folder).iterdir()) == [
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
    assert hub_server.requests.count(file="model.safetensors") == 0
    assert hub_server.requests.count("GET", file="*.json") == 4


def test_from_pretrained_step2_loads_the_weights_it_was_built_from(hub_server, hub_pythia, tmp_path):
    result = run_client(hub_server, tmp_path, f"""
import json, torch
torch.set_num_threads(1)
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
config = AutoConfig.from_pretrained("{PYTHIA_REPO}", revision="step2")
tokenizer = AutoTokenizer.from_pretrained("{PYTHIA_REPO}", revision="step2")
model = AutoModelForCausalLM.from_pretrained("{PYTHIA_REPO}", revision="step2")
def same(folder):
    local = AutoModelForCausalLM.from_pretrained(folder).state_dict()
    return all(torch.equal(t, local[k]) for k, t in model.state_dict().items())
print(json.dumps({{"model_type": config.model_type, "layers": config.num_hidden_layers,
                  "ids": tokenizer("the cat was here")["input_ids"],
                  "same_as_step2": same("{hub_pythia.folders["step2"]}"),
                  "same_as_step8": same("{hub_pythia.folders["step8"]}")}}))
""")
    assert result == {"model_type": "gpt_neox", "layers": 3, "ids": [2, 1, 11, 1],
                      "same_as_step2": True, "same_as_step8": False}
    assert hub_server.requests.count("GET", file="model.safetensors") == 1
    assert (tmp_path / CACHE / "refs" / "step2").read_text() == hub_pythia.branches["step2"]


@pytest.mark.parametrize("repo, revision, filename, error", [
    ("layerdb-test/no-such-repo", "main", "config.json", "RepositoryNotFoundError"),
    (PYTHIA_REPO, "step3", "config.json", "RevisionNotFoundError"),
    (PYTHIA_REPO, "step2", "missing.json", "RemoteEntryNotFoundError"),
])
def test_hub_error_codes_raise_the_clients_errors(hub_server, tmp_path, repo, revision, filename,
                                                  error):
    raised = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import errors, hf_hub_download
try:
    hf_hub_download("{repo}", "{filename}", revision="{revision}")
except errors.HfHubHTTPError as e:
    print(json.dumps([type(e).__name__, isinstance(e, errors.EntryNotFoundError), e.response.status_code]))
""")
    assert raised == [error, error == "RemoteEntryNotFoundError", 404]


def test_api_error_codes_raise_the_clients_errors(hub_server, tmp_path):
    raised = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import HfApi, errors
api, out = HfApi(), []
for call in [lambda: api.model_info("layerdb-test/no-such-repo"),
             lambda: api.list_repo_refs("layerdb-test/no-such-repo"),
             lambda: api.model_info("{PYTHIA_REPO}", revision="step3"),
             lambda: list(api.list_repo_tree("{PYTHIA_REPO}", revision="step3")),
             lambda: api.get_paths_info("{PYTHIA_REPO}", ["config.json"], revision="step3"),
             lambda: list(api.list_repo_tree("{PYTHIA_REPO}", "no-such-folder", revision="step2"))]:
    try:
        call()
    except errors.HfHubHTTPError as e:
        out.append(type(e).__name__)
print(json.dumps(out))
""")
    assert raised == ["RepositoryNotFoundError", "RepositoryNotFoundError", "RevisionNotFoundError",
                      "RevisionNotFoundError", "RevisionNotFoundError", "RemoteEntryNotFoundError"]


def test_connection_dropped_within_the_first_chunk_restarts_the_download(hub_server, hub_pythia,
                                                                         tmp_path):
    hub_server.faults.drop_connection("model.safetensors", after_bytes=10_000)
    path = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import hf_hub_download
print(json.dumps(hf_hub_download("{PYTHIA_REPO}", "model.safetensors", revision="step8")))
""")
    weights = _folder_bytes(hub_pythia, "step8", "model.safetensors")
    assert Path(path).resolve() == tmp_path / CACHE / "blobs" / _sha256(weights)
    assert Path(path).read_bytes() == weights
    # the client writes the body in 10 MiB chunks: bytes short of a chunk are lost, no Range
    assert [(r.range, r.status) for r in hub_server.requests.entries("GET", file="model.safetensors")] \
        == [(None, 200), (None, 200)]


def test_connection_dropped_after_a_chunk_resumes_with_range(hub_server, tmp_path):
    chunk = 10 * 1024 * 1024  # huggingface_hub's DOWNLOAD_CHUNK_SIZE
    blob = hub_server.add_repo(_big_repo(chunk + (2 << 20))).commit("main").files["big.bin"]
    hub_server.faults.drop_connection("big.bin", after_bytes=chunk + (1 << 20))
    path = run_client(hub_server, tmp_path, """
import json
from huggingface_hub import hf_hub_download
print(json.dumps(hf_hub_download("layerdb-test/hub-big", "big.bin")))
""")
    assert Path(path).resolve() == tmp_path / "hub/models--layerdb-test--hub-big/blobs" / blob.sha256
    assert Path(path).read_bytes() == blob.data
    assert [(r.range, r.status) for r in hub_server.requests.entries("GET", file="big.bin")] \
        == [(None, 200), (f"bytes={chunk}-", 206)]


def test_5xx_burst_on_file_metadata_is_retried(hub_server, hub_pythia, tmp_path):
    hub_server.faults.error_burst(2, 503, method="HEAD", path="*/resolve/*/config.json")
    path = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import hf_hub_download
print(json.dumps(hf_hub_download("{PYTHIA_REPO}", "config.json", revision="step2")))
""")
    assert Path(path).read_bytes() == _folder_bytes(hub_pythia, "step2", "config.json")
    # one try without retries (to fall back on the cache fast), then the retried one: 503, then 200
    assert [r.status for r in hub_server.requests.entries("HEAD", file="config.json")] == [503, 503, 200]


def test_5xx_on_file_body_is_not_retried_and_leaves_no_partial_blob(hub_server, hub_pythia, tmp_path):
    hub_server.faults.error_burst(1, 500, method="GET", path="/lfs/*")
    result = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import errors, hf_hub_download
try:
    hf_hub_download("{PYTHIA_REPO}", "model.safetensors", revision="step2")
    first = None
except errors.HfHubHTTPError as e:
    first = e.response.status_code
print(json.dumps([first, hf_hub_download("{PYTHIA_REPO}", "model.safetensors", revision="step2")]))
""")
    assert result[0] == 500
    assert Path(result[1]).read_bytes() == _folder_bytes(hub_pythia, "step2", "model.safetensors")
    assert [r.status for r in hub_server.requests.entries("GET", file="model.safetensors")] == [500, 200]
    assert sorted(p.name for p in (tmp_path / CACHE / "blobs").iterdir()) == [
        _sha256(_folder_bytes(hub_pythia, "step2", "model.safetensors"))]


def test_5xx_on_tree_listing_is_retried_but_not_on_model_info(hub_server, hub_pythia, tmp_path):
    hub_server.faults.error_burst(1, 503, path="/api/models/*/tree/*")
    hub_server.faults.error_burst(1, 503, path="/api/models/*/revision/*")
    result = run_client(hub_server, tmp_path, f"""
import json
from huggingface_hub import HfApi, errors
api = HfApi()
files = sorted(f.path for f in api.list_repo_tree("{PYTHIA_REPO}", revision="step2"))
try:
    info = api.model_info("{PYTHIA_REPO}", revision="step2").sha
except errors.HfHubHTTPError as e:
    info = e.response.status_code
print(json.dumps([files, info]))
""")
    assert result == [sorted(hub_pythia.commit("step2").files), 503]
    assert [r.status for r in hub_server.requests.entries("GET", path="/api/models/*/tree/*")] == [503, 200]


def test_throttled_body_slows_the_download(hub_server, tmp_path):
    repo = hub_server.add_repo(_big_repo(1 << 20))
    hub_server.faults.throttle(bytes_per_s=2_000_000)
    seconds = run_client(hub_server, tmp_path, """
import json, time
from huggingface_hub import hf_hub_download
start = time.perf_counter()
hf_hub_download("layerdb-test/hub-big", "big.bin")
print(json.dumps(time.perf_counter() - start))
""")
    assert seconds >= 0.4  # 1 MiB at 2 MB/s is 0.52 s
    blob = repo.commit("main").files["big.bin"]
    assert (tmp_path / "hub/models--layerdb-test--hub-big/blobs" / blob.sha256).read_bytes() == blob.data


def _get(url: str, headers: dict[str, str] | None = None):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {})) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_resolve_serves_byte_ranges_and_refuses_unsatisfiable_ones(hub_server, hub_pythia):
    f = hub_pythia.commit("main").files["config.json"]
    url = f"{hub_server.url}/{PYTHIA_REPO}/resolve/main/config.json"
    status, headers, body = _get(url, {"Range": "bytes=-10"})
    assert (status, headers["Content-Range"], body) == (206, f"bytes {f.size - 10}-{f.size - 1}/{f.size}",
                                                        f.data[-10:])
    status, headers, body = _get(url, {"Range": "bytes=5-9"})
    assert (status, headers["Content-Length"], body) == (206, "5", f.data[5:10])
    status, headers, _ = _get(url, {"Range": f"bytes={f.size}-"})
    assert (status, headers["Content-Range"]) == (416, f"bytes */{f.size}")
    status, headers, body = _get(f"{hub_server.url}/{PYTHIA_REPO}/resolve/main/nope.json")
    assert (status, headers["X-Error-Code"], headers["X-Repo-Commit"], body) == (
        404, "EntryNotFound", hub_pythia.branches["main"],
        b'{"error": "nope.json does not exist on main"}')
