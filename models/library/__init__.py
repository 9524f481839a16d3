"""The model library: the catalogue of known models, downloads from the hub, the models
installed here (:mod:`.installed`), the shipped demo pair, and which pair to load when
none is named (:mod:`.defaults`)."""
