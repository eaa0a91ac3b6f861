/**
 * The `deepfim.*` settings: read, checked and turned into the server's settings object
 * (docs/protocol.md) plus the command that starts the server. No `vscode` import, so the
 * same code runs in the extension and in plain Node tests.
 */

export type Mode = "instant" | "expert";

/** The server's `logLevel` values; null leaves the level to the server's command line. */
export const LOG_LEVELS = ["debug", "info", "warning", "error", "critical"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Settings sent as `initializationOptions` and `workspace/didChangeConfiguration`. */
export interface ServerSettings {
  enabled: boolean;
  mode: Mode;
  checkpoint: string | null;
  device: string;
  expertCheckpoint: string | null;
  server: string | null;
  token: string | null;
  tlsCa: string | null;
  contextBudget: number;
  repositoryBudget: number | null;
  confidenceGate: number | false | null;
  maxTokens: number;
  debounceMs: number;
  showByMs: number;
  logFile: string | null;
  logLevel: LogLevel | null;
}

export const DEFAULT_SETTINGS: Readonly<ServerSettings> = {
  enabled: true,
  mode: "instant",
  checkpoint: null,
  device: "cpu",
  expertCheckpoint: null,
  server: null,
  token: null,
  tlsCa: null,
  contextBudget: 4096,
  repositoryBudget: null,
  confidenceGate: null,
  maxTokens: 48,
  debounceMs: 8,
  showByMs: 150,
  logFile: null,
  logLevel: null,
};

export const DEFAULT_COMMAND: readonly string[] = ["deepfim", "lsp"];

/** What `vscode.WorkspaceConfiguration` offers for the `deepfim` section. */
export interface ConfigSource {
  get(key: string): unknown;
}

export interface ClientSettings {
  /** Program and arguments that start the language server. */
  command: string[];
  server: ServerSettings;
  /** One message per invalid value, naming the setting; the default is used instead. */
  problems: string[];
}

/** The server's device spellings (deepfim/devices.py). */
const DEVICE = /^(cpu|cuda(:\d+)?)$/;

const PATH_KEYS = ["checkpoint", "expertCheckpoint", "server", "token", "tlsCa", "logFile"] as const;
/** Integer settings: [key, minimum, maximum] (the server's own bounds, lsp_server/editor_settings.py). */
const INT_KEYS = [
  ["contextBudget", 256, Infinity],
  ["maxTokens", 1, Infinity],
  ["debounceMs", 0, Infinity],
  ["showByMs", 0, 10000],
] as const;

function describe(value: unknown): string {
  return value === undefined ? "undefined" : JSON.stringify(value);
}

/** Read `deepfim.*` settings; invalid values are reported and replaced by defaults. */
export function readSettings(config: ConfigSource): ClientSettings {
  const problems: string[] = [];
  const server: ServerSettings = { ...DEFAULT_SETTINGS };

  const enabled = config.get("enabled");
  if (typeof enabled === "boolean") {
    server.enabled = enabled;
  } else if (enabled !== undefined && enabled !== null) {
    problems.push(`deepfim.enabled must be true or false, got ${describe(enabled)}`);
  }

  const mode = config.get("mode");
  if (mode === "instant" || mode === "expert") {
    server.mode = mode;
  } else if (mode !== undefined && mode !== null) {
    problems.push(`deepfim.mode must be "instant" or "expert", got ${describe(mode)}`);
  }

  for (const key of PATH_KEYS) {
    const value = config.get(key);
    if (typeof value === "string") {
      server[key] = value.trim() === "" ? null : value.trim();
    } else if (value !== undefined && value !== null) {
      problems.push(`deepfim.${key} must be a string, got ${describe(value)}`);
    }
  }
  if (server.server !== null && !/^[^:\s]+:\d+$/.test(server.server)) {
    problems.push(`deepfim.server must be host:port, got ${describe(server.server)}`);
    server.server = null;
  }

  const device = config.get("device");
  if (typeof device === "string" && DEVICE.test(device.trim())) {
    server.device = device.trim();
  } else if (device !== undefined && device !== null) {
    problems.push(`deepfim.device must be cpu, cuda or cuda:N, got ${describe(device)}`);
  }

  const logLevel = config.get("logLevel");
  const level = typeof logLevel === "string" ? logLevel.toLowerCase() : undefined;
  if (LOG_LEVELS.some((known) => known === level)) {
    server.logLevel = level as LogLevel;
  } else if (logLevel !== undefined && logLevel !== null) {
    problems.push(`deepfim.logLevel must be one of ${LOG_LEVELS.join(", ")}, got ${describe(logLevel)}`);
  }

  const repository = config.get("repositoryBudget");
  if (typeof repository === "number" && Number.isInteger(repository) && repository >= 0) {
    server.repositoryBudget = repository;
  } else if (repository !== undefined && repository !== null) {
    problems.push(`deepfim.repositoryBudget must be an integer >= 0 or null, got ${describe(repository)}`);
  }

  const gate = config.get("confidenceGate");
  if (gate === false || (typeof gate === "number" && gate >= -20 && gate <= 0)) {
    server.confidenceGate = gate;
  } else if (gate !== undefined && gate !== null) {
    problems.push(`deepfim.confidenceGate must be a number in [-20, 0], false or null, got ${describe(gate)}`);
  }

  for (const [key, minimum, maximum] of INT_KEYS) {
    const value = config.get(key);
    if (typeof value === "number" && Number.isInteger(value) && value >= minimum && value <= maximum) {
      server[key] = value;
    } else if (value !== undefined && value !== null) {
      const range = maximum === Infinity ? `>= ${minimum}` : `from ${minimum} to ${maximum}`;
      problems.push(`deepfim.${key} must be an integer ${range}, got ${describe(value)}`);
    }
  }

  let command = [...DEFAULT_COMMAND];
  const raw = config.get("serverCommand");
  if (Array.isArray(raw) && raw.length > 0 && raw.every((part) => typeof part === "string" && part !== "")) {
    command = raw as string[];
  } else if (typeof raw === "string" && raw.trim() !== "") {
    command = raw.trim().split(/\s+/);
  } else if (raw !== undefined && raw !== null) {
    problems.push(`deepfim.serverCommand must be a list like ["deepfim", "lsp"], got ${describe(raw)}`);
  }
  return { command, server, problems };
}
