"""The LAN team server (`deepfim serve`) and its client (`RemoteBackend`).

One HTTPS listener (uvicorn + Starlette, TLS): per-user tokens, limits and fair admission, an
OpenAI-compatible `/v1/completions` (text or packed token ids, SSE streaming, cancel on
disconnect), Prometheus `/metrics`, `/health`. The API is described in docs/team-server.md.
"""
