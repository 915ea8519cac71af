"""Tools the model can call: registration, schemas, safe execution, built-ins."""
