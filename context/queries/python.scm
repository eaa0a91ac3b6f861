; Python definitions and imports.

(class_definition
  name: (identifier) @name
  body: (block) @body) @definition.class

(function_definition
  name: (identifier) @name
  body: (block) @body) @definition.function

(import_statement
  name: [(dotted_name) @import.source
         (aliased_import name: (dotted_name) @import.source)]) @import

(import_from_statement
  module_name: (_) @import.source) @import

(import_from_statement
  module_name: (_) @import.source
  name: [(dotted_name) @import.name
         (aliased_import name: (dotted_name) @import.name)]) @import
