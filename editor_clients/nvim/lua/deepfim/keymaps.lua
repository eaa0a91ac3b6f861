--- Buffer-local insert-mode keys. Each acts while a suggestion is shown (or, for `trigger`,
--- where completions are on); otherwise the key does what it did before DeepFIM mapped it: the
--- mapping it shadows (another plugin's `<Tab>`, say) or else the plain key, so `<Tab>` still
--- indents with 'expandtab' and 'softtabstop'.

local M = {}

local DESC = "DeepFIM: "

local function termcodes(keys)
  return vim.api.nvim_replace_termcodes(keys, true, false, true)
end

---Buffer-local mappings found when DeepFIM mapped the key, by buffer and key.
---@type table<integer, table<string, table>>
local shadowed = {}

---The global insert-mode mapping of `lhs` now (a completion plugin may map `<Tab>` later).
local function global_mapping(lhs)
  local raw = termcodes(lhs)
  for _, mapping in ipairs(vim.api.nvim_get_keymap("i")) do
    if termcodes(mapping.lhs) == raw then
      return mapping
    end
  end
end

---Type `keys` as the mapping `mapping` would: remapped unless it was a noremap mapping.
local function feed(keys, mapping)
  if keys and keys ~= "" then
    vim.api.nvim_feedkeys(keys, (mapping and mapping.noremap ~= 1) and "mi" or "ni", false)
  end
end

---Do what `mapping` does (see :help maparg() for its fields).
local function run(mapping)
  local expr = mapping.expr == 1
  if mapping.callback then
    local result = mapping.callback()
    if expr and type(result) == "string" then
      feed(mapping.replace_keycodes == 1 and termcodes(result) or result, mapping)
    end
  elseif expr then
    feed(vim.api.nvim_eval(mapping.rhs), mapping)
  else
    feed(termcodes(mapping.rhs or ""), mapping)
  end
end

---What `lhs` does without DeepFIM in buffer `bufnr`.
local function fallback(bufnr, lhs)
  local mapping = (shadowed[bufnr] or {})[lhs] or global_mapping(lhs)
  if mapping then
    run(mapping)
  else
    feed(termcodes(lhs), nil)
  end
end

---@param bufnr integer
---@param lhs string|false
---@param action fun(): boolean true when it acted
---@param desc string
local function map(bufnr, lhs, action, desc)
  if not lhs then
    return
  end
  local existing = vim.fn.maparg(lhs, "i", false, true)
  if existing.buffer == 1 and not vim.startswith(existing.desc or "", DESC) then
    shadowed[bufnr] = shadowed[bufnr] or {}
    shadowed[bufnr][lhs] = existing
  end
  vim.keymap.set("i", lhs, function()
    if not action() then
      fallback(bufnr, lhs)
    end
  end, { buffer = bufnr, silent = true, desc = DESC .. desc })
end

---Map the configured keys in `bufnr` (and `<Tab>` when `tab_accept` is on).
---@param bufnr integer
---@param cfg deepfim.Config
function M.set(bufnr, cfg)
  local completion = require("deepfim.completion")
  local keys = cfg.keymaps
  map(bufnr, keys.accept, completion.accept, "accept suggestion")
  if cfg.tab_accept then
    map(bufnr, "<Tab>", completion.accept, "accept suggestion, else Tab")
  end
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

return M
