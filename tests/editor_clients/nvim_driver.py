"""A real headless Neovim driven over msgpack-RPC (`nvim --embed --headless`), for plugin tests.

Keys go in with `nvim_input`, exactly as typed keys, so insert-mode autocommands (TextChangedI,
CursorMovedI) fire as they do for a person. Waiting is condition-based: `wait_for` evaluates a Lua
expression inside Neovim with `vim.wait`, which keeps Neovim's event loop (LSP replies, timers)
running, and fails with Neovim's messages and the LSP log tail attached.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack

REPO = Path(__file__).resolve().parents[2]
PLUGIN_DIR = REPO / "editor_clients" / "nvim"
VENV_BIN = Path(sys.executable).parent


def nvim_binary() -> str | None:
    found = VENV_BIN / "nvim"
    return str(found) if found.exists() else shutil.which("nvim")


def deepfim_binary() -> str:
    return str(VENV_BIN / "deepfim")


class NvimError(RuntimeError):
    """An RPC request that Neovim answered with an error."""


class Nvim:
    """Minimal msgpack-RPC client for one embedded Neovim process."""

    def __init__(self, cwd: Path, pre_config_lua: str, env: dict[str, str]):
        binary = nvim_binary()
        assert binary, "nvim not found"
        argv = [
            binary,
            "--embed",
            "--headless",
            "--clean",
            "-n",
            "--cmd",
            f"set runtimepath^={PLUGIN_DIR}",
            "--cmd",
            "lua " + pre_config_lua.replace("\n", " "),
        ]
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._packer = msgpack.Packer()
        self._next_id = 0
        self._lock = threading.Lock()
        self._waiting: dict[int, queue.Queue] = {}
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        stream = self.proc.stdout
        assert stream is not None
        while chunk := stream.read1(65536):
            unpacker.feed(chunk)
            for message in unpacker:
                if message[0] == 1:  # response: [1, id, error, result]
                    box = self._waiting.pop(message[1], None)
                    if box is not None:
                        box.put((message[2], message[3]))
                elif message[0] == 0:  # a request from Neovim; we serve none
                    self._send([1, message[1], "not supported", None])
        for box in list(self._waiting.values()):
            box.put(("nvim exited", None))

    def _send(self, message: list) -> None:
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(self._packer.pack(message))
            self.proc.stdin.flush()

    def request(self, method: str, *args, timeout: float = 30.0):
        with self._lock:
            self._next_id += 1
            msgid = self._next_id
        box: queue.Queue = queue.Queue()
        self._waiting[msgid] = box
        self._send([0, msgid, method, list(args)])
        try:
            error, result = box.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"nvim did not answer {method} within {timeout} s") from None
        if error:
            raise NvimError(f"{method}: {error}")
        return result

    def lua(self, code: str, *args, timeout: float = 30.0):
        return self.request("nvim_exec_lua", code, list(args), timeout=timeout)

    def command(self, cmd: str) -> None:
        self.request("nvim_command", cmd)

    def input(self, keys: str) -> None:
        """Type keys (Neovim key notation) as if from the keyboard."""
        self.request("nvim_input", keys)

    def messages(self) -> str:
        return self.lua('return vim.api.nvim_exec2("messages", { output = true }).output')

    def notifications(self) -> list[str]:
        return self.lua("return _G.test_notifications")

    def wait_for(self, condition: str, timeout: float, what: str):
        """Wait until the Lua expression `condition` is truthy; return its value."""
        deadline = time.monotonic() + timeout
        probe = (
            f"local ok = vim.wait(200, function() return ({condition}) end, 10); return ok and ({condition}) or vim.NIL"
        )
        while time.monotonic() < deadline:
            # Short slices: pending typed keys are processed between them.
            value = self.lua(probe)
            if value is not None and value is not False:
                return value
        raise AssertionError(f"timed out after {timeout} s waiting for {what} ({condition})\n{self.diagnostics()}")

    def diagnostics(self) -> str:
        try:
            log_path = self.lua("return vim.lsp.get_log_path()", timeout=5)
            log_tail = Path(log_path).read_text(errors="replace")[-3000:] if Path(log_path).exists() else ""
            return f"messages:\n{self.messages()}\nnotifications: {self.notifications()}\nLSP log tail:\n{log_tail}"
        except Exception as exc:  # the diagnostics must never hide the real failure
            return f"(no diagnostics: {exc})"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.lua("vim.schedule(function() vim.cmd('qall!') end)", timeout=5)
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait(timeout=10)


# Records vim.notify calls (the plugin's and Neovim's own LSP messages) for assertions.
RECORD_NOTIFY = """
_G.test_notifications = {}
local original = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(_G.test_notifications, tostring(msg))
  return original(msg, level, opts)
end
"""


# Records every DeepFIM state the plugin announces (`User DeepFIMStatus`) as "kind: text".
RECORD_STATUS = """
_G.test_statuses = {}
vim.api.nvim_create_autocmd("User", { pattern = "DeepFIMStatus", callback = function(args)
  table.insert(_G.test_statuses, args.data.kind .. ": " .. args.data.text)
end })
"""


# Records every message Neovim shows (`msg_show`: kind, text, whether it enters :messages),
# for tests of the command-line echo. Only on request: with `ext_messages` Neovim stops putting
# Lua errors into :messages, which the other tests check.
RECORD_MESSAGES = """
_G.test_messages = {}
vim.ui_attach(vim.api.nvim_create_namespace("test_messages"), { ext_messages = true },
  function(event, kind, content, _, history)
    if event == "msg_show" then
      local text = ""
      for _, chunk in ipairs(content) do text = text .. chunk[2] end
      table.insert(_G.test_messages, { kind = kind, text = text, history = history })
    end
  end)
"""


def lua_literal(value) -> str:
    """A Python value (str, bool, int, None, list, dict) as a Lua literal."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Lua literal for {value!r}")


def start_nvim(workdir: Path, config: dict, record_messages: bool = False) -> Nvim:
    """A headless Neovim with the plugin on its runtimepath and `vim.g.deepfim = config`."""
    home = workdir / "home"
    env = dict(os.environ)
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[name] = str(home / name.lower())
    env["DEEPFIM_CACHE_DIR"] = str(workdir / "deepfim-cache")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    recorders = RECORD_NOTIFY + RECORD_STATUS + (RECORD_MESSAGES if record_messages else "")
    # the tests check what the model writes, so the checkpoint's confidence gate is off unless a
    # test sets it (the gate's own tests: tests/lsp_server/test_confidence_gate.py)
    config = {**config, "settings": {"confidenceGate": False, **config.get("settings", {})}}
    pre = recorders + f"vim.g.deepfim = {lua_literal(config)}"
    return Nvim(workdir, pre, env)
