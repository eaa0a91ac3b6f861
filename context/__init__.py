"""Workspace context: file discovery, tree-sitter index, ranking and prompt packing."""
