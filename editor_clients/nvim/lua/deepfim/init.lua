--- DeepFIM for Neovim: public API and buffer attachment.
---
--- Works without `setup()`: `plugin/deepfim.lua` attaches buffers using `vim.g.deepfim`.
--- `setup(opts)` is optional and only layers `opts` over `vim.g.deepfim`.

local config = require("deepfim.config")

local M = {}

local group = vim.api.nvim_create_augroup("deepfim_buffer", { clear = true })

---@param opts? deepfim.Config|table partial configuration
function M.setup(opts)
  config.set(opts)
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) then
      M.attach(bufnr)
    end
  end
end

---@param bufnr integer
---@param cfg deepfim.Config
local function eligible(bufnr, cfg)
  if not cfg.enabled or vim.bo[bufnr].buftype ~= "" or vim.api.nvim_buf_get_name(bufnr) == "" then
    return false
  end
  local ft = vim.bo[bufnr].filetype
  if vim.tbl_contains(cfg.disabled_filetypes, ft) then
    return false
  end
  return cfg.filetypes == nil or vim.tbl_contains(cfg.filetypes, ft)
end

---Insert-mode key that runs `action` when a suggestion is shown, else types the key itself.
local function map(bufnr, lhs, action, desc)
  if not lhs then
    return
  end
  vim.keymap.set("i", lhs, function()
    if not action() then
      vim.api.nvim_feedkeys(vim.api.nvim_replace_termcodes(lhs, true, false, true), "n", false)
    end
  end, { buffer = bufnr, silent = true, desc = "DeepFIM: " .. desc })
end

local function set_keymaps(bufnr, keys)
  local completion = require("deepfim.completion")
  map(bufnr, keys.accept, completion.accept, "accept suggestion")
  map(bufnr, keys.accept_word, completion.accept_word, "accept next word")
  map(bufnr, keys.accept_line, completion.accept_line, "accept next line")
  map(bufnr, keys.next, function()
    return completion.cycle(1)
  end, "next candidate")
  map(bufnr, keys.prev, function()
    return completion.cycle(-1)
  end, "previous candidate")
  map(bufnr, keys.dismiss, completion.dismiss, "dismiss suggestion")
  map(bufnr, keys.trigger, completion.trigger, "request an expert suggestion")
end

---Start the server for this buffer's workspace (once) and wire typing to suggestions.
---@param bufnr integer
function M.attach(bufnr)
  -- A reloaded buffer (:edit!) keeps its variables but loses its LSP attachment.
  if vim.b[bufnr].deepfim_attached and require("deepfim.lsp").get_client(bufnr) then
    return
  end
  local cfg = config.get()
  if not eligible(bufnr, cfg) then
    return
  end
  if not require("deepfim.lsp").start(bufnr) then
    return
  end
  vim.b[bufnr].deepfim_attached = true
  local completion = require("deepfim.completion")
  set_keymaps(bufnr, cfg.keymaps)
  vim.api.nvim_clear_autocmds({ group = group, buffer = bufnr })
  vim.api.nvim_create_autocmd("TextChangedI", { group = group, buffer = bufnr, callback = completion.on_text_changed })
  vim.api.nvim_create_autocmd("InsertEnter", { group = group, buffer = bufnr, callback = completion.schedule })
  vim.api.nvim_create_autocmd("CursorMovedI", { group = group, buffer = bufnr, callback = completion.on_moved })
  vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, { group = group, buffer = bufnr, callback = completion.on_leave })
end

---Forget attachments so the next `attach` starts a fresh server (`:DeepFIM restart`).
function M.detach_all()
  vim.api.nvim_clear_autocmds({ group = group })
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_valid(bufnr) then
      vim.b[bufnr].deepfim_attached = nil
    end
  end
end

M.accept = function()
  return require("deepfim.completion").accept()
end
M.accept_word = function()
  return require("deepfim.completion").accept_word()
end
M.accept_line = function()
  return require("deepfim.completion").accept_line()
end
M.dismiss = function()
  return require("deepfim.completion").dismiss()
end
M.next = function()
  return require("deepfim.completion").cycle(1)
end
M.prev = function()
  return require("deepfim.completion").cycle(-1)
end
---@return boolean
M.is_visible = function()
  return require("deepfim.completion").visible()
end

return M
