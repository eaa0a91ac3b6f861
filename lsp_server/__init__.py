"""The DeepFIM language server (pygls): inline completions over LSP 3.18.

Protocol: docs/protocol.md. Modules, in the order a request meets them:

- `cli` — `deepfim lsp` (stdio or --tcp) and `deepfim complete FILE:LINE:COL` (`oneshot`).
- `features` — the LSP handlers; `protocol` — pygls adjustments (malformed params, sync).
- `server` — state and the request flow: typing-through cache (`typing_cache`), latest
  wins, debounce, the backend loaded in the background (`backend_session`, `progress`), statistics
  (`stats`), settings (`settings`), buffers (`documents`, `positions`: UTF-16).
- `pipeline` — one completion: shaping analysis + prompt packing (`context_source`) →
  engine (streamed, cancellable) → shaping → ranking, with per-stage timings; modes in
  `modes`.
- `shaping` — pure functions that decide the extent of a completion and clean it up.
"""
