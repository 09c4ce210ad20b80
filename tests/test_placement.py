"""Models larger than one device: accelerate's device maps, forced on the CPU by a small memory
limit so that some layers stay on the CPU and the rest are offloaded to disk; the sweep gives the
single-device losses."""
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from collectors.checkpoints import load_checkpoint, resolve_model
from collectors.placement import Placement, input_device, parse_max_memory
from collectors.sweep import SweepOptions, sweep_losses
from layerdb.cli import main
from layerdb.errors import LayerdbError

pytestmark = pytest.mark.usefixtures("torch_one_thread")

IDS = torch.randint(2, 64, (6, 20), generator=torch.Generator().manual_seed(3))


def test_a_split_model_sweeps_to_the_single_device_losses(tiny_hub, tmp_path):
    ref = resolve_model(tiny_hub.repo("gpt-neox"))
    whole = load_checkpoint(ref, "step1", torch.float32, "cpu")
    split = load_checkpoint(ref, "step1", torch.float32, "cpu", Placement(
        "auto", parse_max_memory("cpu=100KB"), str(tmp_path / "offload")))
    where = split.model.hf_device_map
    assert where["gpt_neox.layers.0"] == "cpu" and "disk" in where.values(), where
    assert split.fingerprint is None  # offloaded bytes are not in memory: no after-load hash
    assert input_device(split.model) == torch.device("cpu")
    for options in (SweepOptions(spans=(2,), swaps=True, batch_size=4),
                    SweepOptions(spans=(2,), method="mean", batch_size=4)):
        one = sweep_losses(whole.model, whole.family, IDS, options)
        many = sweep_losses(split.model, split.family, IDS, options)
        assert one.losses.keys() == many.losses.keys()
        assert max(np.abs(one.losses[k] - many.losses[k]).max() for k in one.losses) < 1e-6
        assert many.metrics == pytest.approx(one.metrics, abs=1e-9)


def test_max_memory_parsing():
    assert parse_max_memory("0=70GiB, cpu=1.5GB,disk=100") == {
        0: 70 * 2**30, "cpu": 1_500_000_000, "disk": 100}
    assert parse_max_memory(None) is None
    for bad, message in (("70GiB", "DEVICE=SIZE pairs"), ("gpu=1GB", "unknown device 'gpu'"),
                         ("0=lots", "'lots' is not a size"), ("cpu=", "DEVICE=SIZE pairs")):
        with pytest.raises(LayerdbError, match=message):
            parse_max_memory(bad)


@pytest.mark.parametrize("args, message", [
    (["--max-memory", "0=oops"], "--max-memory: 'oops' is not a size"),
    (["--max-memory", "cpu=1GB"], "--max-memory and --offload-folder need --device-map"),
    (["--device-map", "auto", "--device", "cpu"], "--device-map places the model itself"),
])
def test_bad_placement_is_one_line(tiny_hub, tmp_path, args, message):
    db = tmp_path / "s.duckdb"
    result = CliRunner().invoke(main, ["--db", str(db), "collect", tiny_hub.repo("gpt-neox"),
                                       "--data", str(tiny_hub.txt), "--tokens", "64",
                                       "--seq-len", "32", *args])
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(errors) == 1 and message in errors[0], result.stderr
    assert not db.exists()


def test_device_map_without_accelerate_says_how_to_install_it(tiny_hub, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # import accelerate now fails
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "s.duckdb"), "collect",
                                       tiny_hub.repo("gpt-neox"), "--device-map", "auto"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: --device-map needs accelerate, which is not " \
                                    "installed: pip install 'accelerate>=1.0'"
