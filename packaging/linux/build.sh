#!/usr/bin/env bash
# Build the Linux bundle: a one-folder PyInstaller build, a .tar.gz of it, and a .deb.
#
#   packaging/linux/build.sh [OUT]        (default OUT: dist/)
#
# PYTHON may name a Python that already has Stagewise, a portable llama-cpp-python and
# PyInstaller installed; otherwise a fresh virtual environment is made in build/, with
# llama.cpp compiled for any x86-64 CPU (GGML_NATIVE=OFF), not only this machine's.
# For a CUDA bundle, set CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CUDA=on" (needs the CUDA
# toolkit; the bundle then needs the NVIDIA driver on the target machine).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)
cd "$ROOT"
VERSION=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
LLAMA=$(python3 -c "import tomllib; print(next(d for d in tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'] if d.startswith('llama-cpp-python')))")

if [ -z "${PYTHON:-}" ]; then
    python3 -m venv build/bundle-venv
    PYTHON=build/bundle-venv/bin/python
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$PYTHON" -m pip install -q \
        --no-binary llama-cpp-python "$LLAMA"
    "$PYTHON" -m pip install -q . "pyinstaller>=6.10,<7"
fi

"$PYTHON" packaging/make_icons.py
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$OUT/pyinstaller" --workpath build/pyinstaller packaging/stagewise.spec

NAME="stagewise-$VERSION-linux-x86_64"
tar -C "$OUT/pyinstaller" -czf "$OUT/$NAME.tar.gz" stagewise

PKG=$(mktemp -d)
trap 'rm -rf "$PKG"' EXIT
mkdir -p "$PKG/DEBIAN" "$PKG/opt" "$PKG/usr/bin" "$PKG/usr/share/applications" \
         "$PKG/usr/share/icons/hicolor/256x256/apps"
cp -a "$OUT/pyinstaller/stagewise" "$PKG/opt/stagewise"
ln -s /opt/stagewise/stagewise "$PKG/usr/bin/stagewise"
install -m 644 packaging/linux/stagewise.desktop "$PKG/usr/share/applications/"
install -m 644 packaging/icons/stagewise.png "$PKG/usr/share/icons/hicolor/256x256/apps/"
SIZE=$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
sed -e "s/@VERSION@/$VERSION/" -e "s/@SIZE@/$SIZE/" packaging/linux/control.in \
    > "$PKG/DEBIAN/control"
fakeroot dpkg-deb --build -Zxz "$PKG" "$OUT/stagewise_${VERSION}_amd64.deb" >/dev/null

echo "$OUT/$NAME.tar.gz"
echo "$OUT/stagewise_${VERSION}_amd64.deb"
