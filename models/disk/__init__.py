"""The app's folders and safe writes: below everything else in the core (no imports of it)."""
