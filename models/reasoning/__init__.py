"""The LLaVA-CoT method: the four-stage format and the searches over it.

:mod:`.stages` parses the format and :mod:`.stage_grammar` forces it; :mod:`.search` is
stage-level beam search and its baselines, planned by :mod:`.segments`, choosing by
:mod:`.tournament` (prompts in :mod:`.judge`), with :mod:`.retrace` for the final paper's
retracing search. The search reaches a model only through :mod:`.search_backend`;
:mod:`.llama_backend` (with :mod:`.llama_streams`, :mod:`.llama_judging` and
:mod:`.sequence_pool`) implements it on the in-process engine. :mod:`.run_view` folds a
run's events into what the front ends show.
"""
