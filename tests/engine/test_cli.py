"""`deepfim logits` and `deepfim generate` (engine/cli.py), run in-process through the CLI."""

from __future__ import annotations

import json
import shutil

import torch

from deepfim.cli import main


def test_logits_by_ids_need_no_tokenizer(tiny_checkpoint, tiny_model, tmp_path, capsys):
    bare = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_checkpoint, bare)
    (bare / "tokenizer.json").unlink()
    assert main(["logits", "--checkpoint", str(bare), "--ids", "5,17,300", "--last", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    with torch.no_grad():
        want = tiny_model(torch.tensor([[5, 17, 300]])).logits[0, -1]
    assert out["ids"] == [5, 17, 300] and out["positions"] == [2]
    assert torch.allclose(torch.tensor(out["logits"][0]), want, atol=1e-5)
    assert main(["logits", "--checkpoint", str(bare), "--ids", "5,17", "--top", "2"]) == 0
    assert "    1     17" in capsys.readouterr().out  # ids shown where token strings are unknown
    assert main(["logits", "--checkpoint", str(bare), "--text", "def f("]) == 2
    assert "--ids" in capsys.readouterr().err


def test_logits_reject_ids_outside_the_vocabulary(tiny_checkpoint, capsys):
    assert main(["logits", "--checkpoint", str(tiny_checkpoint), "--ids", "1,999999"]) == 2
    assert "token ids must be in [0, 8192)" in capsys.readouterr().err


def test_unescape_turns_typed_escapes_into_characters():
    from deepfim.engine.cli import unescape

    assert unescape(r"def add(a, b):\n\treturn a\r\n") == "def add(a, b):\n\treturn a\r\n"
    assert unescape(r"a\\nb") == "a\\nb"  # an escaped backslash stays one backslash
    assert unescape(r"re.sub(r'\d', x)") == r"re.sub(r'\d', x)"  # other backslashes as written
    assert unescape("π\\n") == "π\n"


def _generated(capsys, tiny_checkpoint, *flags: str) -> dict:
    assert main(["generate", "--checkpoint", str(tiny_checkpoint), "--max-tokens", "6", "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_generate_reads_escapes_in_prefix_and_suffix_or_files_verbatim(tiny_checkpoint, tmp_path, capsys):
    from deepfim.engine.model.prompt_format import FimOrder, build_fim_prompt
    from deepfim.engine.model.tokenizer import Tokenizer

    tok = Tokenizer.from_file(tiny_checkpoint / "tokenizer.json")
    prefix, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
    literal = build_fim_prompt(tok, prefix.replace("\n", "\\n"), suffix.replace("\n", "\\n"), FimOrder.PSM)
    meant = build_fim_prompt(tok, prefix, suffix, FimOrder.PSM)
    assert len(literal.ids) != len(meant.ids)  # the two readings are distinguishable

    typed = _generated(capsys, tiny_checkpoint, "--order", "psm", "--prefix", r"def add(a, b):\n    ",
                       "--suffix", r"\n\nprint(add(1, 2))\n")  # fmt: skip
    assert typed["prompt_tokens"] == len(meant.ids)
    (tmp_path / "prefix.txt").write_text(prefix)
    (tmp_path / "suffix.txt").write_text(suffix)
    from_files = _generated(capsys, tiny_checkpoint, "--order", "psm", "--prefix-file", str(tmp_path / "prefix.txt"),
                            "--suffix-file", str(tmp_path / "suffix.txt"))  # fmt: skip
    assert from_files["prompt_tokens"] == len(meant.ids) and from_files["completion"] == typed["completion"]

    (tmp_path / "raw.txt").write_text("a\\nb")  # a file is taken as is: its backslashes stay
    raw = _generated(capsys, tiny_checkpoint, "--order", "psm", "--prefix-file", str(tmp_path / "raw.txt"))
    assert raw["prompt_tokens"] == len(build_fim_prompt(tok, "a\\nb", "", FimOrder.PSM).ids)


def test_generate_names_a_missing_prefix_file(tiny_checkpoint, tmp_path, capsys):
    missing = tmp_path / "nope.txt"
    assert main(["generate", "--checkpoint", str(tiny_checkpoint), "--prefix-file", str(missing)]) == 2
    assert f"--prefix-file {missing}" in capsys.readouterr().err


def test_deepfim_threads_reaches_torch_without_importing_it_first():
    """$DEEPFIM_THREADS caps torch's threads in every thread, and `deepfim` does not import torch
    for it before the command runs (the language server imports torch beside its own imports)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, threading\n"
        "from deepfim import cli\n"
        "cli.cap_torch_threads(1)\n"
        "assert 'torch' not in sys.modules\n"
        "import torch\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(torch.get_num_threads())); t.start(); t.join()\n"
        "print(torch.get_num_threads(), seen[0])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]
