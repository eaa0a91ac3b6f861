// Imported first by tests that load the extension: `require("vscode")` then gets the stand-in.
import { install } from "./vscodeShim";

install();
