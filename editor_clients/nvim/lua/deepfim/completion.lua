--- Inline completion: request on typing, render ghost text with extmarks, accept or dismiss.
---
--- Flow (after llm.nvim): keystroke → `schedule` (restart the debounce timer, cancel the request in
--- flight, clear the ghost text) → `request` (`textDocument/inlineCompletion`) → `show`. A reply
--- is dropped when the buffer or cursor moved since it was asked for. Typing the next characters
--- of the suggestion keeps the rest of it on screen instead of asking again.

local config = require("deepfim.config")
local lsp = require("deepfim.lsp")
local status = require("deepfim.status")
local suggestion = require("deepfim.suggestion")

local M = {}

M.ns = vim.api.nvim_create_namespace("deepfim")

local TRIGGER_INVOKED, TRIGGER_AUTOMATIC = 1, 2

---@class deepfim.State
---@field bufnr integer|nil
---@field row integer 0-based cursor row the suggestion belongs to
---@field col integer 0-based byte column
---@field tick integer b:changedtick the suggestion belongs to
---@field suggestion deepfim.Suggestion|nil
---@field pending {client: vim.lsp.Client, id: integer, bufnr: integer, tick: integer}|nil request in flight
---@field generation integer increases with every request; late replies of older ones are dropped
local state = { bufnr = nil, row = 0, col = 0, tick = -1, suggestion = nil, pending = nil, generation = 0 }

---Statistics for the status line: latency of the last answered request, in ms.
M.last_latency_ms = nil

local timer = nil

local function cursor()
  local pos = vim.api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

function M.clear()
  if state.bufnr and vim.api.nvim_buf_is_valid(state.bufnr) then
    vim.api.nvim_buf_clear_namespace(state.bufnr, M.ns, 0, -1)
  end
  state.suggestion = nil
end

local function cancel_pending()
  if timer then
    timer:stop()
  end
  if state.pending then
    lsp.cancel(state.pending.client, state.pending.id)
    state.pending = nil
  end
  status.request_finished(state.generation, "cancelled")
  state.generation = state.generation + 1
end

---Completions in this buffer, apart from the global switch: `vim.b.deepfim_enabled = false`
---(or `:DeepFIM toggle buffer`) turns them off here only.
---@param bufnr? integer
---@return boolean
function M.buffer_enabled(bufnr)
  return vim.b[bufnr or 0].deepfim_enabled ~= false
end

local function render()
  local s = state.suggestion
  if not s or s.display == "" then
    M.clear()
    return
  end
  vim.api.nvim_buf_clear_namespace(state.bufnr, M.ns, 0, -1)
  local tab = string.rep(" ", vim.bo[state.bufnr].tabstop)
  local lines = vim.split(s.display:gsub("\t", tab), "\n", { plain = true })
  local opts = { hl_mode = "combine", priority = 1000 }
  if lines[1] ~= "" then
    opts.virt_text = { { lines[1], "DeepFIMSuggestion" } }
    opts.virt_text_pos = "inline"
  end
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { lines[i], "DeepFIMSuggestion" } })
    end
  end
  vim.api.nvim_buf_set_extmark(state.bufnr, M.ns, state.row, state.col, opts)
end

---Ask the server for a suggestion at the cursor now.
---@param trigger_kind integer 1 = Invoked (expert mode), 2 = Automatic
function M.request(trigger_kind)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = lsp.get_client(bufnr)
  if not client or vim.fn.mode() ~= "i" or not M.buffer_enabled(bufnr) then
    return
  end
  cancel_pending()
  local row, col = cursor()
  local generation = state.generation
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = trigger_kind }
  local started = vim.uv.hrtime()
  local id
  id = lsp.request("textDocument/inlineCompletion", params, function(err, result)
    if state.pending and state.pending.id == id then
      state.pending = nil
    end
    if generation ~= state.generation then
      return -- superseded
    end
    M.last_latency_ms = math.floor((vim.uv.hrtime() - started) / 1e6)
    if err then
      if err.code ~= -32800 then -- RequestCancelled
        M.last_error = err.message
      end
      status.request_finished(generation, err.code == -32800 and "cancelled" or "error")
      return
    end
    M.last_error = nil
    local items = result and (result.items or result) or {}
    items = vim.tbl_filter(function(item)
      local text = type(item.insertText) == "table" and item.insertText.value or item.insertText
      return type(text) == "string" and text ~= ""
    end, items)
    local crow, ccol = cursor()
    local still_here = vim.api.nvim_get_current_buf() == bufnr
      and vim.api.nvim_buf_get_changedtick(bufnr) == tick
      and crow == row
      and ccol == col
      and vim.fn.mode() == "i"
    status.request_finished(generation, #items > 0 and "shown" or "empty")
    if #items == 0 or not still_here then
      return
    end
    state.bufnr, state.row, state.col, state.tick = bufnr, row, col, tick
    state.suggestion = suggestion.make(items, 1, bufnr, row, col, client.offset_encoding)
    render()
  end, bufnr)
  if id then
    state.pending = { client = client, id = id, bufnr = bufnr, tick = tick }
    local expert = trigger_kind == TRIGGER_INVOKED or config.get().settings.mode == "expert"
    status.request_started(generation, bufnr, expert)
  end
end

---Debounced automatic request after typing.
function M.schedule()
  cancel_pending()
  M.clear()
  local cfg = config.get()
  if not (cfg.enabled and cfg.auto_trigger and M.enabled ~= false and M.buffer_enabled()) then
    return
  end
  timer = timer or vim.uv.new_timer()
  timer:start(cfg.debounce_ms, 0, vim.schedule_wrap(function()
    M.request(TRIGGER_AUTOMATIC)
  end))
end

---@return boolean
function M.visible()
  return state.suggestion ~= nil
    and state.bufnr == vim.api.nvim_get_current_buf()
    and state.suggestion.display ~= ""
end

---The ghost text now shown (nil when none): for statuslines and tests.
---@return string|nil
function M.current()
  return M.visible() and state.suggestion.display or nil
end

---Insert `text` at the cursor, deleting `replaced` after it; move the cursor past the insertion.
local function insert(text, replaced)
  local row, col = state.row, state.col
  local lines = vim.split(text, "\n", { plain = true })
  local end_row, end_col = row, col
  if replaced ~= "" then
    local gone = vim.split(replaced, "\n", { plain = true })
    end_row = row + #gone - 1
    end_col = (#gone == 1 and col or 0) + #gone[#gone]
  end
  vim.api.nvim_buf_set_text(state.bufnr, row, col, end_row, end_col, lines)
  local new_row = row + #lines - 1
  local new_col = (#lines == 1 and col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { new_row + 1, new_col })
  state.row, state.col = new_row, new_col
  state.tick = vim.api.nvim_buf_get_changedtick(state.bufnr)
end

local function report_accept(s, chars)
  local id = suggestion.item_id(s.items[s.index])
  if id ~= nil then
    lsp.fire("deepfim/accept", { id = id, acceptedChars = chars }, state.bufnr)
  end
end

---Accept the whole suggestion, or its first `part` characters when a pattern picks them.
---@param part? fun(text: string): string the prefix of the display text to accept
---@return boolean accepted
local function accept_with(part)
  if not M.visible() then
    return false
  end
  cancel_pending()
  local s = state.suggestion
  local chunk = part and part(s.display) or s.display
  if chunk == "" then
    chunk = s.display
  end
  local done = chunk == s.display
  insert(chunk, done and s.replaced or "")
  s.accepted = s.accepted + suggestion.char_count(chunk)
  s.display = s.display:sub(#chunk + 1)
  if done then
    report_accept(s, s.accepted)
    M.clear()
  else
    render()
  end
  return true
end

function M.accept()
  return accept_with(nil)
end

function M.accept_word()
  return accept_with(function(text)
    return text:match("^%s*[%w_]+") or text:match("^%s*[^%w_%s]+") or text:match("^%s+") or text
  end)
end

function M.accept_line()
  return accept_with(function(text)
    if text:sub(1, 1) == "\n" then
      return "\n" .. (text:sub(2):match("^[^\n]*") or "")
    end
    return text:match("^[^\n]*")
  end)
end

---Show another candidate; with only one, ask once for expert-mode candidates.
---@param step integer 1 or -1
---@return boolean handled
function M.cycle(step)
  if not M.visible() then
    return false
  end
  local s = state.suggestion
  if #s.items > 1 then
    local index = (s.index - 1 + step) % #s.items + 1
    local client = lsp.get_client(state.bufnr)
    state.suggestion = suggestion.make(s.items, index, state.bufnr, state.row, state.col, client and client.offset_encoding or "utf-16")
    render()
  else
    M.request(TRIGGER_INVOKED)
  end
  return true
end

---Hide the suggestion and tell the server it was rejected.
---@return boolean handled
function M.dismiss()
  cancel_pending()
  if not M.visible() then
    return false
  end
  local s = state.suggestion
  local id = suggestion.item_id(s.items[s.index])
  if s.accepted > 0 then
    report_accept(s, s.accepted)
  elseif id ~= nil then
    lsp.fire("deepfim/reject", { id = id }, state.bufnr)
  end
  M.clear()
  return true
end

---Explicit request: expert mode, regardless of `auto_trigger`; false (the key is typed as
---usual) where completions are off.
function M.trigger()
  if M.enabled == false or not config.get().enabled or not M.buffer_enabled() then
    return false
  end
  M.clear()
  M.request(TRIGGER_INVOKED)
  return true
end

---TextChangedI: keep the suggestion if the user typed its next characters, else ask again.
function M.on_text_changed()
  local bufnr = vim.api.nvim_get_current_buf()
  local tick = vim.api.nvim_buf_get_changedtick(bufnr)
  if tick == state.tick and bufnr == state.bufnr then
    return -- our own insertion
  end
  local pending = state.pending
  if pending and pending.bufnr == bufnr and pending.tick == tick then
    return -- a request for exactly this text is in flight (TextChangedI comes late after fast keys)
  end
  local s = state.suggestion
  if s and bufnr == state.bufnr then
    local row, col = cursor()
    if row == state.row and col > state.col then
      local line = vim.api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
      local typed = line:sub(state.col + 1, col)
      if s.display:sub(1, #typed) == typed and #typed < #s.display then
        s.display = s.display:sub(#typed + 1)
        state.col, state.tick = col, tick
        render()
        return
      end
    end
  end
  M.schedule()
end

---CursorMovedI without a text change, InsertLeave, BufLeave: the suggestion is stale.
function M.on_moved()
  if not state.suggestion then
    return
  end
  local bufnr = vim.api.nvim_get_current_buf()
  if bufnr == state.bufnr and vim.api.nvim_buf_get_changedtick(bufnr) ~= state.tick then
    return -- a text change; TextChangedI decides
  end
  local row, col = cursor()
  if bufnr ~= state.bufnr or row ~= state.row or col ~= state.col then
    cancel_pending()
    M.clear()
  end
end

function M.on_leave()
  cancel_pending()
  M.clear()
end

return M
