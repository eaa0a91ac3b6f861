"""Workspace context: file discovery, tree-sitter index, ranking and prompt packing.

Entry point: `deepfim.context.workspace.Workspace` (scan, buffers, watch, stats, pack).
Pipeline: `discovery` (+ `ignore`, `secrets`) -> `extract` (tree-sitter, `queries/*.scm`)
-> `index` (+ `graph`, `lexical`, `cache`, kept current by `indexer` and `watch`) ->
`ranking` -> `packer` (+ `cursor`, `tokens`). CLI: `cli` (`deepfim index`, `deepfim context`).
"""
