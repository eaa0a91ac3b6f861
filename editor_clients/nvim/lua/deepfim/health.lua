--- `:checkhealth deepfim`: Neovim version, configuration, server command, checkpoint paths, server state.

local M = {}

local health = vim.health

local function check_path(label, path)
  if path == nil or path == vim.NIL or path == "" then
    return
  end
  if vim.uv.fs_stat(vim.fs.normalize(path)) then
    health.ok(("%s exists: %s"):format(label, path))
  else
    health.error(("%s does not exist: %s"):format(label, path), { "Fix settings." .. label .. " or remove it to use the default" })
  end
end

function M.check()
  health.start("deepfim")
  if vim.fn.has("nvim-0.10") == 1 then
    health.ok("Neovim " .. tostring(vim.version()))
  else
    health.error("Neovim 0.10 or newer is required")
    return
  end

  local config = require("deepfim.config")
  local problems = config.problems()
  for _, problem in ipairs(problems.errors) do
    health.error("invalid setting " .. problem, { "Fix vim.g.deepfim or the setup() options; the default is used meanwhile" })
  end
  for _, problem in ipairs(problems.unknown) do
    health.warn(problem, { "See :help deepfim-configuration for the keys" })
  end
  if #problems.errors == 0 and #problems.unknown == 0 then
    health.ok("configuration is valid: every key is known and every value in range")
  end
  local cfg = config.get()
  local keys = {}
  for _, name in ipairs(require("deepfim.schema").keymap_names) do
    table.insert(keys, ("%s %s"):format(name, cfg.keymaps[name] or "off"))
  end
  health.info(("keys: %s; <Tab> accepts: %s"):format(table.concat(keys, ", "), cfg.tab_accept and "yes" or "no"))

  local lsp = require("deepfim.lsp")
  local cmd_problem = lsp.cmd_problem(cfg.cmd)
  if cmd_problem then
    health.error(cmd_problem)
  else
    local program = vim.fn.exepath(cfg.cmd[1])
    health.ok("server program: " .. program)
    if vim.fs.basename(program) == "deepfim" then
      local ok, res = pcall(function()
        return vim.system({ program, "--version" }, { text = true }):wait(20000)
      end)
      if ok and res.code == 0 then
        health.ok("it runs: " .. vim.trim(res.stdout))
      else
        local out = ok and vim.trim((res.stderr or "") .. (res.stdout or "")) or tostring(res)
        health.error("`" .. program .. " --version` failed: " .. out:sub(-600), {
          "The Python environment behind the program is broken or incomplete; rerun scripts/bootstrap.sh",
        })
      end
    end
  end

  check_path("checkpoint", cfg.settings.checkpoint)
  check_path("expertCheckpoint", cfg.settings.expertCheckpoint)
  check_path("tlsCa", cfg.settings.tlsCa)

  local clients = lsp.clients()
  if #clients == 0 then
    health.info("no DeepFIM language server is running (it starts when a file is opened)")
  end
  for _, client in ipairs(clients) do
    local resp
    if vim.fn.has("nvim-0.11") == 1 then
      resp = client:request_sync("deepfim/status", {}, 2000, 0)
    else
      resp = client.request_sync("deepfim/status", {}, 2000, 0)
    end
    local status = resp and resp.result
    if status then
      health.ok(("server %d (%s): %s"):format(client.id, client.root_dir or "?",
        table.concat(require("deepfim.commands").format_status(status), "; ")))
    else
      local msg = resp and resp.err and resp.err.message or "no answer within 2 s"
      health.warn(("server %d (%s) does not answer deepfim/status: %s"):format(client.id, client.root_dir or "?", msg))
    end
  end
  health.info("LSP log (server stderr): " .. vim.lsp.get_log_path())
end

return M
