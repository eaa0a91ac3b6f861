; C++ definitions and includes.

(function_definition
  declarator: (function_declarator declarator: (_) @name)
  body: (compound_statement) @body) @definition.function

(function_definition
  declarator: (pointer_declarator declarator: (function_declarator declarator: (_) @name))
  body: (compound_statement) @body) @definition.function

(function_definition
  declarator: (reference_declarator (function_declarator declarator: (_) @name))
  body: (compound_statement) @body) @definition.function

(declaration
  declarator: (function_declarator declarator: (identifier) @name)) @definition.function

(field_declaration
  declarator: (function_declarator declarator: (_) @name)) @definition.method

(class_specifier
  name: (_) @name
  body: (field_declaration_list) @body) @definition.class

(struct_specifier
  name: (_) @name
  body: (field_declaration_list) @body) @definition.struct

(union_specifier
  name: (_) @name
  body: (field_declaration_list) @body) @definition.struct

(enum_specifier
  name: (_) @name
  body: (enumerator_list)) @definition.enum

(namespace_definition
  name: (_) @name
  body: (declaration_list) @body) @definition.namespace

(type_definition
  declarator: (type_identifier) @name) @definition.type

(alias_declaration
  name: (type_identifier) @name) @definition.type

(preproc_function_def
  name: (identifier) @name) @definition.macro

(preproc_include
  path: (string_literal) @import.relative) @import

(preproc_include
  path: (system_lib_string) @import.source) @import
