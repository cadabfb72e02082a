"""The transformers backend: a local causal LM, batched, each row sampled with its own generator.

``torch`` is imported when a backend or sampler is made, never at import time, so runs
that only use HTTP never load it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

from alarm.corpus.backends.base import Backend, ChatRequest, Completion, SamplingParams, request_seed
from alarm.modeling.model import cache_argument


class TransformersBackend(Backend):
    """A local causal LM through ``transformers`` ``generate``, batched, seeded per request.

    Requests are batched by ``max_tokens`` and system message, ``batch_size`` at a time; the
    system turn's keys and values are computed once and shared by the rows (the prefix cache,
    ``prefix_cache_size`` system texts kept), each row's own tokens follow after left padding.
    Each row keeps its own temperature / top-p / top-k. Sampling is done per row by :class:`RowSampler`
    with the row's own ``torch.Generator`` seeded from :func:`request_seed`, so a request gets
    the same text alone or in any batch, in any order (what makes resumed and resharded builds
    equal uninterrupted ones). The thinking budget is the two-pass text recipe of
    :func:`complete_with_budget`, the same as the HTTP and vLLM backends. ``num_threads`` sets
    torch's (process-wide) CPU thread count.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "transformers",
        batch_size: int = 8,
        num_threads: int | None = None,
        prefix_cache_size: int = 4,
    ) -> None:
        import torch

        if num_threads:  # process-wide; tiny models run faster and steadier on one thread (PLATFORM-NOTES)
            torch.set_num_threads(int(num_threads))
        self.torch = torch
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = int(batch_size)
        # KV caches of recent system turns (_prefix_cache); 0 turns the reuse off
        self.prefix_cache_size = int(prefix_cache_size)
        self._prefixes: dict[tuple[int, ...], Any] = {}
        from alarm.modeling.tokenizer import has_thinking_mode

        self.thinks = has_thinking_mode(tokenizer)
        self._lock = threading.Lock()  # one generate at a time when served over HTTP

    @classmethod
    def from_name(cls, name: str, **kwargs: Any) -> TransformersBackend:
        """A preset name (its RLM, e.g. the seeded tiny Qwen3 of ``tiny-al-whisper-r``) or a model path/id."""
        from alarm.presets import list_presets, preset_config

        if name in list_presets():
            from alarm.modeling.model import build_language_model
            from alarm.modeling.tokenizer import load_tokenizer

            config = preset_config(name)
            return cls(build_language_model(config), load_tokenizer(config.tokenizer_name), name=name, **kwargs)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(name)
        return cls(model, AutoTokenizer.from_pretrained(name), name=name, **kwargs)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out: list[Completion | None] = [None] * len(requests)
        groups: dict[tuple[int, str], list[int]] = {}
        for i, r in enumerate(requests):
            # One max_tokens per batch (no row generates past its own limit) and one system
            # message per batch (the rows share its cached keys and values).
            groups.setdefault((r.params.max_tokens, _system_text(r)), []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                for i, c in zip(chunk, self._batch([requests[i] for i in chunk])):
                    out[i] = c
        return [c for c in out if c is not None]

    def _batch(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        torch = self.torch
        tok = self.tokenizer
        ids = []
        for r in requests:
            text = tok.apply_chat_template(list(r.messages), add_generation_prompt=True, tokenize=False)
            text += r.assistant_text
            ids.append(tok(text, add_special_tokens=False).input_ids)
        shared = self._shared_prefix(requests[0], ids)
        rest = [x[len(shared) :] for x in ids]
        width = max(map(len, rest))
        eos = int(tok.eos_token_id)
        pad = int(tok.pad_token_id if tok.pad_token_id is not None else eos)
        device = self.model.device
        # (B, P + S): the shared prefix, then each row's own tokens right-aligned after padding.
        # Positions come from the mask, so a row's tokens sit where they would without padding.
        input_ids = torch.tensor([shared + [pad] * (width - len(x)) + x for x in rest], device=device)
        mask = torch.tensor([[1] * len(shared) + [0] * (width - len(x)) + [1] * len(x) for x in rest], device=device)
        sampler = RowSampler([r.params for r in requests], [request_seed(r) for r in requests], device)
        with self._lock, torch.no_grad():
            cache = self._prefix_cache(shared, len(requests)) if shared else None
            generated = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=requests[0].params.max_tokens,
                logits_processor=[sampler],  # it samples; generate's greedy step then takes its one token
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                eos_token_id=eos,
                pad_token_id=pad,
                **({cache_argument(self.model): cache} if cache is not None else {}),
            )[:, input_ids.shape[1] :].tolist()  # (B, new)
        out = []
        for row in generated:
            finished = eos in row
            body = row[: row.index(eos)] if finished else row
            text = tok.decode(body, skip_special_tokens=False)
            out.append(Completion(text, "stop" if finished else "length", len(body) + finished))
        return out

    def _shared_prefix(self, request: ChatRequest, ids: Sequence[list[int]]) -> list[int]:
        """The token ids of the batch's system turn, when every row starts with them (else none).

        Every instruction of the pipeline is a constant system text (instructions.py), some
        200 tokens, against a user turn of a few dozen: the prompt's forward pass over a batch
        is mostly the same system text again and again. It is computed once and reused. The
        prefix is a function of the request alone (its system message), never of the batch,
        so a row's text stays the same alone or in any batch.
        """
        system = request.messages[0] if request.messages and request.messages[0].get("role") == "system" else None
        if system is None or not self.prefix_cache_size:
            return []
        text = self.tokenizer.apply_chat_template([system], tokenize=False)
        prefix = self.tokenizer(text, add_special_tokens=False).input_ids
        # A prefix whose last token merges with what follows in the full text cannot be reused.
        if not prefix or any(x[: len(prefix)] != prefix or len(x) <= len(prefix) for x in ids):
            return []
        return prefix

    def _prefix_cache(self, prefix: list[int], batch: int) -> Any:
        """The keys and values of ``prefix``, computed once per distinct prefix, copied for ``batch`` rows."""
        key = tuple(prefix)
        if key not in self._prefixes:
            if len(self._prefixes) >= self.prefix_cache_size:
                self._prefixes.pop(next(iter(self._prefixes)))  # the oldest: stages run one after another
            out = self.model(input_ids=self.torch.tensor([prefix], device=self.model.device), use_cache=True)
            self._prefixes[key] = out[cache_argument(self.model)]
        cache = copy.deepcopy(self._prefixes[key])  # generate appends to the cache it is given
        cache.batch_repeat_interleave(batch)
        return cache

    def describe(self) -> dict[str, Any]:
        return {"backend": "transformers", "model": self.name}


def _system_text(request: ChatRequest) -> str:
    first = request.messages[0] if request.messages else {}
    return str(first.get("content", "")) if first.get("role") == "system" else ""


class RowSampler:
    """A ``transformers`` logits processor that samples each row with its own generator.

    ``transformers`` samples a batch from the global RNG, so a row's text would depend on
    the other rows. Here row ``i`` is warped with its own temperature, top-k and top-p (as
    ``transformers``' warpers do) and drawn with its own ``torch.Generator``; every
    score but the drawn token's is set to -inf, so ``generate``'s greedy step takes it.
    A row with temperature 0 takes the argmax. A row draws once per step whatever the
    other rows do, so its draws depend only on its seed.
    """

    def __init__(self, params: Sequence[SamplingParams], seeds: Sequence[int | None], device: Any) -> None:
        import torch

        self.torch = torch
        self.params = list(params)
        self.generators = []
        for seed in seeds:
            generator = torch.Generator(device=device)
            # no seed: one drawn from the global RNG, so torch.manual_seed still reproduces a run
            generator.manual_seed(int(torch.randint(2**31, ())) if seed is None else int(seed))
            self.generators.append(generator)

    def warp(self, row: Any, p: SamplingParams) -> Any:
        """Logits (V,) after temperature, top-k and top-p, in ``transformers``' order; -inf = excluded."""
        torch = self.torch
        row = row / p.temperature
        if 0 < p.top_k < row.numel():
            row = row.masked_fill(row < torch.topk(row, p.top_k).values[-1], float("-inf"))
        if p.top_p < 1.0:  # keep the smallest set of top tokens whose probability reaches top_p
            ordered, order = torch.sort(row, descending=True)
            probs = ordered.softmax(-1)
            drop = probs.cumsum(-1) - probs > p.top_p
            row = row.scatter(0, order[drop], float("-inf"))
        return row

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        torch = self.torch
        chosen = []
        for row, p, generator in zip(scores.float(), self.params, self.generators):  # row: (V,)
            if p.temperature <= 0:
                chosen.append(int(row.argmax()))
            else:
                chosen.append(int(torch.multinomial(self.warp(row, p).softmax(-1), 1, generator=generator)))
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(chosen), device=scores.device), torch.tensor(chosen, device=scores.device)] = 0.0
        return out
