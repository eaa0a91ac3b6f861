; Go definitions and imports.

(function_declaration
  name: (identifier) @name
  body: (block) @body) @definition.function

(method_declaration
  name: (field_identifier) @name
  body: (block) @body) @definition.method

(type_declaration
  (type_spec
    name: (type_identifier) @name)) @definition.type

(type_declaration
  (type_alias
    name: (type_identifier) @name)) @definition.type

(import_declaration
  (import_spec path: (interpreted_string_literal) @import.source)) @import

(import_declaration
  (import_spec_list
    (import_spec path: (interpreted_string_literal) @import.source))) @import
