"""What crosses a boundary: named errors, environment names, event and result shapes, settings, staging layout."""
