"""What every layer needs: errors, the rules for values and names, the machine (devices, memory, seeds); the version."""

__version__ = "0.1.0"
