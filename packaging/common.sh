# Shared by packaging/linux/build.sh and packaging/macos/build.sh (sourced, not run).
#
# build_pyinstaller OUT DEFAULT_CMAKE_ARGS
#   Sets VERSION, then builds the one-folder bundle into OUT/pyinstaller. PYTHON may name
#   a Python that already has Stagewise, a portable llama-cpp-python and PyInstaller;
#   otherwise a fresh virtual environment is made in build/bundle-venv, with the
#   llama-cpp-python wheel from portable_llama_wheel.

VERSION=$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")

# portable_llama_wheel REQUIREMENT CMAKE_ARGS
#   Prints the path of a llama-cpp-python wheel compiled with exactly these CMake flags.
#   pip's own wheel cache cannot be used: it keys wheels by version alone, so after the
#   README's `pip install -e .` it hands back the build machine's native build (with AMX
#   on a Xeon, say) whatever CMAKE_ARGS says. Wheels are kept in build/llama-wheels/,
#   one folder per requirement and flags, and compiled with pip's cache off.
portable_llama_wheel() {
    local requirement=$1 cmake_args=$2 key folder
    key=$(printf '%s\n%s\n' "$requirement" "$cmake_args" | sha256sum | cut -c1-16)
    folder=build/llama-wheels/$key
    if ! ls "$folder"/llama_cpp_python-*.whl >/dev/null 2>&1; then
        echo "compiling $requirement with CMAKE_ARGS=\"$cmake_args\" (several minutes)" >&2
        rm -rf "$folder.partial"
        mkdir -p "$folder.partial"
        CMAKE_ARGS="$cmake_args" python3 -m pip wheel -q --no-cache-dir --no-deps \
            --no-binary llama-cpp-python -w "$folder.partial" "$requirement" >&2
        printf '%s\n' "$cmake_args" > "$folder.partial/CMAKE_ARGS"
        rm -rf "$folder"
        mv "$folder.partial" "$folder"
    fi
    ls "$folder"/llama_cpp_python-*.whl
}

build_pyinstaller() {
    local out=$1 default_cmake=$2
    if [ -z "${PYTHON:-}" ]; then
        local llama wheel
        llama=$(python3 -c "import tomllib; print(next(d for d in tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'] if d.startswith('llama-cpp-python')))")
        wheel=$(portable_llama_wheel "$llama" "${CMAKE_ARGS:-$default_cmake}")
        python3 -m venv --clear build/bundle-venv
        PYTHON=build/bundle-venv/bin/python
        # setuptools builds in build/lib and keeps what an older layout left there
        rm -rf build/lib build/bdist.*
        "$PYTHON" -m pip install -q "$wheel" . "pyinstaller>=6.10,<7"
    fi
    "$PYTHON" packaging/make_icons.py
    "$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
        --distpath "$out/pyinstaller" --workpath build/pyinstaller packaging/stagewise.spec
}
