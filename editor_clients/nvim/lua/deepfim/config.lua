--- DeepFIM configuration: typed defaults, merged with `vim.g.deepfim` and `setup()` options.
---
--- Configuration never requires a `setup()` call: `vim.g.deepfim` is read when the plugin
--- first attaches, and `require("deepfim").setup(opts)` merely layers `opts` on top.

local M = {}

---Settings sent to the language server as `initializationOptions` (docs/protocol.md).
---Keys are the server's own (camelCase); unset keys take the server's defaults.
---@class deepfim.ServerSettings
---@field enabled? boolean answer completion requests at all (default true)
---@field mode? "instant"|"expert" mode for automatic triggers (default "instant")
---@field checkpoint? string checkpoint directory for instant mode (default: embedded model)
---@field expertCheckpoint? string checkpoint for expert mode (default: `checkpoint`)
---@field server? string LAN team server as "host:port" (default: in-process engine)
---@field token? string user token for the LAN server
---@field tlsCa? string CA/certificate file to trust for the LAN server
---@field contextBudget? integer instant-mode context budget in tokens (default 4096)
---@field maxTokens? integer instant-mode max generated tokens (default 48)
---@field debounceMs? integer server-side per-document debounce (default 8)
---@field logFile? string server log file (default: stderr, i.e. the LSP log)

---Insert-mode keys; `false` disables a key. Keys pass through when no suggestion is shown.
---@class deepfim.Keymaps
---@field accept string|false accept the whole suggestion
---@field accept_word string|false accept the next word
---@field accept_line string|false accept the next line
---@field next string|false show the next candidate
---@field prev string|false show the previous candidate
---@field dismiss string|false hide the suggestion (tells the server it was rejected)
---@field trigger string|false request an expert-mode suggestion now

---@class deepfim.Config
---@field enabled boolean attach to buffers and request completions
---@field cmd string[] command that starts the language server
---@field root_markers string[] files that mark the workspace root (first match upwards)
---@field filetypes string[]|nil only these filetypes (nil: all)
---@field disabled_filetypes string[] never these filetypes
---@field auto_trigger boolean request suggestions while typing
---@field debounce_ms integer client-side delay after the last keystroke
---@field keymaps deepfim.Keymaps
---@field settings deepfim.ServerSettings
M.defaults = {
  enabled = true,
  cmd = { "deepfim", "lsp" },
  root_markers = { ".git", "pyproject.toml", "package.json", "Cargo.toml", "go.mod", ".hg" },
  filetypes = nil,
  disabled_filetypes = { "help", "gitcommit", "gitrebase", "netrw", "TelescopePrompt", "oil" },
  auto_trigger = true,
  debounce_ms = 20,
  keymaps = {
    accept = "<M-l>",
    accept_word = "<M-w>",
    accept_line = "<M-j>",
    next = "<M-]>",
    prev = "<M-[>",
    dismiss = "<C-]>",
    trigger = "<M-\\>",
  },
  settings = {},
}

---@type table
local overrides = {}

---@type [string, string, boolean?][] key, Lua type, optional
local schema = {
  { "enabled", "boolean" },
  { "cmd", "table" },
  { "root_markers", "table" },
  { "filetypes", "table", true },
  { "disabled_filetypes", "table" },
  { "auto_trigger", "boolean" },
  { "debounce_ms", "number" },
  { "keymaps", "table" },
  { "settings", "table" },
}

---Check `cfg` in place: an invalid value is replaced by its default.
---@return string[] problems, each naming the bad key and value
local function validate(cfg)
  local problems = {}
  local function reject(key, message)
    table.insert(problems, message)
    cfg[key] = vim.deepcopy(M.defaults[key])
  end
  for _, entry in ipairs(schema) do
    local key, want, optional = entry[1], entry[2], entry[3]
    local value = cfg[key]
    if not (type(value) == want or (optional and value == nil)) then
      reject(key, ("%s: expected %s, got %s"):format(key, want, vim.inspect(value)))
    end
  end
  if #cfg.cmd == 0 or type(cfg.cmd[1]) ~= "string" then
    reject("cmd", "cmd: expected a non-empty list of strings, got " .. vim.inspect(cfg.cmd))
  end
  local mode = cfg.settings.mode
  if mode ~= nil and mode ~= "instant" and mode ~= "expert" then
    table.insert(problems, ('settings.mode: expected "instant" or "expert", got %s'):format(vim.inspect(mode)))
    cfg.settings.mode = nil
  end
  return problems
end

---The effective configuration: defaults < `vim.g.deepfim` < `setup()` options.
---An invalid value is reported once (naming it) and replaced by its default.
---@return deepfim.Config
function M.get()
  local user = vim.tbl_deep_extend("force", {}, type(vim.g.deepfim) == "table" and vim.g.deepfim or {}, overrides)
  local cfg = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), user)
  local problems = validate(cfg)
  local err = #problems > 0 and table.concat(problems, "; ") or nil
  if err and M._last_error ~= err then
    vim.schedule(function()
      vim.notify("[DeepFIM] invalid configuration: " .. err .. " (using the default)", vim.log.levels.WARN)
    end)
  end
  M._last_error = err
  return cfg
end

---Layer `opts` over `vim.g.deepfim` (optional; the plugin works without it).
---@param opts? table
function M.set(opts)
  overrides = vim.tbl_deep_extend("force", overrides, opts or {})
end

---Remember a server setting changed at run time (`:DeepFIM mode`) so a restart keeps it.
---@param key string
---@param value any
function M.set_setting(key, value)
  overrides = vim.tbl_deep_extend("force", overrides, { settings = { [key] = value } })
end

---The validation message for the current configuration, or nil when it is valid.
---@return string|nil
function M.problem()
  M.get()
  return M._last_error
end

return M
