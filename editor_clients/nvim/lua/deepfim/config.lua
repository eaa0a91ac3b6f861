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
---@field showByMs? integer show a multi-line suggestion's complete lines after this long, the rest on accept (default 150; 0: wait for all)
---@field logFile? string server log file (default: stderr, i.e. the LSP log)
---@field logLevel? string "debug" logs one line per completion request (default: the server's)

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
---@field tab_accept boolean <Tab> accepts a shown suggestion (and is a normal <Tab> otherwise)
---@field echo_progress boolean echo server progress and expert requests in the command line
---@field keymaps deepfim.Keymaps|"alt"|"ctrl" a preset name or keys over the "alt" preset
---@field settings deepfim.ServerSettings
M.defaults = {
  enabled = true,
  cmd = { "deepfim", "lsp" },
  root_markers = { ".git", "pyproject.toml", "package.json", "Cargo.toml", "go.mod", ".hg" },
  filetypes = nil,
  disabled_filetypes = { "help", "gitcommit", "gitrebase", "netrw", "TelescopePrompt", "oil" },
  auto_trigger = true,
  debounce_ms = 20,
  tab_accept = false,
  echo_progress = true,
  keymaps = "alt",
  settings = {},
}

---Key presets. "ctrl" needs no Meta key (macOS terminals send Alt only with Option-as-Meta);
---each key acts only while a suggestion is shown and otherwise does what it did before.
M.keymap_presets = {
  alt = {
    accept = "<M-l>",
    accept_word = "<M-w>",
    accept_line = "<M-j>",
    next = "<M-]>",
    prev = "<M-[>",
    dismiss = "<C-]>",
    trigger = "<M-\\>",
  },
  ctrl = {
    accept = "<C-l>",
    accept_word = "<C-Right>",
    accept_line = "<C-Down>",
    next = "<C-n>",
    prev = "<C-p>",
    dismiss = "<C-]>",
    trigger = "<C-Space>",
  },
}

---@type table
local overrides = {}

local schema = require("deepfim.schema")

---`over` merged into a copy of `base`: tables with keys recursively, lists replaced whole
---(Neovim 0.10's tbl_deep_extend would merge `cmd = { "x" }` into the default `cmd` by index).
local function merge(base, over)
  local base_is_list = type(base) == "table" and next(base) ~= nil and vim.islist(base)
  if type(base) ~= "table" or type(over) ~= "table" or base_is_list or (next(over) ~= nil and vim.islist(over)) then
    return vim.deepcopy(over)
  end
  local out = vim.deepcopy(base)
  for key, value in pairs(over) do
    out[key] = merge(out[key], value)
  end
  return out
end

---@param cfg table checked configuration
local function expand_keymaps(cfg)
  if type(cfg.keymaps) == "string" then
    cfg.keymaps = vim.deepcopy(M.keymap_presets[cfg.keymaps])
  else
    cfg.keymaps = vim.tbl_extend("force", vim.deepcopy(M.keymap_presets.alt), cfg.keymaps)
  end
end

local function announce(problems)
  local text = table.concat(problems.errors, "; ")
  local unknown = table.concat(problems.unknown, "; ")
  local signature = text .. "|" .. unknown
  if signature == M._announced then
    return
  end
  M._announced = signature
  vim.schedule(function()
    if text ~= "" then
      vim.notify("[DeepFIM] invalid configuration: " .. text .. " (using the default)", vim.log.levels.WARN)
    end
    if unknown ~= "" then
      vim.notify("[DeepFIM] configuration: " .. unknown, vim.log.levels.WARN)
    end
  end)
end

---The effective configuration: defaults < `vim.g.deepfim` < `setup()` options.
---Invalid values and unknown keys are reported once (naming them); an invalid value is
---replaced by its default.
---@return deepfim.Config
function M.get()
  local user = type(vim.g.deepfim) == "table" and vim.g.deepfim or {}
  local cfg = merge(merge(M.defaults, user), overrides)
  if cfg.filetypes == vim.NIL then
    cfg.filetypes = nil
  end
  local problems = schema.check(cfg, M.defaults)
  expand_keymaps(cfg)
  M._problems = problems
  M._last_error = #problems.errors > 0 and table.concat(problems.errors, "; ") or nil
  announce(problems)
  return cfg
end

---Layer `opts` over `vim.g.deepfim` (optional; the plugin works without it).
---@param opts? table
function M.set(opts)
  overrides = merge(overrides, opts or {})
end

---Remember a server setting changed at run time (`:DeepFIM mode`) so a restart keeps it.
---@param key string
---@param value any
function M.set_setting(key, value)
  overrides = merge(overrides, { settings = { [key] = value } })
end

---The validation message for the current configuration, or nil when it is valid.
---@return string|nil
function M.problem()
  M.get()
  return M._last_error
end

---Every problem of the current configuration (for `:checkhealth deepfim`).
---@return deepfim.Problems
function M.problems()
  M.get()
  return M._problems
end

return M
