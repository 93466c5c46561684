"""A mock upstream model server speaking the OpenAI, Anthropic and Jina (rerank) protocols,
for tests, `queue-service dev` and benchmarks. Requests steer it with a `"mock"` object in the body
(see `MockControls`)."""

from .app import create_mock_app
from .config import MockConfig
from .controls import MockControls, ToolCallControl
from .recording import RecordedRequest

__all__ = ["MockConfig", "MockControls", "RecordedRequest", "ToolCallControl", "create_mock_app"]
