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

test("the status bar shows server progress, expert and slow requests, and the server's error", () => {
  const base = { phase: "running", mode: "instant", enabled: true } as const;
  assert.equal(statusBarText({ ...base, work: [{ title: "loading model" }] }).text, "$(loading~spin) DeepFIM loading model");
  const indexing = statusBarText({ ...base, work: [{ title: "indexing shop", percentage: 39.6 }], busy: { expert: true, slow: true } });
  assert.equal(indexing.text, "$(loading~spin) DeepFIM indexing shop 40%");
  assert.match(indexing.tooltip, /indexing shop 40%\nan expert request is running/);
  assert.equal(statusBarText({ ...base, busy: { expert: true, slow: false } }).text, "$(loading~spin) DeepFIM expert request");
  assert.equal(statusBarText({ ...base, busy: { expert: false, slow: false } }).text, "$(sparkle) DeepFIM instant");
  assert.equal(statusBarText({ ...base, busy: { expert: false, slow: true } }).text, "$(loading~spin) DeepFIM instant waiting");
  const broken = statusBarText({ ...base, serverError: "could not start the engine: no config.json" });
  assert.equal(broken.text, "$(sparkle) DeepFIM instant $(warning)");
  assert.match(broken.tooltip, /last error: could not start the engine: no config\.json/);
  // Off wins over everything the server is doing.
  assert.equal(statusBarText({ ...base, enabled: false, work: [{ title: "indexing shop" }] }).text, "$(circle-slash) DeepFIM off");
});
