"""The lightning indexer's selection: `cpu.py` + `select.c` (C, CPU inference); the torch form
(and the oracle) is `Indexer` in engine/model/transformer.py."""
