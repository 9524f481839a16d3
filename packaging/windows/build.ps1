# Build the Windows bundle: a one-folder PyInstaller build (stagewise.exe for the command
# line, Stagewise.exe windowed) and an installer made with Inno Setup 6.
#
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1 [-Out dist]
#
# Needs Python 3.11+, Visual Studio Build Tools (C++; llama-cpp-python compiles llama.cpp)
# and Inno Setup 6 (iscc.exe on PATH). llama.cpp is compiled for any x86-64 CPU
# (GGML_NATIVE=OFF). For CUDA: set $env:CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_CUDA=on".
# NOT YET RUN: no Windows machine was available; see packaging/README.md.
param([string]$Out = "dist")
$ErrorActionPreference = "Stop"
$Root = Resolve-Path (Join-Path $PSScriptRoot "..\..")
Set-Location $Root
$Version = python -c "import tomllib; print(tomllib.load(open('pyproject.toml','rb'))['project']['version'])"
$Llama = python -c "import tomllib; print(next(d for d in tomllib.load(open('pyproject.toml','rb'))['project']['dependencies'] if d.startswith('llama-cpp-python')))"

# a fresh venv, and pip's wheel cache off: pip keys cached wheels by version alone and would
# hand back a native build of llama.cpp made by an earlier `pip install -e .`
python -m venv --clear build\bundle-venv
$Py = "build\bundle-venv\Scripts\python.exe"
if (-not $env:CMAKE_ARGS) { $env:CMAKE_ARGS = "-DGGML_NATIVE=OFF" }
& $Py -m pip install -q --no-cache-dir --no-binary llama-cpp-python $Llama
& $Py -m pip install -q . "pyinstaller>=6.10,<7"
& $Py packaging\make_icons.py
& $Py -m PyInstaller --noconfirm --clean --log-level WARN --distpath "$Out\pyinstaller" `
    --workpath build\pyinstaller packaging\stagewise.spec
if ($LASTEXITCODE -ne 0) { throw "PyInstaller failed" }

# The self-test from the built folder, before packaging it.
$env:QT_QPA_PLATFORM = "offscreen"
& "$Out\pyinstaller\stagewise\stagewise.exe" --self-test --screenshot "$Out\self-test-windows.png"
if ($LASTEXITCODE -ne 0) { throw "the self-test failed" }
Remove-Item Env:\QT_QPA_PLATFORM

iscc /Q "/DVersion=$Version" "/DSource=$Root\$Out\pyinstaller\stagewise" "/O$Root\$Out" `
    packaging\windows\stagewise.iss
if ($LASTEXITCODE -ne 0) { throw "Inno Setup failed" }
Write-Output "$Out\stagewise-$Version-windows-x64-setup.exe"
