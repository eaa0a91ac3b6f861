--- `:DeepFIM status | mode instant|expert | toggle [buffer] | restart`.

local config = require("deepfim.config")
local lsp = require("deepfim.lsp")

local M = {}

local function notify(msg, level)
  vim.schedule(function()
    vim.notify("[DeepFIM] " .. msg, level or vim.log.levels.INFO)
  end)
end

local function field(t, ...)
  for _, key in ipairs({ ... }) do
    if type(t) ~= "table" then
      return nil
    end
    t = t[key]
  end
  if t == vim.NIL then
    return nil
  end
  return t
end

---Human-readable lines for a `deepfim/status` result.
---@param s table
---@return string[]
function M.format_status(s)
  local lines = {
    ("%s, mode %s, engine %s"):format(
      field(s, "enabled") == false and "disabled" or "enabled",
      tostring(field(s, "mode") or "?"),
      tostring(field(s, "server") or "?")
    ),
  }
  local models = field(s, "models")
  if models then
    table.insert(lines, ("models: instant %s, expert %s"):format(tostring(field(models, "instant")), tostring(field(models, "expert"))))
  end
  local index = field(s, "index")
  if index then
    table.insert(lines, ("index: %s files, %s definitions%s"):format(
      tostring(field(index, "files") or 0),
      tostring(field(index, "definitions") or 0),
      field(index, "ready") and "" or " (indexing…)"
    ))
  end
  local latency = field(s, "latency_ms")
  if latency and (field(latency, "count") or 0) > 0 then
    table.insert(lines, ("latency: p50 %s ms, p95 %s ms over %s requests"):format(
      tostring(field(latency, "p50")), tostring(field(latency, "p95")), tostring(field(latency, "count"))
    ))
  end
  local acc = field(s, "acceptance")
  if acc then
    local rate = field(acc, "rate")
    table.insert(lines, ("acceptance: %s shown, %s accepted, %s rejected%s"):format(
      tostring(field(acc, "shown") or 0),
      tostring(field(acc, "accepted") or 0),
      tostring(field(acc, "rejected") or 0),
      type(rate) == "number" and (" (%d%%)"):format(math.floor(rate * 100 + 0.5)) or ""
    ))
  end
  local err = field(s, "last_error")
  if err then
    table.insert(lines, "last error: " .. tostring(err))
  end
  return lines
end

local function running_or_report()
  if #lsp.clients() > 0 then
    return true
  end
  local problem = config.problem() or lsp.cmd_problem(config.get().cmd)
  notify(problem or "the language server is not running in this session (open a file to start it)", vim.log.levels.WARN)
  return false
end

---Show `lines` in a floating window at the cursor: no "Press ENTER" prompt, nothing in
---:messages; it closes when the cursor moves (or press `q` inside it after focusing it).
---@param lines string[]
---@return integer winid
function M.show_float(lines)
  local _, winid = vim.lsp.util.open_floating_preview(lines, "", {
    border = "rounded",
    title = " DeepFIM ",
    focus_id = "deepfim_status",
    close_events = { "CursorMoved", "CursorMovedI", "InsertCharPre", "BufLeave" },
  })
  return winid
end

function M.status()
  local bufnr = vim.api.nvim_get_current_buf()
  local here = "this buffer: " .. (require("deepfim.status").get(bufnr).text:gsub("^DeepFIM ?", ""))
  if #lsp.clients() == 0 then
    local problem = config.problem() or lsp.cmd_problem(config.get().cmd)
    M.show_float({ problem or "the language server is not running in this session (open a file to start it)" })
    return
  end
  lsp.request("deepfim/status", {}, function(err, result)
    vim.schedule(function()
      if err then
        M.show_float({ "status failed: " .. tostring(err.message) })
        return
      end
      local lines = M.format_status(result or {})
      table.insert(lines, 1, here)
      local completion = require("deepfim.completion")
      if completion.last_latency_ms then
        table.insert(lines, ("last request here: %d ms"):format(completion.last_latency_ms))
      end
      M.show_float(lines)
    end)
  end, bufnr)
end

---@param mode string
function M.mode(mode)
  if mode ~= "instant" and mode ~= "expert" then
    notify(('mode: expected "instant" or "expert", got %s'):format(vim.inspect(mode)), vim.log.levels.ERROR)
    return
  end
  config.set_setting("mode", mode)
  require("deepfim.status").changed()
  if not running_or_report() then
    return
  end
  lsp.request("deepfim/setMode", { mode = mode }, function(err, result)
    if err then
      notify("setMode failed: " .. tostring(err.message), vim.log.levels.ERROR)
    else
      notify("mode " .. tostring(field(result, "mode") or mode))
    end
  end, vim.api.nvim_get_current_buf())
end

---`:DeepFIM toggle buffer`: completions off or on in this buffer only (`vim.b.deepfim_enabled`).
function M.toggle_buffer()
  local completion = require("deepfim.completion")
  local enabled = not completion.buffer_enabled(0)
  vim.b.deepfim_enabled = enabled
  if not enabled then
    completion.on_leave()
  end
  require("deepfim.status").changed()
  notify(enabled and "completions on in this buffer" or "completions off in this buffer")
end

function M.toggle()
  local completion = require("deepfim.completion")
  local enabled = completion.enabled == false
  completion.enabled = enabled
  config.set_setting("enabled", enabled)
  if not enabled then
    completion.on_leave()
  end
  require("deepfim.status").changed()
  if not running_or_report() then
    return
  end
  lsp.request("deepfim/setEnabled", { enabled = enabled }, function(err, result)
    if err then
      notify("setEnabled failed: " .. tostring(err.message), vim.log.levels.ERROR)
    else
      notify(field(result, "enabled") == false and "completions off" or "completions on")
    end
  end, vim.api.nvim_get_current_buf())
end

function M.restart()
  require("deepfim.completion").on_leave()
  lsp.stop(function()
    local deepfim = require("deepfim")
    deepfim.detach_all()
    lsp._reported_cmd = nil
    for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(bufnr) then
        deepfim.attach(bufnr)
      end
    end
    notify(#lsp.clients() > 0 and "language server restarted" or "language server not started", vim.log.levels.INFO)
  end)
end

local subcommands = {
  status = function()
    M.status()
  end,
  mode = function(args)
    M.mode(args[2])
  end,
  toggle = function(args)
    if args[2] == "buffer" then
      M.toggle_buffer()
    elseif args[2] == nil then
      M.toggle()
    else
      notify(('toggle: expected nothing or "buffer", got %s'):format(vim.inspect(args[2])), vim.log.levels.ERROR)
    end
  end,
  restart = function()
    M.restart()
  end,
}

---@param fargs string[]
function M.run(fargs)
  local fn = subcommands[fargs[1]]
  if not fn then
    notify(("unknown subcommand %s; use status, mode instant|expert, toggle [buffer] or restart"):format(vim.inspect(fargs[1])), vim.log.levels.ERROR)
    return
  end
  fn(fargs)
end

function M.complete(arglead, cmdline)
  local words = vim.split(cmdline, "%s+", { trimempty = true })
  local n = #words + (cmdline:match("%s$") and 1 or 0)
  local values = { mode = { "instant", "expert" }, toggle = { "buffer" } }
  local options = n <= 2 and vim.tbl_keys(subcommands) or (n == 3 and values[words[2]]) or {}
  table.sort(options)
  return vim.tbl_filter(function(o)
    return vim.startswith(o, arglead)
  end, options)
end

return M
