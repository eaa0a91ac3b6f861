; C# definitions and using directives.

(class_declaration
  name: (identifier) @name
  body: (declaration_list) @body) @definition.class

(record_declaration
  name: (identifier) @name) @definition.class

(interface_declaration
  name: (identifier) @name
  body: (declaration_list) @body) @definition.interface

(struct_declaration
  name: (identifier) @name
  body: (declaration_list) @body) @definition.struct

(enum_declaration
  name: (identifier) @name
  body: (enum_member_declaration_list) @body) @definition.enum

(method_declaration
  name: (identifier) @name
  body: (block) @body) @definition.method

(method_declaration
  name: (identifier) @name
  !body) @definition.method

(constructor_declaration
  name: (identifier) @name
  body: (block) @body) @definition.method

(namespace_declaration
  name: (_) @name
  body: (declaration_list) @body) @definition.namespace

(file_scoped_namespace_declaration
  name: (_) @name) @definition.namespace

(using_directive
  [(identifier) (qualified_name)] @import.source) @import
