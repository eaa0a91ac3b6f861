/** The `LanguageClient` for `deepfim lsp`: stdio, inline completions timed, failures reported once. */

import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  RevealOutputChannelOn,
  type LanguageClientOptions,
  type ServerOptions,
} from "vscode-languageclient/node";

import type { ProgressValue } from "./activity";
import { isAcceptArgument, Methods } from "./protocol";
import type { ServerSettings } from "./settings";

/** The command the server puts on inline items; VS Code runs it when an item is accepted. */
export const ACCEPT_COMMAND = "deepfim.accept";

export interface ClientHooks {
  /** A `$/progress` notification from the server (model loading, indexing). */
  onProgress(token: string | number, value: ProgressValue): void;
  /** An inline-completion request went out (`invoked`: explicit); returns what to call when it ends. */
  onRequestStarted(invoked: boolean): () => void;
  /** An inline-completion request was answered after `ms` milliseconds. */
  onLatency(ms: number): void;
  /** A request failed (cancellations are not failures). */
  onRequestError(message: string): void;
  /** The server process ended; `restarting` tells whether the client starts it again. */
  onClosed(restarting: boolean): void;
}

const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 3 * 60 * 1000;

function isCancellation(error: unknown): boolean {
  return error instanceof vscode.CancellationError || (error instanceof Error && error.message === "Canceled");
}

export function createClient(
  command: readonly string[],
  settings: ServerSettings,
  output: vscode.LogOutputChannel,
  hooks: ClientHooks,
): LanguageClient {
  const [program = "deepfim", ...args] = command;
  const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const serverOptions: ServerOptions = { command: program, args, options: cwd === undefined ? {} : { cwd } };
  const restarts: number[] = [];
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    initializationOptions: settings,
    outputChannel: output,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    initializationFailedHandler: () => false,
    errorHandler: {
      error: () => ({ action: ErrorAction.Continue, handled: true }),
      closed: () => {
        const now = Date.now();
        while (restarts.length > 0 && (restarts[0] ?? now) < now - RESTART_WINDOW_MS) {
          restarts.shift();
        }
        const restart = restarts.length < MAX_RESTARTS;
        if (restart) {
          restarts.push(now);
        }
        hooks.onClosed(restart);
        return { action: restart ? CloseAction.Restart : CloseAction.DoNotRestart, handled: true };
      },
    },
    middleware: {
      // The server also offers `deepfim.accept` as a workspace command, so the client registers
      // it; statistics go through the documented `deepfim/accept` request instead.
      executeCommand: async (command, args, next) => {
        const argument: unknown = args[0];
        if (command === ACCEPT_COMMAND && isAcceptArgument(argument)) {
          await client.sendRequest(Methods.accept, { id: argument.id });
          return undefined;
        }
        return next(command, args) as unknown;
      },
      // VS Code draws the progress in its own status area too; this feeds our item.
      handleWorkDoneProgress: (token, params, next) => {
        hooks.onProgress(token, params);
        next(token, params);
      },
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        const started = performance.now();
        const ended = hooks.onRequestStarted(context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke);
        try {
          const result = await next(document, position, context, token);
          if (!token.isCancellationRequested) {
            hooks.onLatency(performance.now() - started);
          }
          return result;
        } catch (error) {
          if (!isCancellation(error) && !token.isCancellationRequested) {
            hooks.onRequestError(error instanceof Error ? error.message : String(error));
          }
          return null;
        } finally {
          ended();
        }
      },
    },
  };
  const client = new LanguageClient("deepfim", "DeepFIM", serverOptions, clientOptions);
  return client;
}
