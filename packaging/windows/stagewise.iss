; Inno Setup 6 script for Stagewise. build.ps1 passes Version, Source (the PyInstaller
; folder) and the output folder. Installs per user by default (no administrator rights).
#ifndef Version
  #define Version "0.0.0"
#endif

[Setup]
AppId={{6C1B2F7E-3D0A-4C55-9C7B-5A4E2D3F1B90}
AppName=Stagewise
AppVersion={#Version}
AppPublisher=Stagewise developers
DefaultDirName={autopf}\Stagewise
DefaultGroupName=Stagewise
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputBaseFilename=stagewise-{#Version}-windows-x64-setup
SetupIconFile=..\icons\stagewise.ico
UninstallDisplayIcon={app}\Stagewise.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Files]
Source: "{#Source}\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\Stagewise"; Filename: "{app}\Stagewise.exe"
Name: "{autodesktop}\Stagewise"; Filename: "{app}\Stagewise.exe"; Tasks: desktopicon

[Tasks]
Name: "desktopicon"; Description: "Create a desktop icon"; Flags: unchecked

[Run]
Filename: "{app}\Stagewise.exe"; Description: "Start Stagewise"; Flags: nowait postinstall skipifsilent
