/** Text for the status-bar item and the status report. Pure functions; no `vscode` import. */

import type { Status } from "./protocol";
import type { Mode } from "./settings";

export type Phase = "starting" | "running" | "stopped" | "failed";

/** Server work announced with `$/progress` (model loading, indexing) that has not ended. */
export interface Work {
  title: string;
  /** Set by `report`s only: a `begin`'s 0 % stays 0 when the server never reports. */
  percentage?: number | undefined;
}

/** The inline-completion request in flight. */
export interface Busy {
  /** Explicit (Trigger Inline Suggestion) or in expert mode: seconds, not milliseconds. */
  expert: boolean;
  /** It has been waiting longer than `SLOW_MS` (a cold start's first prefill, say). */
  slow: boolean;
}

/** An automatic request unanswered after this long shows as "waiting". */
export const SLOW_MS = 400;

export interface ClientState {
  phase: Phase;
  mode: Mode;
  enabled: boolean;
  /** Round trip of the last inline-completion request that the server answered. */
  lastLatencyMs?: number | undefined;
  /** Last failure to show (start failure, request error); cleared by a good answer. */
  error?: string | undefined;
  /** The server's own `last_error` (`deepfim/status`), e.g. a model that failed to load. */
  serverError?: string | undefined;
  /** Work in progress, oldest first. */
  work?: readonly Work[] | undefined;
  busy?: Busy | undefined;
}

export interface StatusBarText {
  text: string;
  tooltip: string;
}

/** The latest work begun, as the bar shows it: a short piece of work (indexing a small
 * workspace) that starts while a longer one runs (loading the model) is shown, not hidden
 * behind it until it is over. */
function latestWork(state: ClientState): string | undefined {
  const work = state.work?.at(-1);
  return work && `${work.title}${work.percentage === undefined ? "" : ` ${Math.round(work.percentage)}%`}`;
}

export function statusBarText(state: ClientState): StatusBarText {
  const latency = state.lastLatencyMs === undefined ? "" : ` ${Math.round(state.lastLatencyMs)} ms`;
  switch (state.phase) {
    case "failed":
      return { text: "$(error) DeepFIM", tooltip: `DeepFIM: ${state.error ?? "the language server failed"}\nClick for details` };
    case "starting": {
      // the server may announce work before the client has finished starting (indexing begins at
      // `initialized`): show it, or a short piece of it is over before it could be seen
      const doing = latestWork(state);
      return { text: `$(loading~spin) DeepFIM${doing ? ` ${doing}` : ""}`, tooltip: "DeepFIM: starting the language server…" };
    }
    case "stopped":
      return { text: "$(debug-disconnect) DeepFIM", tooltip: "DeepFIM: language server stopped\nClick for details" };
    case "running":
      break;
  }
  if (!state.enabled) {
    return { text: "$(circle-slash) DeepFIM off", tooltip: "DeepFIM: completions are off (DeepFIM: Toggle completions)" };
  }
  const tooltip = [`DeepFIM: ${state.mode} mode`];
  const progress = latestWork(state);
  if (progress !== undefined) {
    tooltip.push(progress);
  }
  if (state.busy !== undefined) {
    tooltip.push(state.busy.expert ? "an expert request is running (this takes seconds)" : "waiting for a suggestion");
  }
  if (state.lastLatencyMs !== undefined) {
    tooltip.push(`last completion: ${Math.round(state.lastLatencyMs)} ms`);
  }
  const errors = [state.error, state.serverError].filter((e): e is string => e !== undefined);
  for (const error of new Set(errors)) {
    tooltip.push(`last error: ${error}`);
  }
  tooltip.push("Click for status");
  const text = (label: string) => ({ text: label, tooltip: tooltip.join("\n") });
  if (progress !== undefined) {
    return text(`$(loading~spin) DeepFIM ${progress}`);
  }
  if (state.busy?.expert === true) {
    return text("$(loading~spin) DeepFIM expert request");
  }
  if (state.busy?.slow === true) {
    return text(`$(loading~spin) DeepFIM ${state.mode} waiting`);
  }
  const warn = errors.length === 0 ? "" : " $(warning)";
  return text(`$(sparkle) DeepFIM ${state.mode}${latency}${warn}`);
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
  if (status.cursor?.reported) {
    lines.push(`cursor rests: ${status.cursor.reported} reported, prompts prepared at ${status.cursor.prefetched ?? 0}`);
  }
  if (status.last_error) {
    lines.push(`last error: ${status.last_error}`);
  }
  return lines;
}
