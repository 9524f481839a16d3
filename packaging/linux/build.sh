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
source packaging/common.sh
build_pyinstaller "$OUT" "-DGGML_NATIVE=OFF"

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
