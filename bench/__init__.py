"""`deepfim bench`: latency, scale, state, peers, prefix cache, team server, quality and GPU
suites, written as one report (report.md, results.json, PNG plots) with the machine, the
versions, the seeds and, for every figure, how it was measured (see bench/README.md)."""
