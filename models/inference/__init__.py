"""llama.cpp in this process: the engine, the files it loads, and how it samples.

The engine (:mod:`.engine`) owns one text model, its projector and one context with many
sequences; :mod:`.gguf_check` validates a pair before llama.cpp sees it, :mod:`.families`
knows each model family's chat template and image limits, :mod:`.images` turns user files
into pictures libmtmd can take, :mod:`.sampling` is the sampler chain, and
:mod:`.cpu_buffers` decides where the weights may go on this CPU. Nothing here knows the
stage format beyond whether a model declares it (:mod:`.stage_mode`).
"""
