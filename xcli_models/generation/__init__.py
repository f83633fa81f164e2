"""Text generation: prefill / decode step / search strategies / logits processors / stop conditions.

``generate(model, input_ids, ...)`` (or ``model.generate(...)``) is the entry point; see
``engine`` for the phases, ``adapters`` for how each family is driven, ``search`` for the
strategies, ``processors`` and ``stopping`` for what shapes and ends a sequence, ``config``
for where settings come from and ``streaming`` for text as it is generated
(``xcli_models.kernels`` for how a CPU decode step streams its weights).
"""

from .adapters import Adapter, adapter_for
from .config import GenerationConfig, model_defaults
from .engine import GenerateOutput, generate
from .streaming import TextStream

__all__ = ["Adapter", "GenerateOutput", "GenerationConfig", "TextStream", "adapter_for", "generate", "model_defaults"]
