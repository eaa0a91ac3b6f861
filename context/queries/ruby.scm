; Ruby definitions and requires.

(method
  name: (_) @name
  body: (_) @body) @definition.method

(method
  name: (_) @name) @definition.method

(singleton_method
  name: (_) @name
  body: (_) @body) @definition.method

(singleton_method
  name: (_) @name) @definition.method

(class
  name: (_) @name
  body: (_) @body) @definition.class

(class
  name: (_) @name) @definition.class

(module
  name: (_) @name
  body: (_) @body) @definition.module

(module
  name: (_) @name) @definition.module

(call
  method: (identifier) @_require
  arguments: (argument_list . (string (string_content) @import.source))
  (#eq? @_require "require")) @import

(call
  method: (identifier) @_require
  arguments: (argument_list . (string (string_content) @import.relative))
  (#eq? @_require "require_relative")) @import
