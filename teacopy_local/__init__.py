"""Local engine: emulated AWS (moto), a TEA emulator, and the demo runner."""
