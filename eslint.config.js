// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";

// The layers of src/homeserver (docs/ARCHITECTURE.md "Who may import what"): only the route table
// imports client/ handlers; handlers never import each other; services never import handlers.
const notAHandlerImport = {
  regex: "(^|/)client/[^/]+$",
  message: "Only routes.ts imports client/ handlers: move what is shared into src/homeserver/services/ (docs/ARCHITECTURE.md).",
};
const notASiblingHandler = {
  regex: "^\\./",
  message: "client/ handlers never import each other: move what is shared into src/homeserver/services/ (docs/ARCHITECTURE.md).",
};
const notAFederationHandler = {
  regex: "^\\.\\./(routes|router|federation/(routes|events|transactions|version|queries|media|joins|hierarchy|openid))\\.ts$",
  message: "Services never import handlers or route tables (docs/ARCHITECTURE.md).",
};

export default tseslint.config(
  { ignores: ["node_modules/**", "dist/**", "test-results/**", "**/*.js", "!eslint.config.js"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": "error",
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-constant-condition": ["error", { checkLoops: false }],
    },
  },
  {
    files: ["src/**/*.ts"],
    ignores: ["src/homeserver/routes.ts", "src/homeserver/client/**"],
    rules: { "no-restricted-imports": ["error", { patterns: [notAHandlerImport] }] },
  },
  {
    files: ["src/homeserver/client/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: [notASiblingHandler, notAHandlerImport] }] },
  },
  {
    files: ["src/homeserver/services/**/*.ts"],
    rules: { "no-restricted-imports": ["error", { patterns: [notAHandlerImport, notAFederationHandler] }] },
  },
);
