; Lua definitions and requires.

(function_declaration
  name: (_) @name
  body: (block) @body) @definition.function

(function_declaration
  name: (_) @name) @definition.function

(assignment_statement
  (variable_list name: (_) @name)
  (expression_list value: (function_definition body: (block) @body))) @definition.function

(function_call
  name: (identifier) @_require
  arguments: (arguments . (string content: (string_content) @import.source))
  (#eq? @_require "require")) @import
