/**
 * Checks made before starting the server, so that a missing Python environment or a bad
 * checkpoint path becomes one clear message instead of a dead client. No `vscode` import.
 */

import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, join, resolve } from "node:path";

import type { ServerSettings } from "./settings";

/** Absolute path of an executable `program`, looked up on `PATH` unless it has a slash. */
export function findProgram(program: string, pathEnv: string | undefined, cwd: string): string | undefined {
  const candidates = program.includes("/") || isAbsolute(program)
    ? [resolve(cwd, program)]
    : (pathEnv ?? "").split(delimiter).filter((dir) => dir !== "").map((dir) => join(dir, program));
  for (const candidate of candidates) {
    try {
      if (statSync(candidate).isFile()) {
        accessSync(candidate, constants.X_OK);
        return candidate;
      }
    } catch {
      // not here, or not executable: keep looking
    }
  }
  return undefined;
}

export interface LaunchCheck {
  /** Set when the server cannot start at all. */
  fatal?: string;
  /** Problems the server survives (it falls back to defaults), shown as warnings. */
  warnings: string[];
}

/** Problems with the server command and the paths in the settings. */
export function checkLaunch(
  command: readonly string[],
  settings: ServerSettings,
  pathEnv: string | undefined,
  cwd: string,
): LaunchCheck {
  const warnings: string[] = [];
  const program = command[0] ?? "";
  const check: LaunchCheck = { warnings };
  if (findProgram(program, pathEnv, cwd) === undefined) {
    check.fatal =
      `DeepFIM cannot start its language server: "${program}" is not an executable program` +
      (program.includes("/") ? "." : " on PATH.") +
      ' Install DeepFIM into a Python environment (scripts/bootstrap.sh) and set "deepfim.serverCommand",' +
      ' e.g. ["/path/to/.venv/bin/deepfim", "lsp"].';
  }
  for (const key of ["checkpoint", "expertCheckpoint", "tlsCa"] as const) {
    const path = settings[key];
    if (path !== null && !exists(resolve(cwd, path))) {
      warnings.push(`deepfim.${key} points to "${path}", which does not exist; the server uses its default instead.`);
    }
  }
  return check;
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
