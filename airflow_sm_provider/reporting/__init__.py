"""Pure comparison report of a sweep's runs: the model (records in, records out) and its renderers."""
