--- What every configuration key may hold: types, ranges and choices, for the plugin's own keys
--- and for the server settings (`settings = {...}`, mirroring lsp_server/editor_settings.py).
---
--- `check(cfg, defaults)` never fails: an invalid client value is replaced by its default, an
--- invalid server setting is dropped (the server then uses its own default), and each problem is
--- one message naming the key, the expected value and what was given. Unknown keys are named
--- with the nearest known key; unknown server settings are passed on (a newer server may know
--- them) and the server reports them too.

local M = {}

---@alias deepfim.Check fun(value: any): string|nil  nil when valid, else what was expected

local function describe(value)
  return value == vim.NIL and "null" or vim.inspect(value)
end

local function boolean(value)
  return type(value) ~= "boolean" and "true or false" or nil
end

local function integer(low, high)
  return function(value)
    if type(value) ~= "number" or value % 1 ~= 0 or value < low or value > high then
      return ("an integer in [%d, %d]"):format(low, high)
    end
  end
end

local function one_of(...)
  local choices = { ... }
  return function(value)
    if not vim.tbl_contains(choices, value) then
      return table.concat(vim.tbl_map(vim.inspect, choices), " or ")
    end
  end
end

local function string_list(non_empty)
  return function(value)
    local ok = type(value) == "table" and (not non_empty or #value > 0)
    for key, item in pairs(type(value) == "table" and value or {}) do
      ok = ok and type(key) == "number" and type(item) == "string" and item ~= ""
    end
    if not ok then
      return non_empty and "a non-empty list of strings" or "a list of strings"
    end
  end
end

---A path or token: a non-empty string; `nil`/`vim.NIL` mean "unset" for optional keys.
local function text(value)
  if type(value) ~= "string" or vim.trim(value) == "" then
    return "a non-empty string"
  end
end

local function address(value)
  local host, port = nil, nil
  if type(value) == "string" then
    host, port = value:match("^%[?([^%]]-)%]?:(%d+)$")
  end
  if not host or host == "" or tonumber(port) < 1 or tonumber(port) > 65535 then
    return 'a "host:port" string, e.g. "gpu-box.lan:7431"'
  end
end

---The server's device spellings (deepfim/devices.py): "cpu", "cuda" or "cuda:N".
local function device(value)
  if type(value) ~= "string" or not (value == "cpu" or value == "cuda" or value:match("^cuda:%d+$")) then
    return '"cpu", "cuda" or "cuda:N"'
  end
end

local function optional(check)
  return function(value)
    if value ~= vim.NIL then
      return check(value)
    end
  end
end

local function log_level(value)
  local levels = { debug = true, info = true, warning = true, error = true, critical = true }
  if type(value) ~= "string" or not levels[value:lower()] then
    return '"debug", "info", "warning", "error" or "critical"'
  end
end

---The confidence gate (lsp_server/editor_settings.py GATE_RANGE): a mean log-probability per
---token in [-20, 0], or false for no gate.
local function gate(value)
  if value ~= false and (type(value) ~= "number" or value < -20 or value > 0) then
    return "a number in [-20, 0], or false"
  end
end

local function keys_or_false(value)
  if value ~= false and (type(value) ~= "string" or value == "") then
    return 'a key such as "<C-l>", or false'
  end
end

---Server settings (docs/protocol.md "Settings"); tests/editor_clients compares these keys and
---ranges with lsp_server/editor_settings.py, so the two cannot drift apart.
M.server = {
  enabled = boolean,
  mode = one_of("instant", "expert"),
  checkpoint = optional(text),
  device = device,
  expertCheckpoint = optional(text),
  server = optional(address),
  token = optional(text),
  tlsCa = optional(text),
  contextBudget = integer(256, 1048576),
  repositoryBudget = optional(integer(0, 1048576)),
  confidenceGate = optional(gate),
  maxTokens = integer(1, 2048),
  debounceMs = integer(0, 2000),
  showByMs = integer(0, 10000),
  logFile = optional(text),
  logLevel = optional(log_level),
}

M.keymap_names = { "accept", "accept_word", "accept_line", "next", "prev", "dismiss", "trigger" }

---The plugin's own keys. `keymaps` and `settings` are checked key by key below.
M.client = {
  enabled = boolean,
  cmd = string_list(true),
  root_markers = string_list(false),
  filetypes = string_list(false), -- nil (every filetype) is the default and always valid
  disabled_filetypes = string_list(false),
  auto_trigger = boolean,
  debounce_ms = integer(0, 2000),
  tab_accept = boolean,
  echo_progress = boolean,
  keymaps = function(value)
    if type(value) ~= "table" and value ~= "alt" and value ~= "ctrl" then
      return '"alt", "ctrl" or a table of keys'
    end
  end,
  settings = function(value)
    if type(value) ~= "table" then
      return "a table of server settings"
    end
  end,
}

---Edit distance, for "did you mean".
local function distance(a, b)
  local row = {}
  for j = 0, #b do
    row[j] = j
  end
  for i = 1, #a do
    local diagonal, left = row[0], i
    row[0] = i
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local value = math.min(row[j] + 1, left + 1, diagonal + cost)
      diagonal, row[j], left = row[j], value, value
    end
  end
  return row[#b]
end

---The known key closest to `key` (case, `_` and `-` ignored first), or nil when none is close.
---@param key string
---@param known string[]
---@return string|nil
function M.nearest(key, known)
  local function plain(s)
    return s:lower():gsub("[_%-]", "")
  end
  local best, best_distance = nil, math.huge
  for _, candidate in ipairs(known) do
    local a, b = plain(key), plain(candidate)
    local prefix = #a >= 4 and #b >= 4 and (vim.startswith(a, b) or vim.startswith(b, a))
    local d = a == b and 0 or prefix and 1 or distance(key:lower(), candidate:lower())
    if d < best_distance then
      best, best_distance = candidate, d
    end
  end
  return best_distance <= math.max(2, math.floor(#key / 3)) and best or nil
end

local function unknown(prefix, key, known, what)
  local near = type(key) == "string" and M.nearest(key, known) or nil
  return ("%s%s: %s%s"):format(prefix, tostring(key), what, near and (" (did you mean %s?)"):format(near) or "")
end

---@class deepfim.Problems
---@field errors string[] invalid values, each naming the key, the expected value and the value
---@field unknown string[] keys nobody reads, each with the nearest known key

---Check `cfg` (defaults already merged in) in place.
---@param cfg table
---@param defaults table
---@return deepfim.Problems
function M.check(cfg, defaults)
  local problems = { errors = {}, unknown = {} }
  local function invalid(name, expected, value)
    table.insert(problems.errors, ("%s: expected %s, got %s"):format(name, expected, describe(value)))
  end
  local client_keys = vim.tbl_keys(M.client)
  for key, value in pairs(cfg) do
    local check = M.client[key]
    if not check then
      local hint = M.server[key] and (", ignored: server settings go in settings = { %s = ... }"):format(key)
      table.insert(problems.unknown, hint and (tostring(key) .. ": unknown key" .. hint) or unknown("", key, client_keys, "unknown key, ignored"))
      cfg[key] = nil
    else
      local expected = check(value)
      if expected then
        invalid(key, expected, value)
        cfg[key] = vim.deepcopy(defaults[key])
      end
    end
  end
  if type(cfg.keymaps) == "table" then
    for name, value in pairs(cfg.keymaps) do
      if not vim.tbl_contains(M.keymap_names, name) then
        table.insert(problems.unknown, unknown("keymaps.", name, M.keymap_names, "unknown key, ignored"))
        cfg.keymaps[name] = nil
      else
        local expected = keys_or_false(value)
        if expected then
          invalid("keymaps." .. name, expected, value)
          cfg.keymaps[name] = nil -- the preset's key applies
        end
      end
    end
  end
  local server_keys = vim.tbl_keys(M.server)
  for key, value in pairs(cfg.settings) do
    local check = M.server[key]
    if not check then
      table.insert(problems.unknown, unknown("settings.", key, server_keys, "unknown server setting, passed on as is"))
    else
      local expected = check(value)
      if expected then
        invalid("settings." .. key, expected, value)
        cfg.settings[key] = nil
      end
    end
  end
  table.sort(problems.errors)
  table.sort(problems.unknown)
  return problems
end

return M
