"""Report renderers: turn packet and flow tables into text, JSON, CSV, Parquet and more."""
