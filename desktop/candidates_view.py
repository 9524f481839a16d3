"""The candidates of one stage, side by side, and why one of them was kept.

:class:`CandidatesView` sits inside a stage card when its "Candidates" toggle is on. It shows
one segment at a time (the stage's latest by default; a stepper moves between segments when a
stage has several, as in sentence-level search): the N candidates as columns, the chosen one
first, each with its text, a "Chosen" badge on the winner and a one-line footer, then the
judge's verdicts or the log-probability comparison that decided. The columns wrap into rows
that fit the width (:class:`CandidateGrid`: no sideways scrolling) and are stepped through by
keyboard. Columns keep their candidate's number wherever they stand, and the verdicts use the
same numbers. Colours come from the palette only, so light and dark system palettes both
work.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QFocusEvent,
    QKeyEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPen,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from stagewise.desktop.widgets import Chip, GrowingText, bold_font, muted_label
from stagewise.models.events import Verdict
from stagewise.models.reasoning.judge import name_candidates
from stagewise.models.reasoning.measured import selection_reliability
from stagewise.models.reasoning.run_view import CandidateView, SegmentView, StageView
from stagewise.models.reasoning.selections import SELECTIONS, Selection
from stagewise.models.reasoning.strategies import STRATEGIES
from stagewise.models.stages import Stage

COLUMN_MIN_WIDTH = 200
COLUMN_MAX_WIDTH = 420
GRID_SPACING = 20  # px between columns, and between rows
GRID_MARGIN = 6  # px around the grid: room for the keyboard's focus frame
FOCUS_PAD = 4  # px between a column and its focus frame
FORCED_NOTE = "(judge ran out of words; asked directly)"
UNREAD_NOTE = "(the reply named neither; read as the second, as the paper's code reads it)"


# --------------------------------------------------------------------------------------------
# Formatting


def signed(value: float) -> str:
    """``value`` with two decimals and a true minus sign (``"−0.84"``)."""
    return f"{value:.2f}".replace("-", "\u2212")


def plural(n: int, word: str) -> str:
    """``"1 candidate"``, ``"3 candidates"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def finish_text(candidate: CandidateView, stage: Stage, whole: bool) -> str:
    """Why a candidate stopped, in words."""
    match candidate.finish:
        case "closed":
            if whole:
                return "finished its answer"
            if stage.close_tag in candidate.raw:
                return "closed its stage"
            return "finished its sentence"
        case "eog":
            return "end of text"
        case "length":
            return "token limit"
        case "cancelled":
            return "stopped"
    return "writing…" if not candidate.finished else ""


def verdict_line(verdict: Verdict) -> str:
    """One verdict, 1-based: ``"Round 1 · 1 vs 3 → 3: <reason>"``; where the judge's
    reason says "response 1" or "response 2" it names the candidate, as its column does."""
    line = (f"Round {verdict.round + 1} · {verdict.first + 1} vs {verdict.second + 1} "
            f"→ {verdict.winner + 1}")
    reason = name_candidates(" ".join(verdict.reason.split()), verdict.first, verdict.second)
    if reason:
        line += f": {reason}"
    if verdict.forced:
        line += f" {FORCED_NOTE}"
    if verdict.unread:
        line += f" {UNREAD_NOTE}"
    return line


def why_lines(segment: SegmentView, select: str | None) -> list[str]:
    """Why ``segment``'s winner won (or how it will be chosen), as short lines."""
    n = len(segment.candidates)
    if n < 2:
        return []
    chosen_by = SELECTIONS.find(select)
    if chosen_by is not None and not chosen_by.pairwise:
        return _score_lines(segment, chosen_by) + _trust_lines(segment, chosen_by)
    lines = []
    for check in segment.checks:
        verb = "passed" if check.correct else "failed"
        lines.append(f"Candidate {check.candidate + 1} {verb} the correctness check "
                     "(the model's own)")
    lines += [verdict_line(v) for v in sorted(segment.verdicts, key=lambda v: v.round)]
    if segment.chosen is None:
        if segment.n_comparisons and len(segment.verdicts) < segment.n_comparisons:
            lines.append(f"Judging: {len(segment.verdicts)} of "
                         f"{plural(segment.n_comparisons, 'comparison')} done")
        elif not lines:
            lines.append("The judge compares the candidates in pairs once they are written.")
    elif not segment.verdicts:
        lines.append(f"Candidate {segment.chosen + 1} was kept.")
    return lines + _trust_lines(segment, chosen_by)


def _trust_lines(segment: SegmentView, chosen_by: Selection | None) -> list[str]:
    """Under a chosen segment's reasons: whose judgement they are, and how reliable that
    selection has measured (the model's verdicts are its own words, not facts)."""
    if segment.chosen is None or chosen_by is None:
        return []
    line = selection_reliability(chosen_by.name)
    if chosen_by.pairwise and (segment.verdicts or segment.checks):
        line = ("The checks and verdicts are the model judging its own candidates, in its "
                "own words; a reason may contradict what a candidate says. " + line)
    return [line]


def retrace_lines(segment: SegmentView) -> list[str]:
    """Retrace: the selection's scores of a candidate set, and whether the search went
    back."""
    if segment.chosen is None:
        return ["Each candidate is scored once all are written; the best-scored ones go on."]
    scores = ", ".join(f"{k + 1}: {score:.3g}" for k, score in enumerate(segment.scores))
    lines = [f"Scores {scores}; candidate {segment.chosen + 1} scored best"]
    if segment.retraced is not None:
        r = segment.retraced
        lines.append(f"Retraced after pass {r.pass_no + 1}: the second-best reasoning so far "
                     f"scored {r.second_best:.3g}, not above the cutoff {r.cutoff:.3g}, so new "
                     "captions were sampled")
    return lines


def _score_lines(segment: SegmentView, chosen_by: Selection) -> list[str]:
    """A pointwise selection's scores: the winner's against the others'."""
    scores = [c.score for c in segment.candidates]
    if segment.chosen is None:
        return [f"The candidate with the highest {chosen_by.score_label} is kept "
                "once all are written."]
    best = scores[segment.chosen]
    others = sorted((s for i, s in enumerate(scores) if i != segment.chosen and s is not None),
                    reverse=True)
    if best is None:
        return [f"Candidate {segment.chosen + 1} was kept."]
    line = f"Highest {chosen_by.score_label}: {_score(chosen_by, best)}"
    if others:
        line += " vs " + ", ".join(_score(chosen_by, s) for s in others)
    return [line]


def _score(chosen_by: Selection, score: float) -> str:
    """A score as its selection writes it, with a true minus sign."""
    return chosen_by.format_score(score).lstrip("+").replace("-", "\u2212")


def chosen_first(columns: list[CandidateColumn],
                 segment: SegmentView | None) -> list[CandidateColumn]:
    """``columns`` (in candidate order) with the chosen candidate's moved to the front."""
    if segment is None or segment.chosen is None or segment.chosen >= len(columns):
        return list(columns)
    chosen = columns[segment.chosen]
    return [chosen] + [c for c in columns if c is not chosen]


# --------------------------------------------------------------------------------------------
# Columns


class CandidateColumn(QWidget):
    """One candidate: "Candidate 2", a Chosen badge if it won, its text and a footer."""

    def __init__(self, number: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumWidth(COLUMN_MIN_WIDTH)
        self.setMaximumWidth(COLUMN_MAX_WIDTH)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        top = QHBoxLayout()
        top.setSpacing(6)
        self.header = QLabel(self)
        self.header.setFont(bold_font(self, 0.95))
        self.badge = Chip("Chosen", self, accent=True)
        self.badge.setToolTip("This candidate was kept; the next step continues from it.")
        self.badge.hide()
        top.addWidget(self.header)
        top.addWidget(self.badge)
        top.addStretch(1)
        layout.addLayout(top)
        self.text = GrowingText(self, placeholder="Nothing written yet.")
        self.text.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # the grid is the Tab stop
        layout.addWidget(self.text)
        self.footer = muted_label("", self)
        layout.addWidget(self.footer)
        self.number = -1
        self.set_number(number)

    def set_number(self, number: int) -> None:
        """Show this column as candidate ``number`` (1-based)."""
        if number == self.number:
            return
        self.number = number
        self.header.setText(f"Candidate {number}")
        self.text.setAccessibleName(f"Candidate {number} text")

    @property
    def chosen(self) -> bool:
        return not self.badge.isHidden()

    def show_candidate(self, segment: SegmentView, candidate: CandidateView, stage: Stage,
                       select: str | None) -> None:
        self.set_number(candidate.index + 1)
        self.text.set_text(segment.content(candidate, stage))
        self.badge.setHidden(not candidate.won)
        parts = []
        if candidate.finished:
            parts.append(plural(candidate.n_tokens, "token"))
            if candidate.mean_logprob is not None:
                parts.append(f"mean log-prob {signed(candidate.mean_logprob)}")
            finish = finish_text(candidate, stage, segment.whole)
            if finish:
                parts.append(finish)
            chosen_by = SELECTIONS.find(select)
            if chosen_by is not None and not chosen_by.pairwise and candidate.score is not None:
                parts.append(f"score {_score(chosen_by, candidate.score)}")
        else:
            parts.append("writing…")
        footer = " · ".join(parts)
        if footer != self.footer.text():
            self.footer.setText(footer)


class CandidateGrid(QWidget):
    """The columns in rows that reflow to the width (never wider than it: no sideways
    scrolling), and one keyboard stop that steps through them.

    Tab comes in on the current candidate (the chosen one, first, until the user steps);
    Left/Right, Page Up/Page Down step one candidate, Up/Down one row, Home/End go to the
    ends; the current candidate is framed while the grid has the focus and is scrolled into
    view.

    Signals:
        current_changed(int): the user stepped to another candidate (its 1-based number).
    """

    current_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._order: list[CandidateColumn] = []
        self._current = 0
        self._per_row = 1
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setAccessibleName("Candidates")

    # -- reading ---------------------------------------------------------------------------

    def order(self) -> list[CandidateColumn]:
        """The columns as shown: left to right, then row by row."""
        return list(self._order)

    def current(self) -> CandidateColumn | None:
        """The candidate the keyboard is on."""
        return self._order[self._current] if self._order else None

    def per_row(self) -> int:
        return self._per_row

    # -- updating --------------------------------------------------------------------------

    def set_order(self, columns: list[CandidateColumn]) -> None:
        """Show ``columns`` in this order; the keyboard stays on its candidate while the
        grid has the focus, else goes back to the first."""
        if columns == self._order:
            return
        current = self.current()
        for column in columns:
            if column not in self._order:
                column.installEventFilter(self)
        self._order = list(columns)
        keep = self.hasFocus() and current in self._order
        self._current = self._order.index(current) if keep else 0
        self._place()

    def step(self, by: int) -> None:
        """Move the keyboard ``by`` candidates (clamped to the ends)."""
        self.set_current(self._current + by)

    def set_current(self, position: int) -> None:
        """Put the keyboard on the candidate shown at ``position`` (0-based, clamped)."""
        if not self._order:
            return
        position = min(max(position, 0), len(self._order) - 1)
        changed = position != self._current
        self._current = position
        self._announce()
        self._bring_into_view()
        self.update()
        if changed:
            self.current_changed.emit(self._order[position].number)

    # -- events ----------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        steps = {Qt.Key.Key_Right: 1, Qt.Key.Key_Left: -1, Qt.Key.Key_PageDown: 1,
                 Qt.Key.Key_PageUp: -1, Qt.Key.Key_Down: self._per_row,
                 Qt.Key.Key_Up: -self._per_row}
        key = Qt.Key(event.key())
        if key in steps and event.modifiers() == Qt.KeyboardModifier.NoModifier:
            self.step(steps[key])
        elif key is Qt.Key.Key_Home:
            self.set_current(0)
        elif key is Qt.Key.Key_End:
            self.set_current(len(self._order) - 1)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def focusInEvent(self, event: QFocusEvent) -> None:
        super().focusInEvent(event)
        self.set_current(self._current)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        super().focusOutEvent(event)
        self.update()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched in self._order and event.type() == QEvent.Type.LayoutRequest:
            self._place()  # a column's text grew: rows move
        return super().eventFilter(watched, event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place()

    def minimumSizeHint(self) -> QSize:
        return QSize(COLUMN_MIN_WIDTH + 2 * GRID_MARGIN, self.height())

    def sizeHint(self) -> QSize:
        return self.minimumSizeHint()

    def paintEvent(self, event: QPaintEvent) -> None:
        column = self.current()
        if not self.hasFocus() or column is None:
            return
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(self.palette().color(QPalette.ColorRole.Highlight), 2))
        frame = QRectF(column.geometry()).adjusted(-FOCUS_PAD, -FOCUS_PAD, FOCUS_PAD, FOCUS_PAD)
        painter.drawRoundedRect(frame, 6, 6)
        painter.end()

    # -- internals -------------------------------------------------------------------------

    def _place(self) -> None:
        """Lay the columns out in rows of as many as fit the width; fix the height."""
        width = self.width() - 2 * GRID_MARGIN
        self._per_row = max(1, (width + GRID_SPACING) // (COLUMN_MIN_WIDTH + GRID_SPACING))
        n = max(min(self._per_row, len(self._order)), 1)
        column_width = min((width - (n - 1) * GRID_SPACING) // n, COLUMN_MAX_WIDTH)
        y = GRID_MARGIN
        for start in range(0, len(self._order), self._per_row):
            row = self._order[start:start + self._per_row]
            heights = [self._height_of(column, column_width) for column in row]
            for k, column in enumerate(row):
                x = GRID_MARGIN + k * (column_width + GRID_SPACING)
                column.setGeometry(x, y, column_width, heights[k])
            y += max(heights) + GRID_SPACING
        height = (y - GRID_SPACING if self._order else y) + GRID_MARGIN
        if self.minimumHeight() != height or self.maximumHeight() != height:
            self.setFixedHeight(height)
        self.update()

    @staticmethod
    def _height_of(column: CandidateColumn, width: int) -> int:
        layout = column.layout()
        if layout is not None and layout.hasHeightForWidth():
            return layout.totalHeightForWidth(width)
        return column.sizeHint().height()

    def _announce(self) -> None:
        column = self.current()
        if column is None:
            return
        chosen = ", chosen" if column.chosen else ""
        self.setAccessibleDescription(
            f"Candidate {column.number}{chosen}: {self._current + 1} of {len(self._order)}. "
            "Arrow keys step through the candidates.")

    def _bring_into_view(self) -> None:
        """Scroll the enclosing view (the stage cards') to the current candidate."""
        column = self.current()
        area = self.parentWidget()
        while area is not None and not isinstance(area, QScrollArea):
            area = area.parentWidget()
        if column is not None and area is not None and self.hasFocus():
            area.ensureWidgetVisible(column, 0, FOCUS_PAD + 4)


# --------------------------------------------------------------------------------------------
# The view


class CandidatesView(QWidget):
    """A stage's candidates for one segment, side by side, and why the winner won.

    Signals:
        segment_changed(int): the user stepped to another segment (0-based within the stage).
    """

    segment_changed = Signal(int)

    def __init__(self, stage: Stage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.stage = stage
        self._view: StageView | None = None
        self._select: str | None = None
        self._strategy: str | None = None
        self._index = 0
        self._follow = True  # show the latest segment as new ones start
        self._columns: list[CandidateColumn] = []

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.setSpacing(8)

        self.stepper = QWidget(self)
        step = QHBoxLayout(self.stepper)
        step.setContentsMargins(0, 0, 0, 0)
        step.setSpacing(4)
        self.previous_button = QToolButton(self.stepper)
        self.previous_button.setArrowType(Qt.ArrowType.LeftArrow)
        self.previous_button.setAutoRaise(True)
        self.previous_button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.previous_button.clicked.connect(lambda: self.set_segment_index(self._index - 1))
        self.next_button = QToolButton(self.stepper)
        self.next_button.setArrowType(Qt.ArrowType.RightArrow)
        self.next_button.setAutoRaise(True)
        self.next_button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.next_button.clicked.connect(lambda: self.set_segment_index(self._index + 1))
        self.segment_label = muted_label("", self.stepper)
        self.segment_label.setWordWrap(False)
        step.addWidget(self.previous_button)
        step.addWidget(self.segment_label)
        step.addWidget(self.next_button)
        step.addStretch(1)
        self.stepper.hide()
        layout.addWidget(self.stepper)

        self.grid = CandidateGrid(self)
        layout.addWidget(self.grid)

        self.why_title = muted_label("Why it won", self)
        self.why_title.setFont(bold_font(self, 0.9))
        layout.addWidget(self.why_title)
        self.why = GrowingText(self, muted=True)
        self.why.setAccessibleName(f"Why the {stage.title.lower()} candidate won")
        layout.addWidget(self.why)
        self._set_unit_words("Segment")

    # -- reading (tests, the card) ---------------------------------------------------------

    def columns(self) -> list[CandidateColumn]:
        """The columns shown, in candidate order."""
        return [c for c in self._columns if not c.isHidden()]

    def shown_order(self) -> list[CandidateColumn]:
        """The columns shown, in the order they stand: the chosen one first."""
        return self.grid.order()

    def segment_index(self) -> int:
        """The segment shown, 0-based among the stage's segments."""
        return self._index

    def segment(self) -> SegmentView | None:
        if self._view is None or not self._view.segments:
            return None
        return self._view.segments[self._index]

    def why_text(self) -> str:
        return self.why.text()

    # -- updating --------------------------------------------------------------------------

    def show_stage(self, view: StageView, select: str | None = None,
                   strategy: str | None = None) -> None:
        """Show ``view``'s segments (cheap to call again as candidates stream)."""
        if view is not self._view:
            self._follow = True
        self._view, self._select, self._strategy = view, select, strategy
        n = len(view.segments)
        if self._follow or self._index >= n:
            self._index = max(n - 1, 0)
            self._follow = True
        self._render()

    def set_segment_index(self, index: int) -> None:
        """Show the stage's segment ``index`` (0-based; clamped)."""
        n = len(self._view.segments) if self._view is not None else 0
        index = min(max(index, 0), max(n - 1, 0))
        self._follow = index == n - 1
        if index != self._index:
            self._index = index
            self._render()
            self.segment_changed.emit(index)

    def _set_unit_words(self, word: str) -> None:
        self._unit = word
        self.previous_button.setAccessibleName(f"Previous {word.lower()}")
        self.previous_button.setToolTip(f"Show the previous {word.lower()}'s candidates")
        self.next_button.setAccessibleName(f"Next {word.lower()}")
        self.next_button.setToolTip(f"Show the next {word.lower()}'s candidates")

    def _render(self) -> None:
        view = self._view
        segments = view.segments if view is not None else []
        strategy = STRATEGIES.find(self._strategy)
        word = strategy.segment_word if strategy is not None else "Segment"
        if word != self._unit:
            self._set_unit_words(word)
        many = len(segments) > 1
        self.stepper.setVisible(many)
        if many:
            label = f"{word} {self._index + 1} of {len(segments)}"
            if label != self.segment_label.text():
                self.segment_label.setText(label)
            self.previous_button.setEnabled(self._index > 0)
            self.next_button.setEnabled(self._index < len(segments) - 1)
        segment = segments[self._index] if segments else None
        candidates = segment.candidates if segment is not None else []
        while len(self._columns) < len(candidates):
            column = CandidateColumn(len(self._columns) + 1, self.grid)
            self._columns.append(column)
        for k, column in enumerate(self._columns):
            if k < len(candidates) and segment is not None:
                column.show_candidate(segment, candidates[k], self.stage, self._select)
                column.setHidden(False)
            elif not column.isHidden():
                column.hide()
        self.grid.set_order(chosen_first(self._columns[:len(candidates)], segment))
        if segment is None:
            lines = []
        elif strategy is not None and strategy.keeps_best:
            lines = retrace_lines(segment)
        else:
            lines = why_lines(segment, self._select)
        title = "Why it won" if segment is not None and segment.chosen is not None \
            else "How one is chosen"
        if title != self.why_title.text():
            self.why_title.setText(title)
        self.why_title.setVisible(bool(lines))
        self.why.setVisible(bool(lines))
        self.why.set_text("\n".join(lines))
