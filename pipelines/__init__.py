"""reprozoo's verbs: each reads params.yaml, does one thing, and writes the outputs dvc.yaml declares."""
