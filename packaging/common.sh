# Shared by packaging/linux/build.sh and packaging/macos/build.sh (sourced, not run).
#
# build_pyinstaller OUT DEFAULT_CMAKE_ARGS
#   Sets VERSION, then builds the one-folder bundle into OUT/pyinstaller. PYTHON may name
#   a Python that already has Stagewise, a portable llama-cpp-python and PyInstaller;
#   otherwise a virtual environment is made in build/bundle-venv and llama-cpp-python is
#   compiled there with CMAKE_ARGS (default: DEFAULT_CMAKE_ARGS).

VERSION=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")

build_pyinstaller() {
    local out=$1 default_cmake=$2
    if [ -z "${PYTHON:-}" ]; then
        local llama
        llama=$(python3 -c "import tomllib; print(next(d for d in tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'] if d.startswith('llama-cpp-python')))")
        python3 -m venv build/bundle-venv
        PYTHON=build/bundle-venv/bin/python
        CMAKE_ARGS="${CMAKE_ARGS:-$default_cmake}" "$PYTHON" -m pip install -q \
            --no-binary llama-cpp-python "$llama"
        "$PYTHON" -m pip install -q . "pyinstaller>=6.10,<7"
    fi
    "$PYTHON" packaging/make_icons.py
    "$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
        --distpath "$out/pyinstaller" --workpath build/pyinstaller packaging/stagewise.spec
}
