/**
 * The real extension (activate → LanguageClient → middleware → commands) against the real
 * `deepfim lsp`, in Node with the `vscode` stand-in from support/vscodeShim.ts. Skipped only
 * when `deepfim lsp` cannot start here.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, test } from "node:test";

import "./support/installShim";
import * as extension from "../src/extension";
import * as shim from "./support/vscodeShim";

const REPO = resolve(__dirname, "../../../..");
const DEEPFIM = process.env.DEEPFIM_BIN ?? join(REPO, ".venv", "bin", "deepfim");
const FIRST_ANSWER_MS = 150_000;

function startProblem(): string | undefined {
  if (!existsSync(DEEPFIM)) {
    return `${DEEPFIM} does not exist (run scripts/bootstrap.sh dev)`;
  }
  const probe = spawnSync(DEEPFIM, ["lsp", "--help"], { encoding: "utf8", timeout: 120_000 });
  return probe.status === 0 ? undefined : `\`deepfim lsp\` cannot start: ${probe.stderr.trim().split("\n").at(-1) ?? ""}`;
}

const SOURCE = `def total_price(items):
    """Sum of price times quantity over all items."""
    return sum(item.price * item.quantity for item in items)


def average_price(items):
    units = sum(item.quantity for item in items)
    return total_price(items) / units


def most_expensive(items):
    return max(items, key=lambda item: item`;

async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; output:\n${shim.recorded.output.slice(-30).join("\n")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50)); // polling interval of the wait, not a sync point
  }
}

type Extension = typeof extension;
interface Context {
  subscriptions: { dispose(): unknown }[];
}

async function activate(settings: Record<string, unknown>): Promise<{ extension: Extension; context: Context }> {
  shim.recorded.messages.length = 0;
  shim.recorded.output.length = 0;
  shim.recorded.settings = settings;
  const context: Context = { subscriptions: [] };
  await extension.activate(context as never);
  return { extension, context };
}

async function deactivate({ extension, context }: { extension: Extension; context: Context }): Promise<void> {
  await extension.deactivate();
  for (const item of context.subscriptions) {
    item.dispose();
  }
}

const problem = startProblem();

describe("extension against the real server", { skip: problem ?? false, timeout: 600_000 }, () => {
  const workspace = mkdtempSync(join(tmpdir(), "deepfim-vscode-"));
  mkdirSync(join(workspace, ".git"));
  const file = join(workspace, "shop.py");
  writeFileSync(file, SOURCE);
  shim.workspaceFolders.push({ uri: shim.Uri.file(workspace), name: "ws", index: 0 });
  const document = shim.textDocument(file, "python", SOURCE);
  shim.textDocuments.push(document);
  let session: { extension: Extension; context: Context };

  before(async () => {
    process.env.DEEPFIM_CACHE_DIR = join(workspace, ".cache");
    session = await activate({ "deepfim.serverCommand": [DEEPFIM, "lsp"] });
  });
  after(async () => {
    await deactivate(session);
  });

  test("starts, shows the mode in the status bar and reports no errors", () => {
    assert.equal(shim.recorded.statusBar.text, "$(sparkle) DeepFIM instant");
    assert.deepEqual(shim.recorded.messages.filter((m) => m.level === "error"), []);
  });

  test("inline completions arrive through the client with an accept command", async () => {
    const provider = shim.inlineCompletionProvider() as {
      provideInlineCompletionItems(...args: unknown[]): Promise<shim.InlineCompletionList | shim.InlineCompletionItem[] | null>;
    };
    assert.ok(provider, "the client registered an inline-completion provider");
    const lines = SOURCE.split("\n");
    const position = new shim.Position(lines.length - 1, (lines.at(-1) ?? "").length);
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
