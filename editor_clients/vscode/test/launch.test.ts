import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { checkLaunch, findProgram } from "../src/launch";
import { DEFAULT_SETTINGS } from "../src/settings";

const dir = mkdtempSync(join(tmpdir(), "deepfim-launch-"));
const bin = join(dir, "bin");
mkdirSync(bin);
writeFileSync(join(bin, "deepfim"), "#!/bin/sh\nexit 0\n");
chmodSync(join(bin, "deepfim"), 0o755);
writeFileSync(join(bin, "not-executable"), "data");
mkdirSync(join(dir, "ckpt"));

test("programs are found on PATH, by relative and by absolute path, only when executable", () => {
  assert.equal(findProgram("deepfim", `/nonexistent:${bin}`, "/"), join(bin, "deepfim"));
  assert.equal(findProgram("bin/deepfim", undefined, dir), join(bin, "deepfim"));
  assert.equal(findProgram(join(bin, "deepfim"), undefined, "/"), join(bin, "deepfim"));
  assert.equal(findProgram("not-executable", bin, "/"), undefined);
  assert.equal(findProgram("deepfim", "/nonexistent", "/"), undefined);
});

test("a missing server program is fatal and the message says what to do", () => {
  const check = checkLaunch(["/no/venv/bin/deepfim", "lsp"], DEFAULT_SETTINGS, bin, dir);
  assert.match(check.fatal ?? "", /"\/no\/venv\/bin\/deepfim" is not an executable program\./);
  assert.match(check.fatal ?? "", /deepfim\.serverCommand/);
  const onPath = checkLaunch(["deepfim", "lsp"], DEFAULT_SETTINGS, "/nonexistent", dir);
  assert.match(onPath.fatal ?? "", /"deepfim" is not an executable program on PATH/);
});

test("bad checkpoint paths are warnings naming the setting", () => {
  const settings = { ...DEFAULT_SETTINGS, checkpoint: "ckpt", expertCheckpoint: "/no/such/pro", tlsCa: "/no/ca.pem" };
  const check = checkLaunch(["deepfim", "lsp"], settings, bin, dir);
  assert.equal(check.fatal, undefined);
  assert.deepEqual(
    check.warnings.map((w) => w.split(" ")[0]),
    ["deepfim.expertCheckpoint", "deepfim.tlsCa"],
  );
  assert.match(check.warnings[0] ?? "", /"\/no\/such\/pro", which does not exist/);
});
