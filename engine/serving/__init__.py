"""The serving side of the engine: requests in, tokens out.

`sequence` (per-request bookkeeping), `scheduler` (who runs next), `engine_loop` (the engine
thread), `model_runner` (one prefill chunk or decode step on the model), `sampler`,
`speculative`, `healing`, `prefix_cache`, `allocator`, `local_backend` (the in-process
`CompletionBackend`) and `generate` (synchronous generation for scripts and evaluation).
"""
