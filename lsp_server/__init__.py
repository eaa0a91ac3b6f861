"""The DeepFIM language server (pygls): inline completions over LSP 3.18."""
