"""The settings' "Remote model" group: answer with a model another program serves.

llama.cpp's ``llama-server`` or an OpenAI-compatible server such as vLLM (which runs the
released LLaVA-CoT 11B model). The API key is shown masked and kept in the key store
(:mod:`stagewise.models.remote.keys`), never in the settings file; a user name and
password typed into the address (``http://user:pw@host``) are taken out of it and kept
there too (an address with ``@`` and no login forgets the one kept).
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QWidget,
)

from stagewise.models.inference.stage_mode import StageMode
from stagewise.models.remote.address import ServerAddress, parse_address
from stagewise.models.remote.http import ServerError
from stagewise.models.remote.server import ServerSettings

KINDS = (("llama-server", "llama.cpp llama-server"),
         ("openai", "OpenAI-compatible (vLLM)"))
MODES = ((StageMode.PROMPTED.value, "Any model: Stagewise asks for the four parts"),
         (StageMode.NATIVE.value, "A LLaVA-CoT model: writes them itself"))


class RemoteModelGroup(QGroupBox):
    """Edits the window's :class:`ServerSettings` and the server's key."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Remote model", parent)
        form = QFormLayout(self)
        self.enabled = QCheckBox("Answer w&ith a model on a server", self)
        self.enabled.setToolTip("Send each question to a server instead of loading a model "
                                "here. The image goes to that server.")
        self.kind = QComboBox(self)
        for value, text in KINDS:
            self.kind.addItem(text, value)
        self.url = QLineEdit(self)
        self.url.setPlaceholderText("http://127.0.0.1:8080  or  http://gpu-box:8000/v1")
        self.model = QLineEdit(self)
        self.model.setPlaceholderText("e.g. Xkev/Llama-3.2V-11B-cot")
        self.key = QLineEdit(self)
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("none")
        self.key.setToolTip("Kept in its own file, readable only by you, never in the "
                            "settings or the history.")
        self.mode = QComboBox(self)
        for value, text in MODES:
            self.mode.addItem(text, value)
        self.kind.setToolTip("llama.cpp's own server, or a server with an OpenAI-compatible "
                             "chat API such as vLLM.")
        self.url.setToolTip("The server's address; for vLLM, with its /v1 path. A user name "
                            "and password in it (http://user:password@host) are kept with "
                            "the key, not in the settings, and not shown here again.")
        self.model.setToolTip("The model's name on an OpenAI-compatible server (llama-server "
                              "serves one model and needs none).")
        self.mode.setToolTip("An answer has four parts: Summary, Caption, Reasoning and "
                             "Conclusion. A LLaVA-CoT model (such as Llama-3.2V-11B-cot) "
                             "writes them by itself; any other model is asked to, in its "
                             "prompt.")
        form.addRow(self.enabled)
        for label, widget, name in (("S&erver:", self.kind, "Server kind"),
                                    ("&Network address:", self.url, "Server address"),
                                    ("Model on the ser&ver:", self.model,
                                     "Model name on the server"),
                                    ("API &key:", self.key, "API key"),
                                    ("Answer &format:", self.mode,
                                     "How the model writes its answer")):
            widget.setAccessibleName(name)
            caption = QLabel(label, self)
            caption.setBuddy(widget)
            form.addRow(caption, widget)
        self.enabled.setAccessibleName("Use a remote model")
        self.enabled.toggled.connect(self._update_enabled)
        self.kind.currentIndexChanged.connect(self._update_enabled)

    def load(self, server: ServerSettings, key: str) -> None:
        self.enabled.setChecked(bool(server.url))
        self.kind.setCurrentIndex(max(0, self.kind.findData(server.kind)))
        self.url.setText(server.url)
        self.model.setText(server.model)
        self.key.setText(key)
        self.mode.setCurrentIndex(max(0, self.mode.findData(server.stage_mode.value)))
        self._update_enabled()

    def address(self) -> ServerAddress | None:
        """The address as typed, checked (None when off or unusable)."""
        if not self.enabled.isChecked():
            return None
        try:
            return parse_address(self.url.text())
        except ServerError:
            return None

    def values(self, original: ServerSettings) -> ServerSettings:
        """``original`` as edited (an unchecked box clears the address, which is kept
        without any login typed into it: that goes to the key store)."""
        address = self.address()
        return replace(original, url=address.url if address else "", login="",
                       kind=self.kind.currentData(),
                       model=self.model.text().strip(),
                       stage_mode=StageMode(self.mode.currentData()))

    def problem(self) -> str | None:
        """Why these values cannot be used, or None."""
        if not self.enabled.isChecked():
            return None
        try:
            parse_address(self.url.text())
        except ServerError as error:
            return f"{str(error)[:1].upper()}{str(error)[1:]}."
        if self.kind.currentData() == "openai" and not self.model.text().strip():
            return "An OpenAI-compatible server needs the model's name."
        return None

    def _update_enabled(self) -> None:
        on = self.enabled.isChecked()
        for widget in (self.kind, self.url, self.key, self.mode):
            widget.setEnabled(on)
        self.model.setEnabled(on and self.kind.currentData() == "openai")
