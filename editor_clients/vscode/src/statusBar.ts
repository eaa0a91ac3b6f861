/** The status-bar item: mode, last latency, errors; a click shows the server's status. */

import * as vscode from "vscode";

import { statusBarText, type ClientState } from "./format";

export class StatusBar implements vscode.Disposable {
  readonly state: ClientState = { phase: "starting", mode: "instant", enabled: true };
  private readonly item = vscode.window.createStatusBarItem("deepfim.status", vscode.StatusBarAlignment.Right, 100);

  constructor() {
    this.item.name = "DeepFIM";
    this.item.command = "deepfim.showStatus";
    this.render();
    this.item.show();
  }

  update(change: Partial<ClientState>): void {
    Object.assign(this.state, change);
    this.render();
  }

  private render(): void {
    const { text, tooltip } = statusBarText(this.state);
    this.item.text = text;
    this.item.tooltip = tooltip;
    this.item.backgroundColor =
      this.state.phase === "failed" ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
