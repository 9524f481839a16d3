"""The demo recipe: the puzzle-trained tiny LLaVA-CoT model shipped with the app (README.md)."""
