"""The model side of the engine: what a checkpoint is and how it computes.

`config` (ModelArgs from either config.json form), `transformer` (the V4 forward pass, the
reference), `state` (per-sequence V4 state), `loader` + `checkpoint_names` (safetensors),
`decode_step` (CPU calls of a few tokens as one C call), `tokenizer` and `prompt_format`
(the checkpoint's FIM token layout).
"""
