"""Data for the embedded default model: corpus build, tokenizer training, training samples.

`sources` lists where permissively licensed code comes from, `corpus` filters, deduplicates
and splits it by package, `tokenizer_train` trains the byte-level BPE, `samples` turns
corpus files into packed FIM / left-to-right training sequences in the engine's prompt
layout (`deepfim.engine.model.prompt_format`).
"""
