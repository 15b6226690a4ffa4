"""CSV seed tables of the normalization package (a package so that wheels ship the CSV files)."""
