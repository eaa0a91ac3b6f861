// Lint: typescript-eslint's strict, type-checked rules over src/ and test/.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  // e2e/ holds the manual code-server check (plain JS run under Node 24), not extension code.
  { ignores: ["out/", "node_modules/", "e2e/", "eslint.config.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],
      eqeqeq: "error",
      curly: "error",
    },
  },
  {
    // node:test's test()/describe() return promises the runner awaits; the vscode stand-in has
    // empty marker classes like the real API.
    files: ["test/**/*.ts"],
    rules: {
      "@typescript-eslint/no-floating-promises": "off",
      "@typescript-eslint/no-extraneous-class": "off",
    },
  },
);
