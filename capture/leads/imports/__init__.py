"""List import: a CSV file read as a stream, each row checked, written in batches."""
