"""Embedded default data: procedurally drawn faces (no FER2013 needed)."""
