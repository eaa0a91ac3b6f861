-- DeepFIM: ghost-text code completion from the DeepFIM language server.
-- Loads nothing until a buffer is entered or :DeepFIM runs; configure with vim.g.deepfim.
if vim.g.loaded_deepfim then
  return
end
vim.g.loaded_deepfim = true

if vim.fn.has("nvim-0.10") == 0 then
  vim.notify("[DeepFIM] needs Neovim 0.10 or newer", vim.log.levels.WARN)
  return
end

vim.api.nvim_set_hl(0, "DeepFIMSuggestion", { link = "Comment", default = true })

vim.api.nvim_create_user_command("DeepFIM", function(opts)
  require("deepfim.commands").run(opts.fargs)
end, {
  nargs = "+",
  desc = "DeepFIM: status | mode instant|expert | toggle [buffer] | restart",
  complete = function(arglead, cmdline)
    return require("deepfim.commands").complete(arglead, cmdline)
  end,
})

local function attach(args)
  require("deepfim").attach(args.buf)
  require("deepfim.status").changed()
end

local group = vim.api.nvim_create_augroup("deepfim", { clear = true })
vim.api.nvim_create_autocmd({ "BufEnter", "FileType" }, { group = group, callback = attach })

-- The server's `$/progress` (model loading, indexing), as Neovim's LSP client hands it on.
vim.api.nvim_create_autocmd("LspProgress", {
  group = group,
  callback = function(args)
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    if client and client.name == "deepfim" then
      require("deepfim.status").on_progress(client.id, args.data.params)
    end
  end,
})

-- Lazy-loaded after buffers were opened (e.g. lazy.nvim `event = "InsertEnter"`).
if vim.v.vim_did_enter == 1 then
  attach({ buf = vim.api.nvim_get_current_buf() })
end
