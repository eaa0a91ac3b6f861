"""Completion shaping: pure functions that decide how much to generate and clean up what the
model produced (single- vs multi-line, stop rules, suffix overlap, bracket balance,
syntax-aware truncation, indentation). No I/O, no model calls; each is unit-tested."""
