"""Forward time per second of audio, broken down by stage, for a tiny and a mid-size ALARM-CA.

Stages: each frozen encoder, branches (layer average + adapters + projections),
fusion (cross-attention), RLM (frozen, prefill of the spliced prompt). Each row reports
milliseconds per second of audio, the stage's share of the total, and the whole forward as
x real time, all measured in the same run on the same machine. Run:

    python benchmarks/forward_stages.py                # tiny and mid, 10 s of audio, best of 3
    python benchmarks/forward_stages.py --seconds 30 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from alarm.audio import load_audio
from alarm.chat import build_example, collate
from alarm.modeling.configuration import AlarmConfig
from alarm.modeling.inputs import AudioBatch
from alarm.modeling.model import AlarmForConditionalGeneration, count_parameters
from alarm.presets import load_preset

# A mid-size twin: ~10x the tiny widths, between the tiny preset and the paper sizes.
MID = {
    "text_config": {
        "hidden_size": 512,
        "intermediate_size": 1536,
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 64,
    },
    "whisper": {"d_model": 384, "encoder_layers": 8, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536},
    "w2vbert": {
        "hidden_size": 256,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
        "output_hidden_size": 256,
    },
    "muq": {
        "conv_dim": 64,
        "hidden_size": 256,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
    },
    "sslam": {"embed_dim": 256, "depth": 6, "num_heads": 4, "mlp_ratio": 4.0},
    "branch_dim": 256,
    "fusion": {"hidden_size": 256, "ffn_size": 1024, "num_heads": 4},
}


def mid_config() -> AlarmConfig:
    data = copy.deepcopy(load_preset("tiny-alarm-ca"))
    data["preset"] = "mid-alarm-ca (benchmark only)"
    data["text_config"].update(MID["text_config"])
    for spec in data["encoders"]:
        spec["config"].update(MID[spec["kind"]])
        n = spec["config"].get("encoder_layers") or spec["config"].get("num_hidden_layers") or spec["config"]["depth"]
        spec["layers"] = sorted({max(1, round(n * (i + 1) / len(spec["layers"]))) for i in range(len(spec["layers"]))})
    for branch in data["branches"].values():
        branch["dim"] = MID["branch_dim"]
    data["fusion"].update(MID["fusion"])
    return AlarmConfig.from_preset_dict(data)


@torch.no_grad()
def time_stages(model: AlarmForConditionalGeneration, audio: AudioBatch, input_ids: torch.Tensor) -> dict[str, float]:
    times: dict[str, float] = {}
    hidden = {}
    for kind, enc in model.encoders.items():
        start = time.perf_counter()
        hidden[kind] = enc.encode(*audio.at(enc.sample_rate))
        times[f"encoder: {kind}"] = time.perf_counter() - start
    t1 = time.perf_counter()
    streams = {k: model.branches[k](h, n) for k, (h, n) in hidden.items()}
    t2 = time.perf_counter()
    fused, lengths = model.fusion(streams)
    t3 = time.perf_counter()
    embeds = model.embed_inputs(input_ids, audio)  # re-encodes; only its RLM part is timed below
    t4 = time.perf_counter()
    model.language_model(inputs_embeds=embeds)
    t5 = time.perf_counter()
    times.update(branches=t2 - t1, fusion=t3 - t2, rlm=t5 - t4)
    return times


def run(name: str, config: AlarmConfig, seconds: float, repeats: int) -> list[str]:
    model = AlarmForConditionalGeneration(config).eval()
    samples = (0.1 * np.random.default_rng(0).standard_normal(int(seconds * 16000))).astype(np.float32)
    audio = AudioBatch.from_waveforms([load_audio(samples, sample_rate=16000)], model.sample_rates)
    (slot,) = model.audio_slots(audio.lengths)[0]
    example = build_example(model.tokenizer, model.user_parts("Describe the audio in detail.", [slot]), system="S")
    input_ids = collate([example], model.tokenizer.pad_token_id).input_ids
    time_stages(model, audio, input_ids)  # warm-up
    best: dict[str, float] = {}
    for _ in range(repeats):
        for stage, t in time_stages(model, audio, input_ids).items():
            best[stage] = min(best.get(stage, float("inf")), t)
    total = sum(best.values())
    params = count_parameters(model)
    rows = [f"| {name} | {stage} | {1000 * t / seconds:.1f} | {t / total:.1%} |" for stage, t in best.items()]
    rows.append(
        f"| {name} | **total** ({seconds / total:.1f}x real time; {params['frozen'] / 1e6:.1f} M frozen, "
        f"{params['trainable'] / 1e6:.2f} M trainable) | {1000 * total / seconds:.1f} | 100% |"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.seconds} s of audio, best of {args.repeats}\n")
    print("| config | stage | ms per audio second | share |\n|---|---|---:|---:|")
    for name, config in (
        ("tiny-alarm-ca", AlarmConfig.from_preset_dict(load_preset("tiny-alarm-ca"))),
        ("mid-alarm-ca", mid_config()),
    ):
        print("\n".join(run(name, config, args.seconds, args.repeats)))


if __name__ == "__main__":
    main()
