"""AI judges: LLM endpoints, reward models and programmatic checks that vote beside humans."""
