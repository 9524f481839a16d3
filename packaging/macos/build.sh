#!/usr/bin/env bash
# Build the macOS bundle: Stagewise.app (PyInstaller) in a .dmg, signed and notarized
# when the signing variables are set.
#
#   packaging/macos/build.sh [OUT]        (default OUT: dist/)
#
# On Apple silicon llama.cpp is built with Metal (on by default on arm64 macOS);
# GGML_NATIVE=OFF keeps it to the baseline of the architecture.
# Signing (optional): CODESIGN_IDENTITY="Developer ID Application: …"; notarizing also
# needs NOTARY_PROFILE (a `xcrun notarytool store-credentials` profile).
# The entitlements (entitlements.plist) let the hardened runtime load the bundled
# libraries (Python's, Qt's, llama.cpp's: signed by us, not by Apple) and let Python's
# ctypes make the callbacks llama.cpp calls (progress, logging, abort).
# NOT YET RUN: no Mac was available; see packaging/README.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mkdir -p "${1:-$ROOT/dist}" && cd "${1:-$ROOT/dist}" && pwd)
cd "$ROOT"
source packaging/common.sh
build_pyinstaller "$OUT" "-DGGML_NATIVE=OFF -DGGML_METAL=on"
APP="$OUT/pyinstaller/Stagewise.app"

QT_QPA_PLATFORM=offscreen "$APP/Contents/MacOS/stagewise" --self-test \
    --screenshot "$OUT/self-test-macos.png"

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
    codesign --force --deep --options runtime --timestamp \
        --entitlements packaging/macos/entitlements.plist --sign "$CODESIGN_IDENTITY" "$APP"
    codesign --verify --deep --strict "$APP"
fi

DMG="$OUT/stagewise-$VERSION-macos-$(uname -m).dmg"
rm -f "$DMG"
hdiutil create -volname Stagewise -srcfolder "$APP" -ov -format UDZO "$DMG"
if [ -n "${CODESIGN_IDENTITY:-}" ] && [ -n "${NOTARY_PROFILE:-}" ]; then
    codesign --sign "$CODESIGN_IDENTITY" --timestamp "$DMG"
    xcrun notarytool submit "$DMG" --keychain-profile "$NOTARY_PROFILE" --wait
    xcrun stapler staple "$DMG"
fi
echo "$DMG"
