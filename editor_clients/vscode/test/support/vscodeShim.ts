/**
 * A stand-in for the `vscode` module, so that the real extension (`activate`, `LanguageClient`
 * from vscode-languageclient, its converters and middleware) runs in plain Node against the real
 * language server. It is NOT VS Code: no editor, no rendering, no keybindings. It implements the
 * API surface the extension and vscode-languageclient touch, records what would be shown
 * (messages, status-bar text, output lines), and hands tests the registered inline-completion
 * provider and commands. Any other `languages.register*` call returns a no-op disposable.
 */

import { EventEmitter as NodeEmitter } from "node:events";
import Module from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

type Listener<T> = (event: T) => unknown;

export class Disposable {
  static from(...items: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => {
      for (const item of items) {
        item.dispose();
      }
    });
  }
  constructor(private readonly callOnDispose: () => unknown) {}
  dispose(): void {
    this.callOnDispose();
  }
}

export class EventEmitter<T> {
  private readonly emitter = new NodeEmitter();
  readonly event = (listener: Listener<T>): Disposable => {
    this.emitter.on("e", listener);
    return new Disposable(() => this.emitter.off("e", listener));
  };
  fire(value: T): void {
    this.emitter.emit("e", value);
  }
  dispose(): void {
    this.emitter.removeAllListeners();
  }
}

export class CancellationError extends Error {
  constructor() {
    super("Canceled");
    this.name = "Canceled";
  }
}

export class CancellationTokenSource {
  private readonly emitter = new EventEmitter<undefined>();
  readonly token = {
    isCancellationRequested: false,
    onCancellationRequested: this.emitter.event,
  };
  cancel(): void {
    this.token.isCancellationRequested = true;
    this.emitter.fire(undefined);
  }
  dispose(): void {
    this.emitter.dispose();
  }
}

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly path: string,
    private readonly text: string,
  ) {}
  static file(path: string): Uri {
    return new Uri("file", path, pathToFileURL(path).href);
  }
  static parse(value: string): Uri {
    const scheme = value.slice(0, value.indexOf(":"));
    return scheme === "file" ? Uri.file(fileURLToPath(value)) : new Uri(scheme, value.slice(scheme.length + 1), value);
  }
  get fsPath(): string {
    return this.path;
  }
  toString(): string {
    return this.text;
  }
  toJSON(): unknown {
    return { scheme: this.scheme, path: this.path, external: this.text };
  }
}

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(a: Position | number, b: Position | number, c?: number, d?: number) {
    if (typeof a === "number" && typeof b === "number") {
      this.start = new Position(a, b);
      this.end = new Position(c ?? a, d ?? b);
    } else {
      this.start = a as Position;
      this.end = b as Position;
    }
  }
  get isEmpty(): boolean {
    return this.start.line === this.end.line && this.start.character === this.end.character;
  }
}

export class SnippetString {
  constructor(readonly value: string) {}
}

export class InlineCompletionItem {
  constructor(
    public insertText: string | SnippetString,
    public range?: Range,
    public command?: { title: string; command: string; arguments?: unknown[] },
  ) {}
  filterText?: string;
}

export class InlineCompletionList {
  constructor(public items: InlineCompletionItem[]) {}
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export class TabInputText {}
export class TabInputTextDiff {}
export class TabInputNotebook {}
export class TabInputCustom {}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}
export enum InlineCompletionTriggerKind {
  Invoke = 0,
  Automatic = 1,
}
export enum ProgressLocation {
  SourceControl = 1,
  Window = 10,
  Notification = 15,
}
export enum LogLevel {
  Off = 0,
  Trace = 1,
  Debug = 2,
  Info = 3,
  Warning = 4,
  Error = 5,
}
export enum EndOfLine {
  LF = 1,
  CRLF = 2,
}

/** What the extension showed; tests assert on it. */
export const recorded = {
  messages: [] as { level: "info" | "warning" | "error"; text: string }[],
  output: [] as string[],
  statusBar: { text: "", tooltip: "" as unknown },
  /** Every text the status-bar item showed, in order (repeats of the same text once). */
  statusBarHistory: [] as string[],
  quickPickAnswer: undefined as string | undefined,
  settings: {} as Record<string, unknown>,
};

/** A read-only text document over a string (what the client needs for didOpen and requests). */
export function textDocument(path: string, languageId: string, text: string): unknown {
  const lines = text.split("\n");
  const offsetAt = (p: Position) =>
    lines.slice(0, p.line).reduce((n, line) => n + line.length + 1, 0) + p.character;
  return {
    uri: Uri.file(path),
    fileName: path,
    languageId,
    version: 1,
    isClosed: false,
    isDirty: false,
    isUntitled: false,
    eol: EndOfLine.LF,
    lineCount: lines.length,
    getText: (range?: Range) => (range ? text.slice(offsetAt(range.start), offsetAt(range.end)) : text),
    lineAt: (line: number) => ({ text: lines[line] ?? "", lineNumber: line }),
    offsetAt,
  };
}

const inlineProviders: { selector: unknown; provider: unknown }[] = [];
const commandHandlers = new Map<string, (...args: unknown[]) => unknown>();

export function inlineCompletionProvider(): unknown {
  return inlineProviders.at(-1)?.provider;
}

function logChannel(name: string): unknown {
  const write = (level: string) => (message: string, ...rest: unknown[]) => {
    recorded.output.push(`[${level}] ${[message, ...rest.map(String)].join(" ")}`);
  };
  return {
    name,
    logLevel: LogLevel.Info,
    onDidChangeLogLevel: new EventEmitter<LogLevel>().event,
    trace: write("trace"),
    debug: write("debug"),
    info: write("info"),
    warn: write("warn"),
    error: (message: unknown) => { write("error")(message instanceof Error ? message.message : String(message)); },
    append: (text: string) => recorded.output.push(text),
    appendLine: (text: string) => recorded.output.push(text),
    replace: () => undefined,
    clear: () => undefined,
    show: () => undefined,
    hide: () => undefined,
    dispose: () => undefined,
  };
}

const noop = () => new Disposable(() => undefined);
const emitters = new Map<string, EventEmitter<unknown>>();
/** The emitter behind `workspace.<name>` / `window.<name>` events, for tests to fire. */
export function emitter(name: string): EventEmitter<unknown> {
  let found = emitters.get(name);
  if (found === undefined) {
    found = new EventEmitter<unknown>();
    emitters.set(name, found);
  }
  return found;
}

export const workspaceFolders: { uri: Uri; name: string; index: number }[] = [];
export const textDocuments: unknown[] = [];

export const workspace = {
  get workspaceFolders() {
    return workspaceFolders.length > 0 ? workspaceFolders : undefined;
  },
  textDocuments,
  notebookDocuments: [],
  getConfiguration: (section?: string) => ({
    get: (key: string, fallback?: unknown) => {
      const full = section ? `${section}.${key}` : key;
      return full in recorded.settings ? recorded.settings[full] : fallback;
    },
    has: (key: string) => `${section ?? ""}.${key}` in recorded.settings,
    inspect: () => undefined,
    update: () => Promise.resolve(),
  }),
  onDidChangeConfiguration: emitter("onDidChangeConfiguration").event,
  onDidOpenTextDocument: emitter("onDidOpenTextDocument").event,
  onDidCloseTextDocument: emitter("onDidCloseTextDocument").event,
  onDidChangeTextDocument: emitter("onDidChangeTextDocument").event,
  onDidSaveTextDocument: emitter("onDidSaveTextDocument").event,
  onWillSaveTextDocument: emitter("onWillSaveTextDocument").event,
  onDidChangeWorkspaceFolders: emitter("onDidChangeWorkspaceFolders").event,
  createFileSystemWatcher: () => ({
    onDidCreate: noop,
    onDidChange: noop,
    onDidDelete: noop,
    dispose: () => undefined,
  }),
  applyEdit: () => Promise.resolve(true),
};

function record(level: "info" | "warning" | "error") {
  return (text: string) => {
    recorded.messages.push({ level, text });
    return Promise.resolve(undefined);
  };
}

export const window = {
  activeTextEditor: undefined,
  visibleTextEditors: [],
  tabGroups: { all: [], onDidChangeTabs: noop, onDidChangeTabGroups: noop },
  onDidChangeActiveTextEditor: emitter("onDidChangeActiveTextEditor").event,
  onDidChangeVisibleTextEditors: emitter("onDidChangeVisibleTextEditors").event,
  onDidChangeTextEditorSelection: emitter("onDidChangeTextEditorSelection").event,
  createOutputChannel: (name: string) => logChannel(name),
  createStatusBarItem: () => {
    const item = {
      name: "",
      command: "",
      backgroundColor: undefined as unknown,
      show: () => undefined,
      hide: () => undefined,
      dispose: () => undefined,
    };
    return Object.defineProperties(item, {
      text: {
        get: () => recorded.statusBar.text,
        set: (v: string) => {
          if (recorded.statusBarHistory.at(-1) !== v) {
            recorded.statusBarHistory.push(v);
          }
          recorded.statusBar.text = v;
        },
      },
      tooltip: { get: () => recorded.statusBar.tooltip, set: (v: unknown) => (recorded.statusBar.tooltip = v) },
    });
  },
  showInformationMessage: record("info"),
  showWarningMessage: record("warning"),
  showErrorMessage: record("error"),
  showQuickPick: (items: { label: string }[]) =>
    Promise.resolve(items.find((item) => item.label === recorded.quickPickAnswer)),
  withProgress: (_options: unknown, task: (progress: unknown, token: unknown) => unknown) =>
    task({ report: () => undefined }, new CancellationTokenSource().token),
};

interface Filter {
  scheme?: string;
  language?: string;
}

const languageFunctions: Record<string, unknown> = {
  match: (selector: Filter | Filter[], document: { uri: Uri; languageId: string }) => {
    const filters = Array.isArray(selector) ? selector : [selector];
    const hit = filters.some(
      (f) =>
        (f.scheme === undefined || f.scheme === document.uri.scheme) &&
        (f.language === undefined || f.language === document.languageId),
    );
    return hit ? 10 : 0;
  },
  registerInlineCompletionItemProvider: (selector: unknown, provider: unknown) => {
    inlineProviders.push({ selector, provider });
    return noop();
  },
  createDiagnosticCollection: () => ({ set: noop, delete: noop, clear: noop, forEach: noop, dispose: noop }),
};

export const languages = new Proxy(languageFunctions, {
  get: (target, name: string): unknown => target[name] ?? (name.startsWith("register") ? noop : undefined),
});

export const commands = {
  registerCommand: (id: string, handler: (...args: unknown[]) => unknown) => {
    if (commandHandlers.has(id)) {
      throw new Error(`command '${id}' already exists`); // as VS Code does
    }
    commandHandlers.set(id, handler);
    return new Disposable(() => commandHandlers.delete(id));
  },
  executeCommand: (id: string, ...args: unknown[]): Promise<unknown> => {
    const handler = commandHandlers.get(id);
    if (!handler) {
      return Promise.reject(new Error(`command ${id} not registered`));
    }
    return Promise.resolve(handler(...args));
  },
};

export const env = {
  appName: "vscode-shim (Node test harness)",
  language: "en",
  machineId: "test",
  openExternal: () => Promise.resolve(true),
};

export const version = "1.91.0";

/** Make `require("vscode")` return this module (call before loading the extension). */
export function install(): void {
  const mod = Module as unknown as { _resolveFilename: (request: string, ...rest: unknown[]) => string };
  const original = mod._resolveFilename;
  mod._resolveFilename = function (request: string, ...rest: unknown[]) {
    return request === "vscode" ? __filename : original.call(this, request, ...rest);
  };
}

/** Classes vscode-languageclient extends or constructs for features this extension does not use. */
class Placeholder {
  readonly args: unknown[];
  constructor(...args: unknown[]) {
    this.args = args;
  }
}
export class CallHierarchyItem extends Placeholder {}
export class CodeLens extends Placeholder {}
export class CompletionItem extends Placeholder {}
export class DocumentLink extends Placeholder {}
export class InlayHint extends Placeholder {}
export class SymbolInformation extends Placeholder {}
export class TypeHierarchyItem extends Placeholder {}
export class CodeAction extends Placeholder {}
export class Diagnostic extends Placeholder {}
export class Location extends Placeholder {}
export class TextEdit extends Placeholder {}
export class WorkspaceEdit extends Placeholder {}
export class MarkdownString extends Placeholder {}
export class CompletionList extends Placeholder {}
export class Hover extends Placeholder {}
export class CodeActionKind {
  static readonly Empty = new CodeActionKind("");
  static readonly QuickFix = new CodeActionKind("quickfix");
  static readonly Refactor = new CodeActionKind("refactor");
  static readonly RefactorExtract = new CodeActionKind("refactor.extract");
  static readonly RefactorInline = new CodeActionKind("refactor.inline");
  static readonly RefactorRewrite = new CodeActionKind("refactor.rewrite");
  static readonly Source = new CodeActionKind("source");
  static readonly SourceOrganizeImports = new CodeActionKind("source.organizeImports");
  constructor(readonly value: string) {}
  append(part: string): CodeActionKind {
    return new CodeActionKind(this.value === "" ? part : `${this.value}.${part}`);
  }
}

function enumOf(...names: string[]): Record<string, number> {
  return Object.fromEntries(names.map((name, index) => [name, index]));
}
export const CodeActionTriggerKind = enumOf("Invoke", "Automatic");
export const CompletionItemKind = enumOf("Text");
export const CompletionItemTag = enumOf("Deprecated");
export const CompletionTriggerKind = enumOf("Invoke", "TriggerCharacter", "TriggerForIncompleteCompletions");
export const DiagnosticSeverity = enumOf("Error", "Warning", "Information", "Hint");
export const DiagnosticTag = enumOf("Unnecessary", "Deprecated");
export const DocumentHighlightKind = enumOf("Text", "Read", "Write");
export const FileType = enumOf("Unknown", "File", "Directory");
export const FoldingRangeKind = enumOf("Comment", "Imports", "Region");
export const NotebookCellKind = enumOf("Markup", "Code");
export const SignatureHelpTriggerKind = enumOf("Invoke", "TriggerCharacter", "ContentChange");
export const SymbolKind = enumOf("File", "Property", "TypeParameter");
export const SymbolTag = enumOf("Deprecated");
export const TextDocumentSaveReason = enumOf("Manual", "AfterDelay", "FocusOut");
