"""The LAN team server (`deepfim serve`) and its client (`RemoteBackend`).

Length-prefixed msgpack frames over TLS, per-user tokens, fair admission, streaming and
cancellation; an HTTP side for health, Prometheus metrics and an OpenAI-compatible
`/v1/completions`. The protocol is described in docs/team-server.md.
"""
