"""File formats. Every file gimtool reads or writes goes through this package."""
