; Rust definitions and imports.

(function_item
  name: (identifier) @name
  body: (block) @body) @definition.function

(function_signature_item
  name: (identifier) @name) @definition.function

(struct_item
  name: (type_identifier) @name) @definition.struct

(union_item
  name: (type_identifier) @name) @definition.struct

(enum_item
  name: (type_identifier) @name) @definition.enum

(trait_item
  name: (type_identifier) @name
  body: (declaration_list) @body) @definition.trait

(impl_item
  type: (_) @name
  body: (declaration_list) @body) @definition.impl

(type_item
  name: (type_identifier) @name) @definition.type

(mod_item
  name: (identifier) @name
  body: (declaration_list) @body) @definition.module

(macro_definition
  name: (identifier) @name) @definition.macro

(use_declaration
  argument: [(scoped_identifier) (identifier)] @import.source) @import

(use_declaration
  argument: (use_as_clause path: (_) @import.source)) @import

(use_declaration
  argument: (use_wildcard (_) @import.source)) @import

(use_declaration
  argument: (scoped_use_list
    path: (_) @import.source
    list: (use_list [(identifier) (scoped_identifier)] @import.name))) @import

(mod_item
  name: (identifier) @import.relative
  !body) @import
