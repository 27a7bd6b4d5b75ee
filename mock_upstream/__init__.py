"""The bundled OpenAI-compatible mock upstream (``pulse-mock``); see ``mock_upstream.app``."""
