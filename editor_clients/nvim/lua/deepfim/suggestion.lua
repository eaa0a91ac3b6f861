--- One suggestion as the plugin holds it: the server's items, the candidate shown, the text still
--- to insert, and what a full accept replaces. Pure text and position helpers, no state.

local M = {}

---@class deepfim.Suggestion
---@field items table[] InlineCompletionItems of the last reply
---@field index integer the candidate shown
---@field display string text still to insert at the cursor
---@field replaced string buffer text after the cursor that a full accept replaces
---@field accepted integer characters accepted so far (partial accepts)

---Length in code points, the unit of `acceptedChars`.
function M.char_count(text)
  if vim.fn.has("nvim-0.11") == 1 then
    return vim.str_utfindex(text, "utf-32")
  end
  return (vim.str_utfindex(text))
end

---The `id` the server put in the item's accept command (for accept/reject statistics).
function M.item_id(item)
  local cmd = item and item.command
  local arg = cmd and cmd.arguments and cmd.arguments[1]
  return type(arg) == "table" and arg.id or nil
end

---Byte column of an LSP position on `line` in the client's encoding.
local function byte_col(line, character, encoding)
  if encoding == "utf-8" then
    return math.min(character, #line)
  end
  if vim.fn.has("nvim-0.11") == 1 then
    return vim.str_byteindex(line, encoding, math.min(character, vim.str_utfindex(line, encoding)), false)
  end
  local ok, col = pcall(vim.str_byteindex, line, character, encoding == "utf-16")
  return ok and col or #line
end

---Buffer text from the cursor to the item's range end: what a full accept re-types or replaces.
local function replaced_text(bufnr, row, col, item, encoding)
  local range = item.range
  if not range or not range["end"] then
    return ""
  end
  local end_row = range["end"].line
  local end_line = vim.api.nvim_buf_get_lines(bufnr, end_row, end_row + 1, false)[1] or ""
  local end_col = byte_col(end_line, range["end"].character, encoding)
  if end_row < row or (end_row == row and end_col <= col) then
    return ""
  end
  return table.concat(vim.api.nvim_buf_get_text(bufnr, row, col, end_row, end_col, {}), "\n")
end

---The suggestion for candidate `index` of `items`, the cursor at (`row`, `col`) of `bufnr`.
---@return deepfim.Suggestion
function M.make(items, index, bufnr, row, col, encoding)
  local item = items[index]
  local text = type(item.insertText) == "table" and item.insertText.value or item.insertText or ""
  local replaced = replaced_text(bufnr, row, col, item, encoding)
  -- Text after the cursor that the item re-types stays in the buffer; show only what is new.
  if replaced ~= "" and text:sub(-#replaced) == replaced then
    text, replaced = text:sub(1, #text - #replaced), ""
  end
  return { items = items, index = index, display = text, replaced = replaced, accepted = 0 }
end

return M
