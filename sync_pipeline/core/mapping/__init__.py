"""Index mappings as values: field fragments, what each search server accepts, and diffs."""
