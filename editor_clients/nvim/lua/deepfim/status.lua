--- What DeepFIM is doing, for statuslines and the command line.
---
--- Sources: the server's `$/progress` (model loading, indexing; Neovim's LSP client turns it
--- into `LspProgress` events), the plugin's own requests (an expert request takes 8-13 s on big
--- checkpoints; any request slower than `SLOW_MS` counts as visible work), client start and exit,
--- request errors and the server's `last_error`. Every change of state fires
--- `User DeepFIMStatus` (data: the state) and redraws statuslines; while busy a spinner turns.

local config = require("deepfim.config")
local lsp = require("deepfim.lsp")

local M = {}

local SPINNER = { "⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏" }
local SPIN_MS = 120
--- An automatic request still unanswered after this long shows as "waiting" (a cold prefill).
local SLOW_MS = 400
local BUSY = { starting = true, progress = true, expert = true, waiting = true }

---@type table<integer, {token: any, title: string, percentage: number|nil}[]> client id → work in progress
local progress = {}
---@type table<integer, string> client id → the server's `last_error`
local server_errors = {}
---@type table<integer, boolean> client id → the server said it is still loading its model
local loading = {}
---@type {generation: integer, expert: boolean, started: number, bufnr: integer}|nil
local activity = nil
local exit_error = nil
local last_key = nil
local spin_timer, spin_frame = nil, 1

---@class deepfim.Status
---@field kind "inactive"|"disabled"|"buffer_disabled"|"starting"|"stopped"|"progress"|"expert"|"waiting"|"error"|"ready"
---@field text string what the statusline shows (without the spinner)
---@field busy boolean work is going on (the spinner turns)

local function seconds(started)
  local s = math.floor((vim.uv.hrtime() - started) / 1e9)
  return s >= 1 and (" %ds"):format(s) or ""
end

local function short(message)
  message = tostring(message):gsub("%s+", " ")
  return #message > 48 and message:sub(1, 47) .. "…" or message
end

local function make(kind, text)
  return { kind = kind, text = text, busy = BUSY[kind] == true }
end

---The state for buffer `bufnr` (default: the current one).
---@param bufnr? integer
---@return deepfim.Status
function M.get(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local cfg = config.get()
  local completion = require("deepfim.completion")
  if not cfg.enabled or completion.enabled == false then
    return make("disabled", "DeepFIM off")
  end
  local attached = vim.b[bufnr].deepfim_attached
  if not attached then
    return make("inactive", "")
  end
  if not completion.buffer_enabled(bufnr) then
    return make("buffer_disabled", "DeepFIM off (buffer)")
  end
  local client = lsp.get_client(bufnr)
  if not client then
    -- A buffer joins its client only once the client has initialized.
    if next(lsp.starting) then
      return make("starting", "DeepFIM starting")
    end
    return exit_error and make("error", "DeepFIM error: " .. short(exit_error)) or make("stopped", "DeepFIM stopped")
  end
  -- the latest work begun: indexing that starts while the model loads is shown, not hidden
  local list = progress[client.id] or {}
  local work = list[#list]
  if work then
    local pct = type(work.percentage) == "number" and (" %d%%"):format(work.percentage) or ""
    return make("progress", "DeepFIM " .. work.title .. pct)
  end
  if not client.initialized or loading[client.id] then
    return make("starting", "DeepFIM starting")
  end
  if activity and activity.bufnr == bufnr then
    if activity.expert then
      return make("expert", "DeepFIM expert request" .. seconds(activity.started))
    end
    if (vim.uv.hrtime() - activity.started) / 1e6 >= SLOW_MS then
      return make("waiting", "DeepFIM waiting" .. seconds(activity.started))
    end
  end
  local err = completion.last_error or server_errors[client.id]
  if err then
    return make("error", "DeepFIM error: " .. short(err))
  end
  local mode = cfg.settings.mode == "expert" and ", expert mode" or ""
  return make("ready", "DeepFIM ready" .. mode)
end

---Statusline component, e.g. `vim.o.statusline = "%f %= %{v:lua.require'deepfim'.statusline()}"`.
---@return string
function M.statusline()
  local state = M.get()
  return state.busy and (state.text .. " " .. SPINNER[spin_frame]) or state.text
end

local function echo(text)
  if config.get().echo_progress then
    local room = math.max(vim.v.echospace - 1, 10)
    -- One short line, kept out of :messages: it never triggers a "Press ENTER" prompt.
    vim.api.nvim_echo({ { vim.fn.strcharpart(text, 0, room), "MoreMsg" } }, false, {})
  end
end

local function spin(busy)
  if busy and not spin_timer then
    spin_timer = vim.uv.new_timer()
    spin_timer:start(SPIN_MS, SPIN_MS, vim.schedule_wrap(function()
      spin_frame = spin_frame % #SPINNER + 1
      M.changed()
      vim.cmd.redrawstatus()
    end))
  elseif not busy and spin_timer then
    spin_timer:stop()
    spin_timer:close()
    spin_timer = nil
  end
end

---Recompute the state; announce it when it changed. Safe to call often.
function M.changed()
  local state = M.get()
  spin(state.busy)
  local key = state.kind .. "\0" .. state.text
  if key == last_key then
    return
  end
  last_key = key
  vim.api.nvim_exec_autocmds("User", { pattern = "DeepFIMStatus", modeline = false, data = state })
  vim.cmd.redrawstatus()
end

---`LspProgress` of a DeepFIM client: keep the work that has begun and not ended.
---@param client_id integer
---@param params {token: any, value: {kind: string, title?: string, message?: string, percentage?: number}}
function M.on_progress(client_id, params)
  local value = type(params.value) == "table" and params.value or {}
  local list = progress[client_id] or {}
  progress[client_id] = list
  local index = nil
  for i, work in ipairs(list) do
    if work.token == params.token then
      index = i
    end
  end
  local title = tostring(value.title or (index and list[index].title) or "working"):gsub("^DeepFIM:%s*", "")
  if value.kind == "end" then
    if index then
      table.remove(list, index)
    end
    echo(("DeepFIM: %s%s"):format(title, value.message and (": " .. value.message) or ""))
    M.refresh(client_id)
  else
    local work = index and list[index] or { token = params.token, title = title }
    -- A begin's percentage is only a promise of reports: "0%" forever says nothing.
    if value.kind == "report" then
      work.percentage = value.percentage or work.percentage
    end
    if not index then
      table.insert(list, work)
    end
    local pct = type(work.percentage) == "number" and (" %d%%"):format(work.percentage) or ""
    echo(("DeepFIM: %s%s%s"):format(title, pct, value.message and (" (" .. value.message .. ")") or ""))
  end
  M.changed()
end

---A completion request went out (`expert`: an explicit or expert-mode request).
function M.request_started(generation, bufnr, expert)
  activity = { generation = generation, expert = expert, started = vim.uv.hrtime(), bufnr = bufnr }
  if expert then
    echo("DeepFIM: expert request…")
  end
  M.changed()
  vim.defer_fn(function()
    if activity and activity.generation == generation then
      M.changed()
    end
  end, SLOW_MS)
end

---The request of `generation` was answered (`shown`: items shown), failed or was cancelled.
---@param generation integer
---@param outcome "shown"|"empty"|"error"|"cancelled"
function M.request_finished(generation, outcome)
  if not activity or activity.generation ~= generation then
    return
  end
  if activity.expert and outcome ~= "cancelled" then
    local took = (vim.uv.hrtime() - activity.started) / 1e9
    local what = outcome == "shown" and "suggestion" or outcome == "empty" and "nothing to suggest" or "request failed"
    echo(("DeepFIM: expert %s (%.1f s)"):format(what, took))
  end
  activity = nil
  M.changed()
end

---Ask the server whether it is still loading and what its last error was; a model that
---failed to load is reported through `last_error`, not through the end of its progress.
---@param client_id integer
function M.refresh(client_id)
  lsp.request_to(vim.lsp.get_client_by_id(client_id), "deepfim/status", {}, function(err, result)
    result = not err and type(result) == "table" and result or {}
    loading[client_id] = result.loading == true
    server_errors[client_id] = result.last_error ~= vim.NIL and result.last_error or nil
    M.changed()
  end)
end

---@param client vim.lsp.Client
function M.on_init(client)
  exit_error = nil
  loading[client.id] = true -- until the server says otherwise: its model loads after `initialized`
  vim.schedule(function()
    M.refresh(client.id)
  end)
  M.changed()
end

---@param client_id integer
---@param message string|nil why the server stopped (nil: a normal stop)
function M.on_exit(client_id, message)
  progress[client_id], server_errors[client_id], loading[client_id] = nil, nil, nil
  exit_error = message
  vim.schedule(M.changed)
end

return M
