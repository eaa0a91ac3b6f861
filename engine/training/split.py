"""The train / held-out split: split units, the hash rule, and the pinned first generation.

A source belongs to a *generation* (`Source.generation`): the sources the shipped model
was trained on are generation 1, the PyPI sdists added later are generation 2. The
held-out units of generation 1 are pinned (`PINNED_HELDOUT_V1`): adding sources changes
each language's byte total and interleaves new units in the hash order, so re-running the
rule over everything would move units the shipped model has seen into the held-out split
(and units it was evaluated on into training). Every later generation picks its own
held-out units by the same rule over its own files only, so older splits never move.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from deepfim.engine.training.sources import stable_hash

if TYPE_CHECKING:
    from deepfim.engine.training.corpus import CorpusFile

log = logging.getLogger(__name__)

UNIT_MAX_BYTES = 1_000_000
HELDOUT_FRACTION = 0.06
MIN_HELDOUT_UNIT_FILES = 3
SPLIT_SALT = "deepfim-split-v1"

# The units the hash rule held out (fraction 0.06) when the shipped model's corpus was
# built; that model never saw them, so they stay held out whatever is added later.
PINNED_HELDOUT_V1 = frozenset(
    {
        "cpython:concurrent",
        "cpython:idlelib/*",
        "cpython:wsgiref",
        "npm:@npmcli/redact:@npmcli/redact",
        "npm:@sigstore/core:@sigstore/core",
        "npm:minimatch:minimatch",
        "npm:npm-install-checks:npm-install-checks",
        "npm:tiny-relative-date:tiny-relative-date",
        "npm:treeverse:treeverse",
        "npm:tuf-js:tuf-js",
        "npm:zod:zod/src/v4/core",
        "pypi:ipython:IPython/core/magics",
        "pypi:ipython:IPython/utils",
        "pypi:moto:moto/bedrock",
        "pypi:moto:moto/dynamodb_v20111205",
        "pypi:networkx:networkx/algorithms/community",
        "pypi:networkx:networkx/algorithms/components",
        "pypi:networkx:networkx/algorithms/tests",
        "pypi:networkx:networkx/utils",
        "pypi:numpy:numpy/_utils",
        "pypi:numpy:numpy/linalg",
        "pypi:prompt-toolkit:prompt_toolkit/clipboard",
        "pypi:prompt-toolkit:prompt_toolkit/formatted_text",
        "pypi:pytest:_pytest/_io",
        "pypi:pytest:_pytest/mark",
        "pypi:scipy:scipy/sparse",
        "pypi:sympy:sympy/parsing",
        "pypi:sympy:sympy/physics",
        "pypi:triton:triton/runtime",
        "pypi:urllib3:urllib3",
    }
)
PINNED_HELDOUT = {1: PINNED_HELDOUT_V1}


def assign_units(files: list[tuple[str, int]], max_bytes: int = UNIT_MAX_BYTES) -> dict[str, str]:
    """Split unit of each path: its shallowest enclosing directory subtree of ≤ max_bytes.

    Files directly inside a directory that is too big (and whose own subtree is not a unit)
    form the unit "dir/*". A file at the source root is its own unit; an npm scope
    ("@npmcli/") is never a unit by itself.
    """
    subtree: Counter[str] = Counter()
    for path, size in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            subtree["/".join(parts[:depth])] += size
    units = {}
    for path, _ in files:
        parts = path.split("/")
        first = 2 if parts[0].startswith("@") else 1  # an npm scope is not a package
        unit = next(
            ("/".join(parts[:d]) for d in range(first, len(parts)) if subtree["/".join(parts[:d])] <= max_bytes),
            "/".join(parts[:-1]) + "/*" if len(parts) > 1 else path,
        )
        units[path] = unit
    return units


def choose_heldout(files: list[CorpusFile], holdout_ok: dict[str, bool], fraction: float) -> set[str]:
    """Units held out: per language, hash-ordered eligible units until `fraction` of its bytes."""
    by_lang: dict[str, dict[str, list[CorpusFile]]] = defaultdict(lambda: defaultdict(list))
    for f in files:
        by_lang[f.lang][f.unit].append(f)
    held: set[str] = set()
    for lang, units in sorted(by_lang.items()):
        total = sum(len(f.text.encode()) for fs in units.values() for f in fs)
        target, taken = fraction * total, 0
        eligible = [
            u for u, fs in units.items()
            if holdout_ok[fs[0].source] and len(fs) >= MIN_HELDOUT_UNIT_FILES
            and max(Counter(f.package for f in fs).values()) >= 2
        ]  # fmt: skip
        for unit in sorted(eligible, key=lambda u: stable_hash(f"{SPLIT_SALT}:{lang}:{u}")):
            size = sum(len(f.text.encode()) for f in units[unit])
            if taken >= target:
                break
            if taken and taken + size > 1.5 * target:
                continue
            held.add(unit)
            taken += size
    return held


def heldout_by_generation(
    files: list[CorpusFile],
    generation: dict[str, int],
    holdout_ok: dict[str, bool],
    fraction: float,
    pinned: dict[int, frozenset[str]],
) -> set[str]:
    """Held-out units: a pinned generation keeps its list, any other one uses the rule alone."""
    by_gen: dict[int, list[CorpusFile]] = defaultdict(list)
    for f in files:
        by_gen[generation[f.source]].append(f)
    held: set[str] = set()
    for gen, group in sorted(by_gen.items()):
        if gen in pinned:
            units = {f.unit for f in group}
            if missing := sorted(pinned[gen] - units):
                log.warning("%d pinned held-out units of generation %d are absent: %s", len(missing), gen, missing)
            held |= pinned[gen] & units
        else:
            held |= choose_heldout(group, holdout_ok, fraction)
    return held
