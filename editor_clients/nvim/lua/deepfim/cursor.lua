---Tells the server where the cursor comes to rest (`deepfim/cursor`, docs/protocol.md): while the
---user pauses there, the server prefills the prompt of a completion at that place, so the first
---key after opening a file or moving somewhere is answered from its prefix cache.
local M = {}

M.rest_ms = 150 -- the cursor has stopped moving: key repeat is faster than this

local uv = vim.uv or vim.loop
local timer = nil
local last = nil

local function stop_timer()
  if timer then
    timer:stop()
    timer:close()
    timer = nil
  end
end

local function report(bufnr)
  if not vim.api.nvim_buf_is_valid(bufnr) or vim.api.nvim_get_current_buf() ~= bufnr then
    return
  end
  local lsp = require("deepfim.lsp")
  local client = lsp.get_client(bufnr)
  if not client then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  local key = ("%d:%d:%d"):format(bufnr, params.position.line, params.position.character)
  if key == last then
    return -- reported already: the server holds that prompt
  end
  last = key
  lsp.notify_to(client, "deepfim/cursor", { textDocument = params.textDocument, position = params.position })
end

---The cursor moved in `bufnr` (normal mode, or the buffer entered).
---@param bufnr integer
function M.moved(bufnr)
  stop_timer()
  timer = uv.new_timer()
  timer:start(M.rest_ms, 0, vim.schedule_wrap(function()
    stop_timer()
    report(bufnr)
  end))
end

---The text changed: the position reported last no longer names the same text.
function M.edited()
  last = nil
end

return M
