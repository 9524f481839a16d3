"""The LLaVA-CoT method: the searches over the four-stage format.

:mod:`stagewise.models.stages` parses the format and :mod:`.stage_grammar` forces it. A search
(:mod:`.search`) runs a strategy (:mod:`.strategies`: stage-level beam search, its baselines,
the final paper's retracing search), which writes an answer segment by segment
(:mod:`.segments`) from the steps a run offers (:mod:`.search_steps`) and chooses among each
segment's candidates through a selection (:mod:`.selections`: the judge's knockout in
:mod:`.tournament` with its prompts in :mod:`.judge`, log-probabilities, the model's own check, a
second model). Both are registries (:mod:`.registry`): the front ends read their names, labels
and needs from there. The search reaches a model only through :mod:`.search_backend`;
:mod:`.llama_backend` (with :mod:`.llama_streams`, :mod:`.llama_judging` and
:mod:`.sequence_pool`) implements it on the in-process engine. :mod:`.run_view` folds a run's
events into what the front ends show.
"""
