/**
 * Tells the server where the cursor comes to rest (`deepfim/cursor`, docs/protocol.md): while the
 * user pauses there, the server prefills the prompt of a completion at that place, so the first
 * key after opening a file or moving somewhere is answered from its prefix cache.
 */

export interface CursorPosition {
  uri: string;
  line: number;
  character: number; // UTF-16 code units, as VS Code and the server's position encoding count them
}

export const REST_MS = 150; // the cursor has stopped moving: arrow keys repeat faster than this

export class CursorReporter {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private last: string | undefined;

  constructor(
    private readonly send: (params: { textDocument: { uri: string }; position: { line: number; character: number } }) => void,
    private readonly restMs: number = REST_MS,
  ) {}

  /** The selection changed; `empty`: it is a cursor, not a range (a range is never reported). */
  moved(position: CursorPosition, empty: boolean): void {
    this.cancel();
    if (!empty) {
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const key = `${position.uri}:${position.line}:${position.character}`;
      if (key === this.last) {
        return; // reported already: the server holds that prompt
      }
      this.last = key;
      this.send({ textDocument: { uri: position.uri }, position: { line: position.line, character: position.character } });
    }, this.restMs);
  }

  /** An edit: the position reported last no longer names the same text. */
  edited(): void {
    this.last = undefined;
  }

  cancel(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}
