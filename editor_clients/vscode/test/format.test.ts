import assert from "node:assert/strict";
import { test } from "node:test";

import { statusBarText, statusReport } from "../src/format";

test("the status bar shows mode and last latency, and flags errors", () => {
  assert.equal(statusBarText({ phase: "running", mode: "instant", enabled: true, lastLatencyMs: 41.6 }).text, "$(sparkle) DeepFIM instant 42 ms");
  const failing = statusBarText({ phase: "running", mode: "expert", enabled: true, error: "decode failed" });
  assert.equal(failing.text, "$(sparkle) DeepFIM expert $(warning)");
  assert.match(failing.tooltip, /last error: decode failed/);
  assert.equal(statusBarText({ phase: "running", mode: "instant", enabled: false }).text, "$(circle-slash) DeepFIM off");
  const dead = statusBarText({ phase: "failed", mode: "instant", enabled: true, error: "no python" });
  assert.equal(dead.text, "$(error) DeepFIM");
  assert.match(dead.tooltip, /no python/);
});

test("the status report summarises deepfim/status", () => {
  const lines = statusReport({
    mode: "instant",
    enabled: true,
    server: "in-process",
    models: { instant: "embedded", expert: "embedded" },
    index: { files: 12, definitions: 80, ready: false },
    latency_ms: { count: 3, p50: 40, p95: 90 },
    acceptance: { shown: 10, accepted: 3, rejected: 2, rate: 0.3 },
    last_error: null,
  });
  assert.deepEqual(lines, [
    "enabled, mode instant, engine in-process",
    "models: instant embedded, expert embedded",
    "index: 12 files, 80 definitions (indexing…)",
    "latency: p50 40 ms, p95 90 ms over 3 requests",
    "acceptance: 10 shown, 3 accepted, 2 rejected (30%)",
  ]);
});
