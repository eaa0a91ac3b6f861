import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { DEFAULT_COMMAND, DEFAULT_SETTINGS, readSettings, type ConfigSource } from "../src/settings";

function config(values: Record<string, unknown>): ConfigSource {
  return { get: (key) => values[key] };
}

test("unset settings give the protocol defaults and `deepfim lsp`", () => {
  const { command, server, problems } = readSettings(config({}));
  assert.deepEqual(command, ["deepfim", "lsp"]);
  assert.deepEqual(server, DEFAULT_SETTINGS);
  assert.deepEqual(problems, []);
});

test("every protocol setting is passed through", () => {
  const { command, server, problems } = readSettings(
    config({
      serverCommand: ["/opt/deepfim/.venv/bin/deepfim", "lsp"],
      enabled: false,
      mode: "expert",
      checkpoint: "/models/flash",
      device: "cuda:1",
      expertCheckpoint: "/models/pro",
      server: "gpu-box.lan:7431",
      token: "tok-123",
      tlsCa: "/etc/deepfim/ca.pem",
      contextBudget: 8192,
      repositoryBudget: 16384,
      confidenceGate: -0.5,
      maxTokens: 64,
      debounceMs: 0,
      showByMs: 400,
      logFile: "/tmp/deepfim.log",
      logLevel: "DEBUG",
    }),
  );
  assert.deepEqual(problems, []);
  assert.deepEqual(command, ["/opt/deepfim/.venv/bin/deepfim", "lsp"]);
  assert.deepEqual(server, {
    enabled: false,
    mode: "expert",
    checkpoint: "/models/flash",
    device: "cuda:1",
    expertCheckpoint: "/models/pro",
    server: "gpu-box.lan:7431",
    token: "tok-123",
    tlsCa: "/etc/deepfim/ca.pem",
    contextBudget: 8192,
    repositoryBudget: 16384,
    confidenceGate: -0.5,
    maxTokens: 64,
    debounceMs: 0,
    showByMs: 400,
    logFile: "/tmp/deepfim.log",
    logLevel: "debug",
  });
});

test("invalid values are named and replaced by defaults", () => {
  const { command, server, problems } = readSettings(
    config({
      mode: "turbo",
      contextBudget: 12.5,
      server: "no-port",
      serverCommand: [],
      checkpoint: 3,
      logLevel: "loud",
      device: "gpu",
    }),
  );
  assert.equal(server.device, "cpu");
  assert.equal(server.mode, "instant");
  assert.equal(server.contextBudget, 4096);
  assert.equal(server.server, null);
  assert.equal(server.checkpoint, null);
  assert.deepEqual(command, ["deepfim", "lsp"]);
  assert.equal(server.logLevel, null);
  assert.equal(problems.length, 7);
  const names = ["mode", "checkpoint", "server", "device", "logLevel", "contextBudget", "serverCommand"];
  for (const [index, name] of names.entries()) {
    assert.match(problems[index] ?? "", new RegExp(`^deepfim\\.${name} `));
  }
  assert.match(problems[0] ?? "", /"turbo"/);
});

test("the confidence gate is a log-probability in [-20, 0], false (no gate) or null", () => {
  assert.equal(readSettings(config({ confidenceGate: false })).server.confidenceGate, false);
  assert.equal(readSettings(config({ confidenceGate: -1 })).server.confidenceGate, -1);
  for (const bad of [0.5, -21, true, "high"]) {
    const { server, problems } = readSettings(config({ confidenceGate: bad }));
    assert.equal(server.confidenceGate, null);
    assert.match(problems[0] ?? "", /^deepfim\.confidenceGate must be a number in \[-20, 0\]/);
  }
});

test("empty path settings mean the default, and a command string is split", () => {
  const { command, server } = readSettings(config({ checkpoint: "  ", serverCommand: "python -m deepfim lsp" }));
  assert.equal(server.checkpoint, null);
  assert.deepEqual(command, ["python", "-m", "deepfim", "lsp"]);
});

test("the defaults and bounds in package.json are the ones the code applies", () => {
  interface Property {
    default: unknown;
    minimum?: number;
    maximum?: number;
  }
  const manifest = JSON.parse(readFileSync(join(__dirname, "../../package.json"), "utf8")) as {
    contributes: { configuration: { properties: Record<string, Property> } };
  };
  const properties = manifest.contributes.configuration.properties;
  const declared = Object.fromEntries(
    Object.entries(properties).map(([name, property]) => [name.replace(/^deepfim\./, ""), property.default]),
  );
  assert.deepEqual(declared, { serverCommand: DEFAULT_COMMAND, ...DEFAULT_SETTINGS });
  for (const [key, property] of Object.entries(properties)) {
    if (property.minimum !== undefined) {
      const name = key.replace(/^deepfim\./, "");
      assert.deepEqual(readSettings(config({ [name]: property.minimum })).problems, [], key);
      assert.equal(readSettings(config({ [name]: property.minimum - 1 })).problems.length, 1, key);
    }
    if (property.maximum !== undefined) {
      const name = key.replace(/^deepfim\./, "");
      assert.deepEqual(readSettings(config({ [name]: property.maximum })).problems, [], key);
      assert.match(readSettings(config({ [name]: property.maximum + 1 })).problems[0] ?? "", /from \d+ to \d+/, key);
    }
  }
});
