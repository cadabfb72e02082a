"""`alarm serve`: an OpenAI-compatible chat-completions server for audio questions."""

from alarm.serving.app import ServedModel, create_app
from alarm.serving.protocol import ApiError, ServerLimits, parse_request

__all__ = ["ApiError", "ServedModel", "ServerLimits", "create_app", "parse_request"]
