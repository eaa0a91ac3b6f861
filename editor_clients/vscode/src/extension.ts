/**
 * DeepFIM for VS Code: starts `deepfim lsp` with a `LanguageClient` (inline completions come from
 * the client's built-in LSP 3.18 support) and adds a status-bar item, an output channel, settings
 * and commands. All completion logic lives in the server.
 */

import * as vscode from "vscode";

import { Session } from "./session";
import { StatusBar } from "./statusBar";

let current: Session | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel("DeepFIM", { log: true });
  const bar = new StatusBar();
  const session = new Session(output, bar);
  current = session;
  const report = (what: string) => (error: unknown) => {
    output.error(`${what}: ${String(error)}`);
    void vscode.window.showErrorMessage(`DeepFIM: ${what} failed: ${error instanceof Error ? error.message : String(error)}`);
  };
  const command = (id: string, run: (...args: unknown[]) => Promise<void>) =>
    vscode.commands.registerCommand(id, (...args: unknown[]) => run(...args).catch(report(id)));
  context.subscriptions.push(
    output,
    bar,
    command("deepfim.toggle", () => session.toggle()),
    command("deepfim.switchMode", () => session.switchMode()),
    command("deepfim.restart", () => session.restart()),
    command("deepfim.showStatus", () => session.showStatus()),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("deepfim")) {
        session.onConfigurationChanged().catch(report("reloading settings"));
      }
    }),
  );
  await session.start();
}

/** VS Code waits for this promise: the server gets a clean shutdown/exit. */
export function deactivate(): Promise<void> | undefined {
  const session = current;
  current = undefined;
  return session?.stop();
}
