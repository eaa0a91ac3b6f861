"""FIM evaluation: tree-sitter holes from held-out files (with and without cross-file
context), HumanEval single-line infilling run in subprocesses, exact match / edit
similarity / pass@1, and the n-gram copy baseline every model is compared against."""
