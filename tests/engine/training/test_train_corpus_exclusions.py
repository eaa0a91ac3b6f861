"""What never enters training (evaluation repositories, the bundled example) and pinned splits."""

from __future__ import annotations

import pytest

from deepfim.engine.training import sdist_sources
from deepfim.engine.training.corpus import EXAMPLES_DIR, build_corpus
from deepfim.engine.training.sdist_sources import EVAL_REPOS, SDIST_ALLOW, is_eval_repo
from deepfim.engine.training.sources import PYPI_ALLOW, Source

CODE = """def scale(values, factor):
    \"\"\"Every value multiplied by factor.\"\"\"
    return [v * factor for v in values]


def total(values):
    return sum(values)
"""


def _source(tmp_path, name, files: dict[str, str], generation=1) -> Source:
    root = tmp_path / name.replace(":", "_")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return Source(name, root, sorted(files), "MIT", "", "1.0", generation=generation)


def _package(tag: str, n_dirs: int = 12) -> dict[str, str]:
    names = [(p, m) for p in range(n_dirs) for m in range(3)]
    return {f"{tag}{p}/m{m}.py": CODE.replace("scale(", f"scale_{tag}{p}_{m}(") for p, m in names}


def test_allow_lists_hold_no_evaluation_repository_and_do_not_overlap():
    assert not set(SDIST_ALLOW) & set(PYPI_ALLOW)
    assert not [n for n in [*SDIST_ALLOW, *PYPI_ALLOW] if is_eval_repo(n)]
    assert all(is_eval_repo(n) for n in ["marshmallow", "More_Itertools", "more-itertools", "boltons"])
    assert len(EVAL_REPOS) >= 3


@pytest.mark.parametrize("name", ["sdist:marshmallow", "pypi:more_itertools", "sdist:Boltons", "pypi:more.itertools"])
def test_an_evaluation_repository_is_never_a_training_source(tmp_path, name):
    src = _source(tmp_path, name, {"pkg/a.py": CODE})
    with pytest.raises(ValueError, match="is an evaluation repository"):
        build_corpus([src])


def test_sdist_sources_refuse_an_allow_listed_evaluation_repository(tmp_path, monkeypatch):
    monkeypatch.setattr(sdist_sources, "SDIST_ALLOW", {"boltons": ("26.2.0", ("boltons",), 1000)})
    with pytest.raises(ValueError, match="evaluation repository"):
        sdist_sources.sdist_sources(tmp_path / "cache", None)  # refused before any download
    assert not (tmp_path / "cache").exists()


def test_the_bundled_example_can_never_be_a_source():
    assert (EXAMPLES_DIR / "shop" / "shop" / "cart.py").is_file()
    inside = Source("local:shop", EXAMPLES_DIR / "shop", ["shop/cart.py"], "MIT")
    above = Source("local:repo", EXAMPLES_DIR.parent, ["examples/shop/shop/cart.py"], "MIT")
    for src in (inside, above):
        with pytest.raises(ValueError, match="must stay out of training"):
            build_corpus([src], excluded_trees=[EXAMPLES_DIR])
    # A source next to the example (same root, other files) is fine.
    beside = Source("local:engine", EXAMPLES_DIR.parent, ["engine/training/split.py"], "MIT")
    files, _ = build_corpus([beside], excluded_trees=[EXAMPLES_DIR])
    assert [f.path for f in files] == ["engine/training/split.py"]


def test_copies_of_excluded_files_are_dropped(tmp_path):
    eval_dir = tmp_path / "eval"
    (eval_dir / "boltons" / "boltons").mkdir(parents=True)
    (eval_dir / "boltons" / "boltons" / "iterutils.py").write_text(CODE)
    (eval_dir / "boltons" / "boltons" / "notice.py").write_text("# Copyright the authors.\n# BSD licence.\n" * 3)
    other = CODE.replace("scale", "grow")
    src = _source(
        tmp_path,
        "sdist:tools",
        {
            "tools/copied.py": "# a vendored copy\n" + CODE,  # near-exact copy of an eval file
            "tools/more_itertools/recipes.py": other.replace("total", "count"),  # folder of an eval package
            "tools/own.py": other,
            "tools/header.py": "# Copyright the authors.\n# MIT licence.\n" * 3,  # no code: cannot leak any
        },
    )
    files, info = build_corpus([src], excluded_trees=[eval_dir, tmp_path / "absent"])
    assert sorted(f.path for f in files) == ["tools/header.py", "tools/own.py"]
    assert info["dropped"] == {"eval_or_example_copy": 2}


def test_pinned_generation_keeps_its_units_when_sources_are_added(tmp_path):
    old = _source(tmp_path, "old", _package("a"))
    _, before = build_corpus([old], fraction=0.2)
    pinned = {1: frozenset(before["heldout_units"])}
    assert pinned[1]
    new = _source(tmp_path, "sdist:new", _package("b", 30), generation=2)
    files, after = build_corpus([old, new], fraction=0.2, pinned=pinned)
    held = set(after["heldout_units"])
    assert {u for u in held if u.startswith("old:")} == pinned[1]
    new_held = {u for u in held if u.startswith("sdist:new:")}
    assert new_held  # the new generation has its own held-out units, by the same rule
    new_bytes = sum(len(f.text) for f in files if f.source == "sdist:new")
    held_bytes = sum(len(f.text) for f in files if f.unit in new_held)
    assert 0.2 * new_bytes <= held_bytes <= 1.5 * 0.2 * new_bytes
    # Without the pin, one generation re-chosen over everything would move old units.
    _, unpinned = build_corpus([old, _source(tmp_path, "more", _package("b", 30))], fraction=0.2)
    assert {u for u in unpinned["heldout_units"] if u.startswith("old:")} != pinned[1]
