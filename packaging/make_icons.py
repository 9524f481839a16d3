"""Draw Stagewise's icon: four stacked stage bars, the last one the answer.

``python packaging/make_icons.py`` writes ``packaging/icons/stagewise.png`` (256 px, the
Linux icon) and, for the Windows and macOS builds, ``stagewise.ico`` and ``stagewise.icns``.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ICONS = Path(__file__).parent / "icons"
STAGE_COLOURS = ("#5b8def", "#43b58a", "#e0a43a", "#d9534f")  # summary … conclusion


def draw_icon(size: int = 1024) -> Image.Image:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    margin, radius = size // 16, size // 6
    draw.rounded_rectangle((margin, margin, size - margin, size - margin), radius,
                           fill="#1f2430")
    left, width = size // 5, size * 3 // 5
    bar, gap = size // 9, size // 18
    top = (size - 4 * bar - 3 * gap) // 2
    for i, colour in enumerate(STAGE_COLOURS):
        y = top + i * (bar + gap)
        length = width if i == 3 else width * (6 - i) // 7
        draw.rounded_rectangle((left + i * size // 40, y, left + length, y + bar), bar // 2,
                               fill=colour)
    return image


def main() -> None:
    ICONS.mkdir(exist_ok=True)
    icon = draw_icon()
    icon.resize((256, 256), Image.Resampling.LANCZOS).save(ICONS / "stagewise.png")
    icon.save(ICONS / "stagewise.ico", sizes=[(16, 16), (32, 32), (48, 48), (256, 256)])
    icon.save(ICONS / "stagewise.icns")


if __name__ == "__main__":
    main()
