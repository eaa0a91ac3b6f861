import assert from "node:assert/strict";
import { test } from "node:test";

import { CursorReporter } from "../src/cursor";

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const at = (line: number, character: number) => ({ uri: "file:///a.py", line, character });

test("only the place where the cursor rests is reported, once", async () => {
  const sent: unknown[] = [];
  const reporter = new CursorReporter((params) => sent.push(params), 30);
  for (let line = 0; line < 5; line++) {
    reporter.moved(at(line, 4), true); // arrow keys faster than the rest delay
    await wait(5);
  }
  await wait(60);
  assert.deepEqual(sent, [{ textDocument: { uri: "file:///a.py" }, position: { line: 4, character: 4 } }]);
  reporter.moved(at(4, 4), true); // the same place again: the server holds its prompt
  await wait(60);
  assert.equal(sent.length, 1);
  reporter.edited(); // the text changed: the same place names other text now
  reporter.moved(at(4, 4), true);
  await wait(60);
  assert.equal(sent.length, 2);
});

test("a selected range is never reported, and cancel drops a pending report", async () => {
  const sent: unknown[] = [];
  const reporter = new CursorReporter((params) => sent.push(params), 20);
  reporter.moved(at(1, 0), false);
  await wait(50);
  reporter.moved(at(2, 0), true);
  reporter.cancel();
  await wait(50);
  assert.deepEqual(sent, []);
});
