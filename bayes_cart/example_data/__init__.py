"""The bundled virtual CAR-T meta-analysis (see README.md in this folder)."""
