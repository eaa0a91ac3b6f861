/** One DeepFIM language-server session: start, restart, settings changes and the commands. */

import * as vscode from "vscode";
import { DidChangeConfigurationNotification, type LanguageClient } from "vscode-languageclient/node";

import { Activity } from "./activity";
import { ACCEPT_COMMAND, createClient } from "./client";
import { CursorReporter } from "./cursor";
import { statusReport } from "./format";
import { checkLaunch } from "./launch";
import { DeepfimApi, isAcceptArgument } from "./protocol";
import { readSettings } from "./settings";
import type { StatusBar } from "./statusBar";

export class Session {
  private client: LanguageClient | undefined;
  private api: DeepfimApi | undefined;
  private command = "";
  /** Our own `deepfim.accept`, only when the server does not offer it as a workspace command. */
  private acceptCommand: vscode.Disposable | undefined;
  /** Where the cursor rests, for the server to prepare that prompt (`deepfim/cursor`). */
  private cursorEvents: vscode.Disposable[] = [];
  private readonly activity: Activity;

  constructor(
    private readonly output: vscode.LogOutputChannel,
    private readonly bar: StatusBar,
  ) {
    this.activity = new Activity(({ work, busy }) => {
      this.bar.update({ work, busy });
    });
  }

  async start(): Promise<void> {
    const { command, server, problems } = readSettings(vscode.workspace.getConfiguration("deepfim"));
    const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? process.cwd();
    const check = checkLaunch(command, server, process.env.PATH, cwd);
    for (const warning of [...problems, ...check.warnings]) {
      this.output.warn(warning);
      void vscode.window.showWarningMessage(`DeepFIM: ${warning}`);
    }
    this.command = JSON.stringify(command);
    this.bar.update({ phase: "starting", mode: server.mode, enabled: server.enabled, error: undefined, serverError: undefined });
    if (check.fatal !== undefined) {
      this.fail(check.fatal);
      return;
    }
    this.output.info(`starting ${command.join(" ")}`);
    const client = createClient(command, server, this.output, {
      onProgress: (token, value) => {
        if (this.activity.progress(token, value)) {
          void this.refreshServerError();
        }
      },
      onRequestStarted: (invoked) => this.activity.requestStarted(invoked || this.bar.state.mode === "expert"),
      onLatency: (ms) => {
        this.bar.update({ lastLatencyMs: ms, error: undefined });
      },
      onRequestError: (message) => {
        this.output.error(`completion failed: ${message}`);
        this.bar.update({ error: message });
      },
      onClosed: (restarting) => {
        this.activity.clear();
        this.bar.update(restarting ? { phase: "starting" } : { phase: "stopped" });
      },
    });
    this.client = client;
    this.api = new DeepfimApi(client);
    try {
      await client.start();
      const offered = client.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
      if (!offered.includes(ACCEPT_COMMAND)) {
        this.acceptCommand = vscode.commands.registerCommand(ACCEPT_COMMAND, (argument: unknown) => this.accept(argument));
      }
      this.reportCursor(client);
      this.bar.update({ phase: "running" });
    } catch (error) {
      this.client = undefined;
      this.api = undefined;
      const reason = error instanceof Error ? error.message : String(error);
      this.fail(
        `DeepFIM's language server (${command.join(" ")}) failed to start: ${reason}. ` +
          'Check that "deepfim.serverCommand" runs in a Python environment with DeepFIM installed; the log has the server\'s output.',
      );
    }
  }

  private fail(message: string): void {
    this.output.error(message);
    this.bar.update({ phase: "failed", error: message });
    void vscode.window.showErrorMessage(message, "Open Settings", "Show Log").then((choice) => {
      if (choice === "Open Settings") {
        void vscode.commands.executeCommand("workbench.action.openSettings", "deepfim");
      } else if (choice === "Show Log") {
        this.output.show();
      }
    });
  }

  /** The server's `last_error` after its work ended: a model that failed to load, say. */
  private async refreshServerError(): Promise<void> {
    try {
      const status = await this.api?.status();
      if (status !== undefined) {
        this.bar.update({ serverError: status.last_error ?? undefined });
      }
    } catch (error) {
      this.output.warn(`deepfim/status: ${String(error)}`);
    }
  }

  private reportCursor(client: LanguageClient): void {
    const reporter = new CursorReporter((params) => {
      if (client.isRunning()) {
        void client.sendNotification("deepfim/cursor", params);
      }
    });
    this.cursorEvents = [
      vscode.window.onDidChangeTextEditorSelection((event) => {
        const { active, isEmpty } = event.selections[0] ?? { active: undefined, isEmpty: false };
        if (active === undefined || !["file", "untitled"].includes(event.textEditor.document.uri.scheme)) {
          return;
        }
        reporter.moved({ uri: event.textEditor.document.uri.toString(), line: active.line, character: active.character }, isEmpty);
      }),
      vscode.workspace.onDidChangeTextDocument(() => {
        reporter.edited();
      }),
      new vscode.Disposable(() => {
        reporter.cancel();
      }),
    ];
  }

  async stop(): Promise<void> {
    this.activity.clear();
    this.acceptCommand?.dispose();
    this.acceptCommand = undefined;
    for (const event of this.cursorEvents) {
      event.dispose();
    }
    this.cursorEvents = [];
    const client = this.client;
    this.client = undefined;
    this.api = undefined;
    if (client?.isRunning()) {
      await client.stop(5000).catch((error: unknown) => {
        this.output.warn(`stop: ${String(error)}`);
      });
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Settings changed: restart for a new server command, else tell the running server. */
  async onConfigurationChanged(): Promise<void> {
    const { command, server } = readSettings(vscode.workspace.getConfiguration("deepfim"));
    if (this.client === undefined || JSON.stringify(command) !== this.command) {
      await this.restart();
      return;
    }
    await this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: { deepfim: server } });
    this.bar.update({ mode: server.mode, enabled: server.enabled });
  }

  private connected(): DeepfimApi | undefined {
    if (this.api === undefined) {
      void vscode.window.showWarningMessage("DeepFIM: the language server is not running.", "Restart").then((choice) => {
        if (choice === "Restart") {
          void this.restart();
        }
      });
    }
    return this.api;
  }

  async toggle(): Promise<void> {
    const enabled = await this.connected()?.setEnabled(!this.bar.state.enabled);
    if (enabled !== undefined) {
      this.bar.update({ enabled });
    }
  }

  async switchMode(): Promise<void> {
    const api = this.connected();
    const current = this.bar.state.mode;
    const items = (["instant", "expert"] as const).map((mode) => ({ label: mode, description: mode === current ? "current" : "" }));
    const picked = api && (await vscode.window.showQuickPick(items, { placeHolder: "DeepFIM mode for automatic completions" }));
    if (api && picked) {
      this.bar.update({ mode: await api.setMode(picked.label) });
    }
  }

  async showStatus(): Promise<void> {
    const api = this.connected();
    if (!api) {
      return;
    }
    const lines = statusReport(await api.status());
    this.output.info(`status: ${lines.join("; ")}`);
    const choice = await vscode.window.showInformationMessage(`DeepFIM: ${lines.join(" · ")}`, "Switch Mode", "Show Log");
    if (choice === "Switch Mode") {
      await this.switchMode();
    } else if (choice === "Show Log") {
      this.output.show();
    }
  }

  /** Runs when an inline completion is accepted: VS Code executes the item's command. */
  async accept(argument: unknown): Promise<void> {
    if (isAcceptArgument(argument)) {
      await this.api?.accept(argument.id);
    }
  }
}
