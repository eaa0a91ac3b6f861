/**
 * What the tests that load the real extension share: the server binary, a fixture source, a
 * condition-based wait, and activate/deactivate against the `vscode` stand-in.
 */

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import "./installShim";
import * as extension from "../../src/extension";
import * as shim from "./vscodeShim";

const REPO = resolve(__dirname, "../../../../..");
export const DEEPFIM = process.env.DEEPFIM_BIN ?? join(REPO, ".venv", "bin", "deepfim");
export const FIRST_ANSWER_MS = 150_000;

export function startProblem(): string | undefined {
  if (!existsSync(DEEPFIM)) {
    return `${DEEPFIM} does not exist (run scripts/bootstrap.sh dev)`;
  }
  const probe = spawnSync(DEEPFIM, ["lsp", "--help"], { encoding: "utf8", timeout: 120_000 });
  return probe.status === 0 ? undefined : `\`deepfim lsp\` cannot start: ${probe.stderr.trim().split("\n").at(-1) ?? ""}`;
}

export const SOURCE = `def total_price(items):
    """Sum of price times quantity over all items."""
    return sum(item.price * item.quantity for item in items)


def average_price(items):
    units = sum(item.quantity for item in items)
    return total_price(items) / units


def most_expensive(items):
    return max(items, key=lambda item: item`;

export async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined): Promise<T> {
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

export type Extension = typeof extension;
export interface Context {
  subscriptions: { dispose(): unknown }[];
}

export async function activate(settings: Record<string, unknown>): Promise<{ extension: Extension; context: Context }> {
  shim.recorded.messages.length = 0;
  shim.recorded.output.length = 0;
  // the tests check what the model writes, so the checkpoint's confidence gate is off unless a
  // test sets it (the gate's own tests: tests/lsp_server/test_confidence_gate.py)
  shim.recorded.settings = { "deepfim.confidenceGate": false, ...settings };
  const context: Context = { subscriptions: [] };
  await extension.activate(context as never);
  return { extension, context };
}

export async function deactivate({ extension, context }: { extension: Extension; context: Context }): Promise<void> {
  await extension.deactivate();
  for (const item of context.subscriptions) {
    item.dispose();
  }
}

/** A temporary workspace with `shop.py` (SOURCE) registered with the stand-in; returns its document. */
export function openWorkspace(): { workspace: string; document: unknown } {
  const workspace = mkdtempSync(join(tmpdir(), "deepfim-vscode-"));
  mkdirSync(join(workspace, ".git"));
  const file = join(workspace, "shop.py");
  writeFileSync(file, SOURCE);
  shim.workspaceFolders.push({ uri: shim.Uri.file(workspace), name: "ws", index: 0 });
  const document = shim.textDocument(file, "python", SOURCE);
  shim.textDocuments.push(document);
  process.env.DEEPFIM_CACHE_DIR = join(workspace, ".cache");
  return { workspace, document };
}

/** The position after the last character of SOURCE. */
export function endOfSource(): shim.Position {
  const lines = SOURCE.split("\n");
  return new shim.Position(lines.length - 1, (lines.at(-1) ?? "").length);
}

export interface InlineProvider {
  provideInlineCompletionItems(...args: unknown[]): Promise<shim.InlineCompletionList | shim.InlineCompletionItem[] | null>;
}

/** The inline-completion provider the real LanguageClient registered. */
export function inlineProvider(): InlineProvider {
  const provider = shim.inlineCompletionProvider() as InlineProvider | undefined;
  if (provider === undefined) {
    throw new Error("the client registered no inline-completion provider");
  }
  return provider;
}
