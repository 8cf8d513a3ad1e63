"""Saved checkpoints load with transformers 4.x as with 5.x: their files, and (slow) a real 4.x in its own venv.

transformers 5 saves a tokenizer as ``TokenizersBackend``, a class 4.x does not have, and writes RoPE settings
only as ``rope_parameters``; vLLM releases and many serving stacks pin 4.x. Every checkpoint xinst writes goes
through ``make_portable`` (xinst_assets/core/portable_checkpoint.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch

from xinst_assets.core.portable_checkpoint import make_portable, portability_problems
from xinst_assets.core.tiny_model import build_tokenizer
from xinst_assets.training import TrainConfig, train
from xinst_assets_tests import processes
from xinst_assets_tests.training.conftest import INSTRUCTION_ROWS

# What vLLM releases have required lately (>= 4.56); the newest 4.x is what pip picks.
TRANSFORMERS_4 = "transformers>=4.56,<5"
PROMPT = "Below is an instruction that describes a task. " + INSTRUCTION_ROWS[0]["instruction"]


def _read(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def _plain_v5_save(out: Path, rope: dict | None = None) -> Path:
    """A tiny model saved by transformers 5 as it is, without xinst's rewrite."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = build_tokenizer([r["instruction"] + " " + r["response"] for r in INSTRUCTION_ROWS] * 3, 300)
    extra = {"rope_parameters": rope} if rope else {}
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16384, **extra)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _logits(folder: Path) -> tuple[list[int], torch.Tensor, str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tokenizer(PROMPT)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "1 2 3"}], tokenize=False,
                                         add_generation_prompt=True)
    return ids, logits, chat


def test_the_tiny_model_is_saved_with_the_fields_transformers_4_reads(tiny_model_dir):
    tokenizer_config, config = _read(tiny_model_dir, "tokenizer_config.json"), _read(tiny_model_dir, "config.json")
    assert tokenizer_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert tokenizer_config["chat_template"] == (tiny_model_dir / "chat_template.jinja").read_text()
    assert config["torch_dtype"] == config["dtype"] == "float32"
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] and config["rope_scaling"] is None
    assert portability_problems(tiny_model_dir) == []


def test_make_portable_repairs_a_plain_transformers_5_save_and_changes_nothing_5_computes(tmp_path):
    plain = _plain_v5_save(tmp_path / "plain")
    before = _logits(plain)
    assert set(portability_problems(plain)) == {
        "tokenizer_class TokenizersBackend exists only in transformers 5", "chat template only in chat_template.jinja",
        "dtype without torch_dtype", "rope_theta missing or different from rope_parameters"}
    assert make_portable(plain) and portability_problems(plain) == []
    ids, logits, chat = _logits(plain)
    assert ids == before[0] and torch.equal(logits, before[1]) and chat == before[2]
    assert make_portable(plain) == []  # a second pass has nothing to do


def test_a_scaled_rope_is_written_as_the_rope_scaling_4x_reads(tmp_path):
    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    folder = _plain_v5_save(tmp_path / "llama3", rope)
    make_portable(folder)
    config = _read(folder, "config.json")
    assert config["rope_theta"] == 500000.0
    assert config["rope_scaling"] == {k: v for k, v in rope.items() if k != "rope_theta"}
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(folder).rope_parameters == rope  # 5.x reads what it wrote


@pytest.fixture(scope="session")
def transformers4_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with transformers 4.x from the package registry; torch comes from this environment (added after
    the venv's own packages, so its transformers 4.x shadows this environment's 5.x)."""
    root = tmp_path_factory.mktemp("transformers4")
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    Path(site, "zz_xinst_torch.pth").write_text(f"import sys; sys.path.append({ours!r})\n")
    install = processes.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", TRANSFORMERS_4])
    if install.returncode != 0:
        pytest.fail(f"could not install {TRANSFORMERS_4} from the package registry:\n{install.stderr[-2000:]}")
    return python


LOAD_WITH_4X = """
import json, sys, torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, prompt = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder).eval()
ids = tokenizer(prompt)["input_ids"]
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0, -1]
chat = tokenizer.apply_chat_template([{"role": "user", "content": "1 2 3"}], tokenize=False, add_generation_prompt=True)
print(json.dumps({"version": transformers.__version__, "tokenizer": type(tokenizer).__name__, "ids": ids,
                  "logits": logits.tolist(), "chat": chat}))
"""


@pytest.mark.slow
def test_transformers_4_loads_the_base_and_a_trained_checkpoint_and_computes_what_5_computes(
    transformers4_python, tiny_model_dir, instruction_file, tmp_path
):
    trained = tmp_path / "trained"
    train(TrainConfig(base_model=str(tiny_model_dir), output_dir=str(trained), data_files=(str(instruction_file),),
                      max_steps=2, save_steps=2, per_device_batch_size=2, learning_rate=1e-3, max_length=128))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    for folder in (tiny_model_dir, trained):
        done = processes.run([transformers4_python, "-c", LOAD_WITH_4X, str(folder), PROMPT],
                             env={**env, "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        ids, logits, chat = _logits(folder)
        assert seen["version"].startswith("4.") and seen["tokenizer"] == "PreTrainedTokenizerFast"
        assert seen["ids"] == ids and seen["chat"] == chat
        assert torch.allclose(torch.tensor(seen["logits"]), logits, atol=1e-4), folder.name
