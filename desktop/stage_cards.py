"""The right side of the window: one card per stage, in order, in a vertical scroll area.

:class:`ReasoningPanel` renders a :class:`~stagewise.models.reasoning.run_view.RunView`.
:meth:`~ReasoningPanel. show_run` renders everything (a run starting, or one restored from history);
:meth:`~ReasoningPanel.update_stages` re-renders only the cards whose stage changed and is
cheap enough to call many times a second while tokens stream: widgets are built once, text is
only set when it changed (and appended when it grew), and a card's candidates view is only
refreshed while it is open.

Each :class:`StageCard` has a header (disclosure button, title, status chip, "Candidates"
toggle, and a preview of the text on the same line while collapsed) and a body (the stage's
text, then the :class:`~stagewise.desktop.candidates_view.CandidatesView` when the toggle is
on). A stage folds to its header line when it is chosen (its chip then says how long it took),
unless the user opened or closed that card or opened its candidates; a click on the line, or
Space or Enter on its disclosure button, opens it again. The Conclusion card is the prominent
answer: larger text, an accent bar on its left, never collapsed.

While a run streams, the panel follows the card being written, and keeps the Conclusion in view
once the run is over; a user who scrolls away, or opens or closes a card, is left where they are
until they come back to the bottom.
"""

from __future__ import annotations

from itertools import pairwise

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from stagewise.desktop.candidates_view import CandidatesView, plural
from stagewise.desktop.formatting import seconds_text
from stagewise.desktop.widgets import Chip, ElidedLabel, GrowingText, bold_font, small_font
from stagewise.models.reasoning.confidence import explain
from stagewise.models.reasoning.run_view import RunStatus, RunView, StageStatus, StageView
from stagewise.models.stages import STAGES, Stage

PANEL_MIN_WIDTH = 320
ACCENT_WIDTH = 4
ANSWER_PLACEHOLDER = "The answer appears here."
NOT_WRITTEN = "Not written: the answer stopped before this stage."
_ENDED_EARLY = frozenset({RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.INTERRUPTED})
ANSWER_SCALE = 1.25
FOLLOW_MARGIN = 12  # px kept around the card being written when the view follows it
FOLLOW_SLACK = 4  # px from the bottom that still count as "at the bottom"
_WRITING = frozenset({StageStatus.SAMPLING, StageStatus.JUDGING})

_PLACEHOLDERS = {
    StageStatus.WAITING: "Not started yet.",
    StageStatus.SAMPLING: "Writing…",
    StageStatus.JUDGING: "Nothing was written.",
    StageStatus.CHOSEN: "Nothing was written.",
    StageStatus.STOPPED: "Stopped before anything was written.",
}


def status_texts(view: StageView) -> tuple[str, str]:
    """The status chip's text and tooltip for a stage."""
    n = view.n_candidates
    match view.status:
        case StageStatus.WAITING:
            return "Waiting", "This stage starts when the stages before it are done."
        case StageStatus.SAMPLING:
            if n <= 1:
                return "Writing", "The model is writing this stage."
            return (f"Sampling {plural(n, 'candidate')}",
                    f"The model is writing {n} candidates for this stage side by side; "
                    "one of them will be kept.")
        case StageStatus.JUDGING:
            comparisons = view.segments[-1].n_comparisons if view.segments else 0
            if comparisons <= 0:
                return "Judging", "The judge is choosing among the candidates."
            return (f"Judging {plural(comparisons, 'comparison')}",
                    "The judge model compares the candidates in pairs, knockout style; "
                    "the winner of each pair goes on to the next round.")
        case StageStatus.CHOSEN:
            word = "Chosen" if n > 1 else "Done"
            text = word if view.seconds is None else f"{word} · {seconds_text(view.seconds)}"
            tip = ("One candidate was kept; open Candidates to see all of them and why."
                   if n > 1 else "This stage is written.")
            if view.seconds is not None:
                tip += f" It took {seconds_text(view.seconds)}."
            return text, tip
        case StageStatus.STOPPED:
            return "Stopped", "The run stopped before this stage was finished."
    return "", ""


class _Header(QWidget):
    """The header row; a click on it (outside its buttons) toggles the card."""

    clicked = Signal()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            event.accept()
        else:
            super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.rect().contains(
                event.position().toPoint()):
            self.clicked.emit()
        super().mouseReleaseEvent(event)


class _Disclosure(QToolButton):
    """The card's open/close arrow; Space (as any button) and Enter or Return toggle it."""

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            event.accept()
            self.click()
        else:
            super().keyPressEvent(event)


class StageCard(QFrame):
    """One stage: header with disclosure, title, status and Candidates toggle; then its text.

    Signals:
        collapsed_changed(bool): the card was collapsed (True) or expanded (False).
        user_acted(): the user opened or closed the card or its candidates.
    """

    collapsed_changed = Signal(bool)
    user_acted = Signal()

    def __init__(self, stage: Stage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.stage = stage
        self.prominent = stage is Stage.CONCLUSION
        self._collapsed = False
        self._user_toggled = False
        self._finished = False  # its stage was chosen (it folded then) in the run shown
        self._view: StageView | None = None
        self._select: str | None = None
        self._strategy: str | None = None
        self._candidates: CandidatesView | None = None
        self.setObjectName(f"{stage.value}Card")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.setAccessibleName(f"{stage.title} stage")

        layout = QVBoxLayout(self)
        left = 14 + (ACCENT_WIDTH + 4 if self.prominent else 0)
        layout.setContentsMargins(left, 10, 14, 12)
        layout.setSpacing(8)

        self.header = _Header(self)
        top = QVBoxLayout(self.header)
        top.setContentsMargins(0, 0, 0, 0)
        top.setSpacing(2)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(8)
        self.disclosure = _Disclosure(self.header)
        self.disclosure.setAutoRaise(True)
        self.disclosure.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.disclosure.clicked.connect(self.toggle_collapsed)
        self.disclosure.setVisible(not self.prominent)
        self.title = QLabel(stage.title, self.header)
        self.title.setFont(bold_font(self, 1.15 if self.prominent else 1.0))
        self.chip = Chip("", self.header)
        self.chip.setAccessibleName(f"{stage.title} status")
        self.badge = Chip("", self.header)  # the Conclusion's: how sure the search is
        self.badge.setAccessibleName(f"{stage.title} confidence")
        self.badge.hide()
        self.candidates_button = QToolButton(self.header)
        self.candidates_button.setCheckable(True)
        self.candidates_button.setAutoRaise(False)
        self.candidates_button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.candidates_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.candidates_button.setFont(small_font(self))
        self.candidates_button.setAccessibleName(f"{stage.title} candidates")
        self.candidates_button.toggled.connect(self._candidates_toggled)
        self.candidates_button.clicked.connect(self.user_acted)
        self.preview = ElidedLabel(self.header)  # collapsed: the text, on the same line
        self.preview.setFont(small_font(self))
        self.preview.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.preview.setAccessibleName(f"{stage.title} preview")
        self.preview.hide()
        row.addWidget(self.disclosure)
        row.addWidget(self.title)
        row.addWidget(self.chip, 0, Qt.AlignmentFlag.AlignVCenter)
        row.addWidget(self.preview, 1, Qt.AlignmentFlag.AlignVCenter)
        row.addStretch(0)
        row.addWidget(self.candidates_button)
        top.addLayout(row)
        # the badge on a line of its own, under the title: beside the chip it made the
        # Conclusion's header wider than the pane at 900x600, and was cut to "4…"
        badge_row = QHBoxLayout()
        badge_row.setContentsMargins(0, 0, 0, 0)
        badge_row.addWidget(self.badge, 0, Qt.AlignmentFlag.AlignVCenter)
        badge_row.addStretch(1)
        top.addLayout(badge_row)
        self.header.clicked.connect(self._header_clicked)
        layout.addWidget(self.header)

        self.body = QWidget(self)
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(10)
        self.text = GrowingText(self.body)
        self.text.setAccessibleName(f"{stage.title} text")
        if self.prominent:
            self.text.setFont(small_font(self.text, ANSWER_SCALE))  # the answer: larger
        body.addWidget(self.text)
        self.doubt = QLabel(self.body)  # the Conclusion's: why to trust it less
        self.doubt.setTextFormat(Qt.TextFormat.PlainText)
        self.doubt.setWordWrap(True)
        self.doubt.setStyleSheet("color: #b26a00;")
        self.doubt.setAccessibleName(f"{stage.title} warning")
        self.doubt.hide()
        body.addWidget(self.doubt)
        layout.addWidget(self.body)

        self._ended = False  # the run shown stopped before its end
        self._update_disclosure()
        self._update_toggle(0)
        self._show_status(StageView(stage))

    # -- reading (the panel, tests) -------------------------------------------------------

    def is_collapsed(self) -> bool:
        return self._collapsed

    @property
    def user_toggled(self) -> bool:
        """Whether the user collapsed or expanded this card since the run was shown."""
        return self._user_toggled

    def text_shown(self) -> str:
        return self.text.text()

    def status_text(self) -> str:
        return self.chip.full_text()

    def preview_text(self) -> str:
        """The collapsed preview's full (unelided) text; empty while expanded."""
        return self.preview.full_text()

    @property
    def finished(self) -> bool:
        """Whether the stage shown is written and chosen (a finished card folds)."""
        return self._finished

    @property
    def candidates_view(self) -> CandidatesView | None:
        """The candidates view, once the toggle was first turned on."""
        return self._candidates

    # -- updating -------------------------------------------------------------------------

    def reset(self, collapsed: bool) -> None:
        """Forget the user's toggles (a new run is shown); close the candidates."""
        self._user_toggled = False
        self._finished = False
        self.candidates_button.setChecked(False)
        self.set_collapsed(collapsed)

    def update_view(self, view: StageView, run: RunView | None = None) -> None:
        """Render ``view`` (cheap when little changed)."""
        self._view = view
        if run is not None and run.started is not None:
            self._select, self._strategy = run.started.select, run.started.strategy
        elif run is not None and run.result is not None:
            self._select, self._strategy = run.result.select, run.result.strategy
        elif run is not None:
            self._select = self._strategy = None
        if run is not None:
            self._ended = run.status in _ENDED_EARLY
        self._show_status(view)
        self.text.set_text(view.text)
        self._fold_when_finished(view)
        if self.prominent and run is not None:
            self.show_doubts(run.cautions())
            self.show_confidence(run)
        if self._collapsed:
            self.preview.set_full_text(view.text)
        self._update_toggle(view.n_candidates)
        self._refresh_candidates()

    def show_doubts(self, doubts: list[str]) -> None:
        """Say, under the answer, why it deserves less trust (nothing when all went well)."""
        self.doubt.setText("⚠ " + " ".join(doubts) if doubts else "")
        self.doubt.setVisible(bool(doubts))

    def show_confidence(self, run: RunView) -> None:
        """The badge beside the Conclusion's status: how sure the finished search is
        ("3 of 4 agree", "unsure"), its tooltip what that means and has been worth."""
        confidence = run.confidence
        strategy = run.result.strategy if run.result is not None else ""
        text = confidence.label if confidence is not None else ""
        tip = explain(confidence, strategy) if confidence is not None else ""
        if text != self.badge.full_text() or tip != self.badge.toolTip():
            self.badge.set_full_text(text)
            self.badge.setToolTip(tip)
            self.badge.setAccessibleDescription(tip)
        self.badge.setVisible(confidence is not None)

    def confidence_text(self) -> str:
        """The badge's text; empty when none is shown."""
        return self.badge.full_text() if self.badge.isVisibleTo(self) else ""

    def doubt_text(self) -> str:
        return self.doubt.text() if self.doubt.isVisibleTo(self) else ""

    def set_collapsed(self, collapsed: bool, *, user: bool = False) -> None:
        """Collapse or expand the body (the Conclusion never collapses)."""
        if user:
            self._user_toggled = True
        collapsed = collapsed and not self.prominent
        if collapsed == self._collapsed:
            return
        self._collapsed = collapsed
        self.body.setVisible(not collapsed)
        self.preview.setVisible(collapsed)
        self.preview.set_full_text(self._view.text if collapsed and self._view else "")
        self._update_disclosure()
        self._refresh_candidates()
        self.collapsed_changed.emit(collapsed)

    def toggle_collapsed(self) -> None:
        """What the disclosure button does."""
        self.set_collapsed(not self._collapsed, user=True)
        self.user_acted.emit()

    def set_candidates_open(self, shown: bool) -> None:
        self.candidates_button.setChecked(shown)

    # -- painting -------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(palette.color(QPalette.ColorRole.Mid))
        painter.setBrush(palette.color(QPalette.ColorRole.Base))
        painter.drawRoundedRect(rect, 8, 8)
        if self.prominent:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(palette.color(QPalette.ColorRole.Highlight))
            bar = QRectF(rect.left() + 6, rect.top() + 10, ACCENT_WIDTH,
                         max(rect.height() - 20, 0))
            painter.drawRoundedRect(bar, ACCENT_WIDTH / 2, ACCENT_WIDTH / 2)
        painter.end()

    # -- internals ------------------------------------------------------------------------

    def _fold_when_finished(self, view: StageView) -> None:
        """A stage that was just chosen folds to its header line (title, status and time),
        unless the user opened or closed this card, or is looking at its candidates."""
        finished = view.status is StageStatus.CHOSEN
        if finished == self._finished:
            return
        self._finished = finished
        if finished and not self._user_toggled and not self.candidates_button.isChecked():
            self.set_collapsed(True)

    def _header_clicked(self) -> None:
        if not self.prominent:
            self.toggle_collapsed()

    def _show_status(self, view: StageView) -> None:
        text, tip = status_texts(view)
        if view.status is StageStatus.WAITING and self._ended:
            text, tip = "Not written", "The answer was stopped before this stage."
        if text != self.chip.full_text():
            self.chip.set_short_text(text.partition(" · ")[0])  # without its time
            self.chip.set_full_text(text)
            self.chip.setToolTip(f"{text}: {tip}" if text else tip)  # the chip may be elided
            self.chip.setAccessibleDescription(tip)
        if view.status is StageStatus.WAITING and self._ended:
            placeholder = NOT_WRITTEN
        elif self.prominent and view.status is StageStatus.WAITING:
            placeholder = ANSWER_PLACEHOLDER
        else:
            placeholder = _PLACEHOLDERS.get(view.status, "")
        if placeholder != self.text.placeholderText():
            self.text.setPlaceholderText(placeholder)

    def _update_disclosure(self) -> None:
        title = self.stage.title
        if self._collapsed:
            self.disclosure.setArrowType(Qt.ArrowType.RightArrow)
            self.disclosure.setAccessibleName(f"Expand {title}")
            self.disclosure.setToolTip(f"Show the {title.lower()}")
        else:
            self.disclosure.setArrowType(Qt.ArrowType.DownArrow)
            self.disclosure.setAccessibleName(f"Collapse {title}")
            self.disclosure.setToolTip(f"Hide the {title.lower()}, keeping a one-line preview")

    def _update_toggle(self, n: int) -> None:
        enabled = n > 1
        text = plural(n, "candidate") if enabled else "Candidates"
        if text != self.candidates_button.text():
            self.candidates_button.setText(text)
            if enabled:
                tip = (f"Show the {n} candidates written for this "
                       f"{self.stage.title.lower()} and why one was kept")
            else:
                tip = "Available when the search writes more than one candidate"
            self.candidates_button.setToolTip(tip)
        if enabled != self.candidates_button.isEnabled():
            if not enabled:
                self.candidates_button.setChecked(False)
            self.candidates_button.setEnabled(enabled)

    def _candidates_toggled(self, shown: bool) -> None:
        if shown and self._candidates is None:
            self._candidates = CandidatesView(self.stage, self.body)
            self.body.layout().addWidget(self._candidates)
            view = self._candidates  # Tab goes from the toggle into what it opened
            chain = [self.candidates_button, view.previous_button, view.next_button,
                     view.grid, view.why]
            for first, second in pairwise(chain):
                QWidget.setTabOrder(first, second)
        if shown and self._collapsed:
            self.set_collapsed(False, user=True)
        self._refresh_candidates()  # before it shows: the first frame is already current
        if self._candidates is not None:
            self._candidates.setVisible(shown)

    def _refresh_candidates(self) -> None:
        """Refresh the candidates view, only while it can be seen."""
        view = self._candidates
        if (view is None or self._view is None or self._collapsed
                or not self.candidates_button.isChecked()):
            return
        view.show_stage(self._view, self._select, self._strategy)


class ReasoningPanel(QWidget):
    """The four stage cards, in order, in a vertical scroll area.

    While a run streams, the view follows the card being written (its latest text in view,
    the Conclusion scrolled in when it starts, and kept in view when the run ends) until the
    user scrolls away or opens or closes a card; it then stays where they put it until they
    scroll back to the bottom.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._collapsed_default = False
        self._run: RunView | None = None
        self._following = True
        self._scrolling = False  # the panel itself is moving the scroll bar
        self.setMinimumWidth(PANEL_MIN_WIDTH)
        self.setAccessibleName("Reasoning")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea(self)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # always there, so that the cards keep their width (and their text its wrapping)
        # when opening one makes the content taller than the view
        self.scroll.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        container = QWidget()
        column = QVBoxLayout(container)
        column.setContentsMargins(12, 12, 12, 12)
        column.setSpacing(12)
        self._cards: dict[Stage, StageCard] = {}
        for stage in STAGES:
            card = StageCard(stage, container)
            card.user_acted.connect(self._stop_following)
            self._cards[stage] = card
            column.addWidget(card)
        column.addStretch(1)
        self.scroll.setWidget(container)
        outer.addWidget(self.scroll)
        bar = self.scroll.verticalScrollBar()
        bar.valueChanged.connect(self._scrolled)
        bar.rangeChanged.connect(self._follow_stream)

    def card(self, stage: Stage) -> StageCard:
        return self._cards[stage]

    def collapsed_default(self) -> bool:
        return self._collapsed_default

    def is_following(self) -> bool:
        """Whether the view follows the stream (the user has not scrolled away from it)."""
        return self._following

    def show_run(self, view: RunView) -> None:
        """Render the whole of ``view``: a run starting, or one restored from history.

        The user's collapse toggles are forgotten and every card takes the default (finished
        stages fold); candidate views close; the panel scrolls back to the top (a finished
        run: as far as it takes to show the Conclusion) and follows the stream again.
        """
        self._run = view
        for stage, card in self._cards.items():
            card.reset(self._collapsed_default)
            card.update_view(view.stages[stage], view)
        self._scroll_to(0)
        self._following = True

    def update_stages(self, view: RunView, stages: set[Stage]) -> None:
        """Re-render the cards of ``stages`` only (called often while tokens stream)."""
        self._run = view
        for stage in STAGES:
            if stage in stages:
                self._cards[stage].update_view(view.stages[stage], view)
        self._follow_stream()

    def set_collapsed_default(self, collapsed: bool) -> None:
        """The default for Summary, Caption and Reasoning (the Conclusion never collapses).

        It applies now to the cards the user has not toggled in this run, and to every card at
        the next :meth:`show_run`.
        """
        self._collapsed_default = collapsed
        for card in self._cards.values():
            if not card.user_toggled:
                card.set_collapsed(collapsed or card.finished)  # finished cards stay folded

    def clear(self) -> None:
        """Back to the empty state: waiting cards, no text."""
        self.show_run(RunView())

    # -- following the stream -------------------------------------------------------------

    def writing_card(self) -> StageCard | None:
        """The card being written: the last sampling or judging one that shows text (a
        whole-answer segment writes every stage at once), else the first; None when idle."""
        if self._run is None or self._run.status is not RunStatus.RUNNING:
            return None
        active = [card for stage, card in self._cards.items()
                  if self._run.stages[stage].status in _WRITING]
        written = [card for card in active if card.text_shown()]
        return written[-1] if written else (active[0] if active else None)

    def _follow_stream(self) -> None:
        """Bring the card being written into view: all of it when it fits, else its end; once
        the run is over, the Conclusion (all of it, else its start)."""
        if not self._following or self._run is None or self._run.status is RunStatus.IDLE:
            return
        over = self._run.done
        card = self._cards[Stage.CONCLUSION] if over else self.writing_card()
        if card is None:
            return
        top, bottom = card.y() - FOLLOW_MARGIN, card.y() + card.height() + FOLLOW_MARGIN
        height = self.scroll.viewport().height()
        bar = self.scroll.verticalScrollBar()
        if bottom - top > height:
            value = top if over else bottom - height
        else:
            value = min(max(bar.value(), bottom - height), top)
        self._scroll_to(min(max(value, 0), bar.maximum()))

    def _stop_following(self) -> None:
        """The user opened or closed something: the view stays where it is (what they
        opened is not pushed away) until they scroll back to the bottom."""
        self._following = False

    def _scroll_to(self, value: int) -> None:
        self._scrolling = True
        try:
            self.scroll.verticalScrollBar().setValue(value)
        finally:
            self._scrolling = False

    def _scrolled(self, value: int) -> None:
        """The user moved the view (wheel, keys, scroll bar, focus): follow again only once
        they are back at the bottom."""
        if not self._scrolling:
            bar = self.scroll.verticalScrollBar()
            self._following = value >= bar.maximum() - FOLLOW_SLACK
