"""`alarm serve`: an OpenAI-compatible chat-completions server for audio questions, with a batched engine."""

from alarm.serving.app import Drain, ServedModel, create_app
from alarm.serving.engine import BatchEngine, EngineConfig, QueueFull
from alarm.serving.protocol import ApiError, ChatCompletionRequest, ServerLimits, parse_request, to_query

__all__ = [
    "ApiError",
    "BatchEngine",
    "ChatCompletionRequest",
    "Drain",
    "EngineConfig",
    "QueueFull",
    "ServedModel",
    "ServerLimits",
    "create_app",
    "parse_request",
    "to_query",
]
