"""Remote engines: the search on a model another program serves over HTTP.

:class:`~.server.ServerSettings` names a server; :func:`~.server.connect` opens the
search's backend on it: :class:`~.server_backend.ServerBackend` for llama.cpp's
``llama-server``, :class:`~.openai_backend.OpenAIBackend` for an OpenAI-compatible server
such as vLLM. :mod:`.http` is the JSON and server-sent-events client they share, and
:mod:`.keys` keeps API keys out of the settings file.
"""
