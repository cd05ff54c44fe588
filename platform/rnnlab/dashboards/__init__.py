"""Plotly dashboards: one info/plot pair per figure, pages, and writing them."""
