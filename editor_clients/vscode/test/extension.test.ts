/**
 * The real extension (activate → LanguageClient → middleware → commands) against the real
 * `deepfim lsp`, in Node with the `vscode` stand-in from support/vscodeShim.ts. Skipped only
 * when `deepfim lsp` cannot start here.
 */

import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import {
  activate,
  deactivate,
  DEEPFIM,
  endOfSource,
  FIRST_ANSWER_MS,
  inlineProvider,
  openWorkspace,
  startProblem,
  waitFor,
  type Context,
  type Extension,
} from "./support/session";
import * as shim from "./support/vscodeShim";

const problem = startProblem();

describe("extension against the real server", { skip: problem ?? false, timeout: 600_000 }, () => {
  const { workspace, document } = openWorkspace();
  let session: { extension: Extension; context: Context };

  before(async () => {
    shim.recorded.statusBarHistory.length = 0;
    session = await activate({ "deepfim.serverCommand": [DEEPFIM, "lsp"] });
  });
  after(async () => {
    await deactivate(session);
  });

  test("the status bar shows the server's progress, then the mode; no errors", async () => {
    const name = workspace.split("/").at(-1) ?? "";
    // loading the model, then reading the workspace into the engine (the repository part, in the
    // background), then the mode
    await waitFor("the model to load and the workspace to be read", FIRST_ANSWER_MS, () =>
      shim.recorded.statusBar.text === "$(sparkle) DeepFIM instant" &&
      shim.recorded.statusBarHistory.includes("$(loading~spin) DeepFIM loading model") &&
      shim.recorded.statusBarHistory.some((text) => text.startsWith(`$(loading~spin) DeepFIM reading ${name}`))
        ? true
        : undefined,
    );
    const history = shim.recorded.statusBarHistory;
    assert.ok(history.includes("$(loading~spin) DeepFIM loading model"), history.join("\n"));
    assert.ok(history.some((text) => text.startsWith(`$(loading~spin) DeepFIM indexing ${name}`)), history.join("\n"));
    assert.equal(history.at(-1), "$(sparkle) DeepFIM instant");
    assert.deepEqual(shim.recorded.messages.filter((m) => m.level === "error"), []);
  });

  test("inline completions arrive through the client with an accept command", async () => {
    const provider = inlineProvider();
    const position = endOfSource();
    const token = new shim.CancellationTokenSource().token;
    const context = { triggerKind: shim.InlineCompletionTriggerKind.Automatic, selectedCompletionInfo: undefined };
    const deadline = Date.now() + FIRST_ANSWER_MS;
    let items: shim.InlineCompletionItem[] = [];
    // The first requests may come before the model is loaded; the server then answers empty.
    while (items.length === 0 && Date.now() < deadline) {
      const result = await provider.provideInlineCompletionItems(document, position, context, token);
      items = result === null ? [] : Array.isArray(result) ? result : result.items;
      if (items.length === 0) {
        // A server that reports an error (e.g. the engine failed to load) will not recover.
        await shim.commands.executeCommand("deepfim.showStatus");
        const status = shim.recorded.messages.at(-1)?.text ?? "";
        assert.doesNotMatch(status, /last error:/, "the server reports an error instead of completing");
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
    assert.ok(items.length > 0, `no inline completion within ${FIRST_ANSWER_MS} ms:\n${shim.recorded.output.slice(-20).join("\n")}`);
    const item = items[0];
    assert.ok(item && typeof item.insertText === "string" && item.insertText.length > 0);
    assert.equal(item.command?.command, "deepfim.accept");
    const argument = item.command.arguments?.[0] as { id?: unknown } | undefined;
    assert.ok(argument?.id !== undefined, "command.arguments[0].id");
    assert.match(shim.recorded.statusBar.text, /^\$\(sparkle\) DeepFIM instant \d+ ms$/);

    // VS Code runs the item's command when the user accepts it.
    await shim.commands.executeCommand("deepfim.accept", ...(item.command.arguments ?? []));
    await shim.commands.executeCommand("deepfim.showStatus");
    const status = shim.recorded.messages.at(-1);
    assert.ok(status !== undefined && status.level === "info");
    assert.match(status.text, /^DeepFIM: enabled, mode instant/);
    assert.match(status.text, /acceptance: \d+ shown, 1 accepted/);
  });

  test("an explicit (expert) request shows in the status bar while it runs", async () => {
    const start = shim.recorded.statusBarHistory.length;
    const context = { triggerKind: shim.InlineCompletionTriggerKind.Invoke, selectedCompletionInfo: undefined };
    const token = new shim.CancellationTokenSource().token;
    await inlineProvider().provideInlineCompletionItems(document, endOfSource(), context, token);
    const seen = shim.recorded.statusBarHistory.slice(start);
    assert.equal(seen[0], "$(loading~spin) DeepFIM expert request", seen.join("\n"));
    assert.match(seen.at(-1) ?? "", /^\$\(sparkle\) DeepFIM instant \d+ ms$/);
  });

  test("where the cursor rests reaches the server, once a burst of moves is over", async () => {
    const selection = shim.emitter("onDidChangeTextEditorSelection");
    const uri = (document as { uri: unknown }).uri;
    for (const line of [1, 2, 3, 4]) {
      const active = { line, character: 0 };
      selection.fire({ textEditor: { document: { uri } }, selections: [{ active, isEmpty: true }] });
    }
    const reported = await waitFor("the cursor report", 10_000, () => {
      void shim.commands.executeCommand("deepfim.showStatus");
      const text = shim.recorded.messages.at(-1)?.text ?? "";
      return /cursor rests: \d+ reported/.exec(text)?.[0];
    });
    assert.equal(reported, "cursor rests: 1 reported");
  });

  test("switch mode and toggle reach the server", async () => {
    shim.recorded.quickPickAnswer = "expert";
    await shim.commands.executeCommand("deepfim.switchMode");
    assert.equal(shim.recorded.statusBar.text.split(" ").slice(0, 3).join(" "), "$(sparkle) DeepFIM expert");
    await shim.commands.executeCommand("deepfim.toggle");
    assert.equal(shim.recorded.statusBar.text, "$(circle-slash) DeepFIM off");
    await shim.commands.executeCommand("deepfim.showStatus");
    assert.match(shim.recorded.messages.at(-1)?.text ?? "", /^DeepFIM: disabled, mode expert/);
    await shim.commands.executeCommand("deepfim.toggle");
    shim.recorded.quickPickAnswer = "instant";
    await shim.commands.executeCommand("deepfim.switchMode");
    await shim.commands.executeCommand("deepfim.showStatus");
    assert.match(shim.recorded.messages.at(-1)?.text ?? "", /^DeepFIM: enabled, mode instant/);
  });

  test("restart brings the server back", async () => {
    await shim.commands.executeCommand("deepfim.restart");
    assert.match(shim.recorded.statusBar.text, /^\$\(sparkle\) DeepFIM instant/);
    await shim.commands.executeCommand("deepfim.showStatus");
    assert.match(shim.recorded.messages.at(-1)?.text ?? "", /^DeepFIM: enabled/);
  });
});

describe("a checkpoint that fails to load", { skip: problem ?? false, timeout: 120_000 }, () => {
  test("the status bar flags the server's error and names it", async () => {
    const empty = mkdtempSync(join(tmpdir(), "deepfim-no-checkpoint-"));
    const session = await activate({ "deepfim.serverCommand": [DEEPFIM, "lsp"], "deepfim.checkpoint": empty });
    try {
      await waitFor("the server's error in the status bar", 60_000, () =>
        shim.recorded.statusBar.text.endsWith("$(warning)") ? true : undefined,
      );
      assert.equal(shim.recorded.statusBar.text, "$(sparkle) DeepFIM instant $(warning)");
      assert.match(String(shim.recorded.statusBar.tooltip), /last error: could not start the engine: .*config\.json/);
    } finally {
      await deactivate(session);
    }
  });
});

describe("servers that cannot start", { timeout: 120_000 }, () => {
  test("a missing program gives one clear error and a red status bar", async () => {
    const session = await activate({ "deepfim.serverCommand": ["/no/such/venv/bin/deepfim", "lsp"] });
    try {
      const errors = shim.recorded.messages.filter((m) => m.level === "error");
      assert.equal(errors.length, 1);
      assert.match(errors[0]?.text ?? "", /"\/no\/such\/venv\/bin\/deepfim" is not an executable program/);
      assert.equal(shim.recorded.statusBar.text, "$(error) DeepFIM");
      await shim.commands.executeCommand("deepfim.showStatus");
      assert.match(shim.recorded.messages.at(-1)?.text ?? "", /language server is not running/);
    } finally {
      await deactivate(session);
    }
  });

  test("a program that exits at start gives a message naming the command", { skip: problem ?? false }, async () => {
    const session = await activate({ "deepfim.serverCommand": [DEEPFIM, "lsp", "--no-such-option"] });
    try {
      // vscode-languageclient shows its own "couldn't create connection" first; ours names the command.
      const error = await waitFor("the start failure", 60_000, () =>
        shim.recorded.messages.find((m) => m.level === "error" && m.text.includes("failed to start")),
      );
      assert.match(error.text, /\(.*deepfim lsp --no-such-option\) failed to start/);
      assert.match(error.text, /deepfim\.serverCommand/);
      assert.equal(shim.recorded.statusBar.text, "$(error) DeepFIM");
    } finally {
      await deactivate(session);
    }
  });
});
