/**
 * DeepFIM's custom LSP methods (docs/protocol.md), typed, over any connection that can send
 * requests: the extension's `LanguageClient` or a plain `vscode-jsonrpc` connection in tests.
 */

import type { Mode } from "./settings";

export interface Status {
  mode: Mode;
  enabled: boolean;
  models?: { instant?: string | null; expert?: string | null };
  index?: { files?: number; definitions?: number; bytes?: number; ready?: boolean };
  cache?: Record<string, unknown>;
  latency_ms?: { count?: number; p50?: number | null; p95?: number | null };
  acceptance?: { shown?: number; accepted?: number; rejected?: number; rate?: number | null };
  cursor?: { reported?: number; prefetched?: number };
  server?: string;
  last_error?: string | null;
}

/** The argument the server puts in each inline item's `command.arguments[0]`. */
export interface AcceptArgument {
  id: string | number;
}

export function isAcceptArgument(value: unknown): value is AcceptArgument {
  if (typeof value !== "object" || value === null || !("id" in value)) {
    return false;
  }
  const id: unknown = value.id;
  return typeof id === "string" || typeof id === "number";
}

export interface RequestSender {
  sendRequest<R>(method: string, params: object): Promise<R>;
}

export const Methods = {
  status: "deepfim/status",
  setMode: "deepfim/setMode",
  accept: "deepfim/accept",
  reject: "deepfim/reject",
  setEnabled: "deepfim/setEnabled",
} as const;

/** Typed wrappers around the custom requests. */
export class DeepfimApi {
  constructor(private readonly connection: RequestSender) {}

  status(): Promise<Status> {
    return this.connection.sendRequest<Status>(Methods.status, {});
  }

  async setMode(mode: Mode): Promise<Mode> {
    return (await this.connection.sendRequest<{ mode: Mode }>(Methods.setMode, { mode })).mode;
  }

  async setEnabled(enabled: boolean): Promise<boolean> {
    return (await this.connection.sendRequest<{ enabled: boolean }>(Methods.setEnabled, { enabled })).enabled;
  }

  async accept(id: string | number, acceptedChars?: number): Promise<void> {
    const params = acceptedChars === undefined ? { id } : { id, acceptedChars };
    await this.connection.sendRequest<null>(Methods.accept, params);
  }

  async reject(id: string | number): Promise<void> {
    await this.connection.sendRequest<null>(Methods.reject, { id });
  }
}
