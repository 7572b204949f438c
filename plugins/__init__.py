"""Built-in cell plugins. Each module registers its cells through the same hook as a third-party plugin."""
