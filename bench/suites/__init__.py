"""The suites of `deepfim bench`, in the order they run. Each module defines
`run(ctx: BenchContext, result: SuiteResult) -> None`, filling in figures, tables and plots
(or setting `result.status = "skipped"` with the reason)."""

SUITES: dict[str, str] = {
    "latency": "deepfim.bench.suites.latency",
    "scaling": "deepfim.bench.suites.scaling",
    "state": "deepfim.bench.suites.state",
    "peers": "deepfim.bench.suites.peers",
    "prefix": "deepfim.bench.suites.prefix",
    "server": "deepfim.bench.suites.server",
    "quality": "deepfim.bench.suites.quality",
    "gpu": "deepfim.bench.suites.gpu",
}
