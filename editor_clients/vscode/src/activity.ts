/**
 * What the server and the client are busy with, for the status bar: `$/progress` work (model
 * loading, indexing) and the inline-completion requests in flight (expert ones take seconds; an
 * automatic one slower than `SLOW_MS` shows as waiting). No `vscode` import.
 */

import { SLOW_MS, type Busy, type Work } from "./format";

/** The `value` of a `$/progress` notification (WorkDoneProgressBegin | Report | End). */
export interface ProgressValue {
  kind: "begin" | "report" | "end";
  title?: string;
  message?: string;
  percentage?: number;
}

export interface ActivityState {
  work: Work[];
  busy: Busy | undefined;
}

interface Request {
  expert: boolean;
  slow: boolean;
  timer: ReturnType<typeof setTimeout>;
}

export class Activity {
  private readonly work = new Map<string | number, Work>();
  private readonly requests = new Map<number, Request>();
  private nextId = 0;

  constructor(private readonly onChange: (state: ActivityState) => void) {}

  get state(): ActivityState {
    const requests = [...this.requests.values()];
    const busy =
      requests.length === 0
        ? undefined
        : { expert: requests.some((r) => r.expert), slow: requests.some((r) => r.slow) };
    return { work: [...this.work.values()], busy };
  }

  /** One `$/progress` notification; true when it ended a piece of work. */
  progress(token: string | number, value: ProgressValue): boolean {
    if (value.kind === "end") {
      this.work.delete(token);
    } else if (value.kind === "begin") {
      this.work.set(token, { title: (value.title ?? "working").replace(/^DeepFIM:\s*/, "") });
    } else {
      const work = this.work.get(token);
      if (work !== undefined && value.percentage !== undefined) {
        work.percentage = value.percentage;
      }
    }
    this.onChange(this.state);
    return value.kind === "end";
  }

  /** A request went out; call the returned function when it is answered, fails or is cancelled. */
  requestStarted(expert: boolean): () => void {
    const id = this.nextId++;
    const timer = setTimeout(() => {
      const request = this.requests.get(id);
      if (request !== undefined) {
        request.slow = true;
        this.onChange(this.state);
      }
    }, SLOW_MS);
    this.requests.set(id, { expert, slow: false, timer });
    this.onChange(this.state);
    return () => {
      clearTimeout(timer);
      if (this.requests.delete(id)) {
        this.onChange(this.state);
      }
    };
  }

  /** The server went away: nothing it announced is going on any more. */
  clear(): void {
    for (const request of this.requests.values()) {
      clearTimeout(request.timer);
    }
    this.requests.clear();
    this.work.clear();
    this.onChange(this.state);
  }
}
