--- Starting, reaching and stopping the DeepFIM language server through Neovim's LSP client.
---
--- One client per workspace root (`vim.lsp.start` re-uses it across buffers). Server settings
--- go out as `init_options` and as `settings.deepfim` (for `workspace/configuration`).
--- Failures to start become one readable message instead of a Lua error.

local config = require("deepfim.config")

local M = {}

M.name = "deepfim"

local has_011 = vim.fn.has("nvim-0.11") == 1

---Clients that finished starting, by client id: for the exit message.
---@type table<integer, boolean>
local initialized = {}

---Clients started and not yet initialized (Neovim lists a client only once it is), by id.
---@type table<integer, boolean>
M.starting = {}

---Scheduled, so that a message raised inside an autocommand (FileType, BufEnter) never turns
---into an error of the command that triggered it.
local function notify(msg, level)
  vim.schedule(function()
    vim.notify("[DeepFIM] " .. msg, level or vim.log.levels.INFO)
  end)
end

---Client methods are called with `:` from 0.11 on and with `.` before.
---@param client vim.lsp.Client
local function call(client, method, ...)
  if has_011 then
    return client[method](client, ...)
  end
  return client[method](...)
end

---@param bufnr? integer
---@return vim.lsp.Client|nil
function M.get_client(bufnr)
  local clients = vim.lsp.get_clients({ name = M.name, bufnr = bufnr })
  return clients[1]
end

---@return vim.lsp.Client[]
function M.clients()
  return vim.lsp.get_clients({ name = M.name })
end

---Why `cmd` cannot run, or nil when its program is executable.
---@param cmd string[]
---@return string|nil
function M.cmd_problem(cmd)
  if vim.fn.executable(cmd[1]) == 1 then
    return nil
  end
  return ("cannot start the language server: `%s` is not an executable program. "
    .. "Install DeepFIM into a Python environment (scripts/bootstrap.sh) and point the plugin at it, "
    .. 'e.g. vim.g.deepfim = { cmd = { "/path/to/.venv/bin/deepfim", "lsp" } }; see :checkhealth deepfim'):format(cmd[1])
end

---Settings as a JSON object even when empty (an empty Lua table would encode as `[]`).
---@param settings table
---@return table
local function as_object(settings)
  return next(settings) == nil and vim.empty_dict() or settings
end

local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.textDocument = caps.textDocument or {}
  caps.textDocument.inlineCompletion = { dynamicRegistration = false }
  caps.general = caps.general or {}
  caps.general.positionEncodings = { "utf-8", "utf-16" }
  return caps
end

local function on_exit(code, signal, client_id)
  local started = initialized[client_id]
  initialized[client_id], M.starting[client_id] = nil, nil
  local status = require("deepfim.status")
  if code == 0 or signal == 15 or M._stopping then
    status.on_exit(client_id, nil)
    return
  end
  local when = started and "stopped unexpectedly" or "failed to start"
  status.on_exit(client_id, ("the language server %s (exit code %d)"):format(when, code))
  notify(
    ("the language server %s (exit code %d). Check the Python environment and the settings "
      .. "(checkpoint paths), run :checkhealth deepfim; server output is in %s"):format(when, code, vim.lsp.get_log_path()),
    vim.log.levels.ERROR
  )
end

---Start (or re-use) the client for the workspace of `bufnr` and attach the buffer.
---@param bufnr integer
---@return integer|nil client_id
function M.start(bufnr)
  local cfg = config.get()
  local problem = M.cmd_problem(cfg.cmd)
  if problem then
    if M._reported_cmd ~= cfg.cmd[1] then
      M._reported_cmd = cfg.cmd[1]
      notify(problem, vim.log.levels.ERROR)
    end
    return nil
  end
  local fname = vim.api.nvim_buf_get_name(bufnr)
  local root = vim.fs.root(bufnr, cfg.root_markers) or vim.fs.dirname(fname) or vim.fn.getcwd()
  local ok, client_id = pcall(vim.lsp.start, {
    name = M.name,
    cmd = cfg.cmd,
    root_dir = root,
    init_options = as_object(cfg.settings),
    settings = { deepfim = as_object(cfg.settings) },
    capabilities = capabilities(),
    on_init = function(client)
      initialized[client.id], M.starting[client.id] = true, nil
      require("deepfim.status").on_init(client)
    end,
    on_exit = on_exit,
  }, { bufnr = bufnr, silent = true })
  if not ok or not client_id then
    notify(("cannot start the language server `%s`: %s"):format(table.concat(cfg.cmd, " "), tostring(client_id or "unknown error")), vim.log.levels.ERROR)
    return nil
  end
  M.starting[client_id] = not initialized[client_id] or nil
  return client_id
end

---Stop all DeepFIM clients; `callback` runs once they have exited (or after 3 s).
---@param callback? fun()
function M.stop(callback)
  local clients = M.clients()
  M._stopping = true
  for _, client in ipairs(clients) do
    call(client, "stop")
  end
  local timer = vim.uv.new_timer()
  local waited = 0
  timer:start(0, 20, vim.schedule_wrap(function()
    waited = waited + 20
    local alive = vim.tbl_filter(function(c)
      return not c:is_stopped()
    end, clients)
    if #alive == 0 or waited >= 3000 then
      timer:stop()
      timer:close()
      for _, c in ipairs(alive) do
        call(c, "stop", true)
      end
      M._stopping = false
      if callback then
        callback()
      end
    end
  end))
end

---Send a request to the client of `bufnr` (or the first DeepFIM client).
---@param method string
---@param params table
---@param handler fun(err: table|nil, result: any)
---@param bufnr? integer
---@return integer|nil request_id, vim.lsp.Client|nil client
function M.request(method, params, handler, bufnr)
  return M.request_to(M.get_client(bufnr) or M.clients()[1], method, params, handler, bufnr)
end

---Send a request to `client` (nil: answered at once with a "not running" error).
---@param client vim.lsp.Client|nil
---@param method string
---@param params table
---@param handler fun(err: table|nil, result: any)
---@param bufnr? integer
---@return integer|nil request_id, vim.lsp.Client|nil client
function M.request_to(client, method, params, handler, bufnr)
  if not client then
    handler({ message = "the DeepFIM language server is not running" }, nil)
    return nil, nil
  end
  local ok, request_id = call(client, "request", method, params, function(err, result)
    handler(err, result)
  end, bufnr)
  if not ok then
    handler({ message = "the DeepFIM language server is not running" }, nil)
    return nil, client
  end
  return request_id, client
end

---@param client vim.lsp.Client
---@param request_id integer
function M.cancel(client, request_id)
  if client and not client:is_stopped() then
    call(client, "cancel_request", request_id)
  end
end

---Send a notification to `client` (a stopped client drops it).
---@param client vim.lsp.Client
---@param method string
---@param params table
function M.notify_to(client, method, params)
  if client and not client:is_stopped() then
    call(client, "notify", method, params)
  end
end

---Notify the server without waiting for an answer (statistics: accept/reject).
---Custom methods are requests in the protocol; their `null` result is ignored.
---@param method string
---@param params table
---@param bufnr? integer
function M.fire(method, params, bufnr)
  M.request(method, params, function() end, bufnr)
end

return M
