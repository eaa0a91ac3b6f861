/** Text for the status-bar item and the status report. Pure functions; no `vscode` import. */

import type { Status } from "./protocol";
import type { Mode } from "./settings";

export type Phase = "starting" | "running" | "stopped" | "failed";

export interface ClientState {
  phase: Phase;
  mode: Mode;
  enabled: boolean;
  /** Round trip of the last inline-completion request that the server answered. */
  lastLatencyMs?: number | undefined;
  /** Last failure to show (start failure, request error); cleared by a good answer. */
  error?: string | undefined;
}

export interface StatusBarText {
  text: string;
  tooltip: string;
}

export function statusBarText(state: ClientState): StatusBarText {
  const latency = state.lastLatencyMs === undefined ? "" : ` ${Math.round(state.lastLatencyMs)} ms`;
  switch (state.phase) {
    case "failed":
      return { text: "$(error) DeepFIM", tooltip: `DeepFIM: ${state.error ?? "the language server failed"}\nClick for details` };
    case "starting":
      return { text: "$(loading~spin) DeepFIM", tooltip: "DeepFIM: starting the language server…" };
    case "stopped":
      return { text: "$(debug-disconnect) DeepFIM", tooltip: "DeepFIM: language server stopped\nClick for details" };
    case "running":
      break;
  }
  if (!state.enabled) {
    return { text: "$(circle-slash) DeepFIM off", tooltip: "DeepFIM: completions are off (DeepFIM: Toggle completions)" };
  }
  const warn = state.error === undefined ? "" : " $(warning)";
  const tooltip = [`DeepFIM: ${state.mode} mode`];
  if (state.lastLatencyMs !== undefined) {
    tooltip.push(`last completion: ${Math.round(state.lastLatencyMs)} ms`);
  }
  if (state.error !== undefined) {
    tooltip.push(`last error: ${state.error}`);
  }
  tooltip.push("Click for status");
  return { text: `$(sparkle) DeepFIM ${state.mode}${latency}${warn}`, tooltip: tooltip.join("\n") };
}

/** `deepfim/status` as short lines for a message or the output channel. */
export function statusReport(status: Status): string[] {
  const lines = [`${status.enabled ? "enabled" : "disabled"}, mode ${status.mode}, engine ${status.server ?? "?"}`];
  if (status.models) {
    lines.push(`models: instant ${String(status.models.instant)}, expert ${String(status.models.expert)}`);
  }
  if (status.index) {
    const ready = status.index.ready === false ? " (indexing…)" : "";
    lines.push(`index: ${status.index.files ?? 0} files, ${status.index.definitions ?? 0} definitions${ready}`);
  }
  const latency = status.latency_ms;
  if (latency?.count) {
    lines.push(`latency: p50 ${String(latency.p50)} ms, p95 ${String(latency.p95)} ms over ${latency.count} requests`);
  }
  const acc = status.acceptance;
  if (acc) {
    const rate = typeof acc.rate === "number" ? ` (${Math.round(acc.rate * 100)}%)` : "";
    lines.push(`acceptance: ${acc.shown ?? 0} shown, ${acc.accepted ?? 0} accepted, ${acc.rejected ?? 0} rejected${rate}`);
  }
  if (status.last_error) {
    lines.push(`last error: ${status.last_error}`);
  }
  return lines;
}
