"""Build-time tooling: writing GGUF files, tiny test models, quantization and the demo's
puzzles. Runtime code never imports it (an import-linter contract), and the bundle
leaves it out with the recipes."""
