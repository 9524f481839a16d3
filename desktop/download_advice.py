"""What a failed download means for the user, and what to do next.

The hub's errors (:class:`~stagewise.models.library.hub_http.HubError`) say what failed in
the network's words ("cannot connect to https://huggingface.co ([Errno -2] Name or service
not known)"). :func:`advice` turns one into a paragraph that says what happened in plain
words and the next step: retry where that can help, and always the way around the network:
download the two files in a browser from the model's page, then Import Files…. The error's
own words stay available to whoever shows the paragraph (a tooltip, say).
"""

from __future__ import annotations

from stagewise.models.errors import StagewiseError
from stagewise.models.library.catalogue import CatalogueEntry
from stagewise.models.library.hub import resolve_endpoint
from stagewise.models.library.hub_http import HubError

__all__ = ["advice", "files_page"]

_WHAT = {
    "offline": "Stagewise cannot reach Hugging Face: this computer looks offline (the name "
               "{host} could not be looked up).",
    "refused": "Stagewise cannot connect to Hugging Face ({host} refused the connection, or "
               "a proxy or firewall is in the way).",
    "timeout": "Hugging Face ({host}) did not answer in time, or the download became too "
               "slow.",
    "login": "Hugging Face wants you to log in, or to accept the model's licence on its page, "
             "before it lets you download {name}.",
    "missing": "Hugging Face no longer has {name} where the catalogue says (the repository, "
               "the revision or a file is gone).",
    "server": "Hugging Face had a problem, or the connection broke off.",
}

_RETRY = {
    "offline": "When this computer is online again, press Download: it resumes where it "
               "stopped. ",
    "refused": "Check the network, then press Download again. ",
    "timeout": "Check the connection, then press Download again: it resumes where it "
               "stopped. ",
    "server": "Press Download again later: it resumes where it stopped. ",
    "other": "Press Download again to retry. ",
}


def files_page(entry: CatalogueEntry, endpoint: str | None = None) -> str:
    """The hub page that lists the entry's files at its revision (for a browser)."""
    return f"{resolve_endpoint(endpoint)}/{entry.repo}/tree/{entry.revision}"


def advice(error: StagewiseError, entry: CatalogueEntry, endpoint: str | None = None) -> str:
    """What happened to a download of ``entry``, and what to do next.

    Args:
        error: What the pull raised.
        entry: The model that was being downloaded.
        endpoint: The hub it was downloaded from (None: the usual one).

    Returns:
        One paragraph: what happened and the next step (the files' page and Import
        Files…). The error's own words are left out where the first sentence says the
        same in plain words; otherwise they end the first sentence.
    """
    failure = error.failure if isinstance(error, HubError) else "other"
    base = resolve_endpoint(endpoint)
    host = base.split("://", 1)[-1]
    what = _WHAT.get(failure, "Something went wrong: {error}.").format(
        host=host, name=entry.name, error=str(error).rstrip("."))
    if entry.repo is None:
        return what
    page = files_page(entry, endpoint)
    retry = _RETRY.get(failure, "")
    elsewhere = (" (on any computer that is online, then copy them here)"
                 if failure == "offline" else "")
    step = (f"{retry}{'Or download' if retry else 'Download'} {entry.model.name} and "
            f"{entry.mmproj.name} in a browser from {page}{elsewhere}, then choose Import "
            "Files… and pick them.")
    if failure == "missing":
        step = (f"Look for {entry.model.name} and {entry.mmproj.name} in a browser at "
                f"{base}/{entry.repo} (they may have moved), download them and choose Import "
                "Files…; or choose another model in Settings → Models.")
    if failure == "login":
        step = (f"Open {base}/{entry.repo} in a browser, log in and accept the licence, then "
                f"download {entry.model.name} and {entry.mmproj.name} from {page} and choose "
                "Import Files…; or log in with `hf auth login` and press Download again.")
    return f"{what} {step}"
