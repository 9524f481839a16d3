"""Process reward models (PRMs) for the ``prm`` selection, built from their published weights.

No GGUF of an open vision PRM is published. ``python -m stagewise.models.recipes.prm`` turns
a downloaded Hugging Face PRM folder into a text-model GGUF and its projector with the
converter of the llama.cpp that the installed llama-cpp-python runs (the LLaVA-CoT recipe's),
quantizes the text model, checks that "+" and "-" are single tokens of the result, and
registers it in the model library under its catalogue id (a ``[[prm]]`` entry), so that
``stagewise ask --select prm --scorer-model ID`` finds it. Heavy dependencies: the ``train``
extra, as for the LLaVA-CoT recipe.
"""
