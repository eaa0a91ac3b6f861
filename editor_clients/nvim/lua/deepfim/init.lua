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
  require("deepfim.keymaps").set(bufnr, cfg)
  vim.api.nvim_clear_autocmds({ group = group, buffer = bufnr })
  vim.api.nvim_create_autocmd("TextChangedI", { group = group, buffer = bufnr, callback = completion.on_text_changed })
  vim.api.nvim_create_autocmd("InsertEnter", { group = group, buffer = bufnr, callback = completion.schedule })
  vim.api.nvim_create_autocmd("CursorMovedI", { group = group, buffer = bufnr, callback = completion.on_moved })
  vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, { group = group, buffer = bufnr, callback = completion.on_leave })
  local cursor = require("deepfim.cursor")
  vim.api.nvim_create_autocmd({ "CursorMoved", "BufEnter" }, {
    group = group, buffer = bufnr, callback = function() cursor.moved(bufnr) end,
  })
  vim.api.nvim_create_autocmd({ "TextChanged", "TextChangedI" }, { group = group, buffer = bufnr, callback = cursor.edited })
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

---What DeepFIM is doing in the current buffer, as a short text for a statusline: "DeepFIM
---loading model ⠋", "DeepFIM indexing myproject 40% ⠋", "DeepFIM expert request 3s ⠋",
---"DeepFIM ready", "DeepFIM off", "DeepFIM off (buffer)", "DeepFIM error: …"; "" where
---DeepFIM does not attach. `User DeepFIMStatus` fires whenever it changes.
---@return string
M.statusline = function()
  return require("deepfim.status").statusline()
end

---The same as a table: `{ kind = "progress"|"expert"|"ready"|…, text = "…", busy = bool }`.
---@param bufnr? integer
---@return deepfim.Status
M.status = function(bufnr)
  return require("deepfim.status").get(bufnr)
end

return M
