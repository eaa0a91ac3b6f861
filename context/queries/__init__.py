"""Tags-style tree-sitter queries, one `.scm` file per grammar family (package data).

Capture names (read by `deepfim.context.extract`):

- ``@definition.<kind>`` the whole definition (kind: function, method, class, interface,
  struct, enum, trait, impl, type, module, namespace, macro); ``@name`` its name;
  ``@body`` its body, elided in summaries (the signature is the text before it).
- ``@import`` an import statement; ``@import.source`` the imported module or path;
  ``@import.name`` a member imported from that module (``from a import b``);
  ``@import.relative`` a path relative to the importing file (``require_relative``,
  ``#include "x.h"``, Rust ``mod x;``).

Captures starting with ``_`` only serve predicates.
"""
