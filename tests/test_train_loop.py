"""The training loop: it fits, it resumes exactly, frozen stays frozen, stage-wise recipes train what they say."""

import csv
import dataclasses
import json
import os

import pytest
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file
from transformers import Qwen3Config, Qwen3ForCausalLM

from alarm.chat import IGNORE_INDEX, build_example, collate
from alarm.modeling.model import FROZEN_PREFIXES
from alarm.modeling.tokenizer import load_tokenizer
from alarm.presets import build_model, load_preset
from alarm.training.cache import extract_features
from alarm.training.checkpoint import latest_checkpoint
from alarm.training.config import TrainConfig
from alarm.training.data import ChatFormat, Collator, TrainingDataset, load_corpus
from alarm.training.synthetic import PITCHES, PROMPT, make_tone_corpus, tone_target
from alarm.training.trainer import Trainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    make_tone_corpus(root, 32, num_validation=4, durations=(0.5, 1.0))
    return str(root)


def _config(root: str, output, **overrides) -> TrainConfig:
    settings = dict(
        corpus=os.path.join(root, "corpus.jsonl"),
        audio_root=root,
        output=str(output),
        num_workers=0,
        log_every=1,
        eval_every=10**6,
        save_every=0,
        progress=False,
        report_to=(),
        target_tokens=None,  # synthetic targets are a sentence, under the official 100-token floor
    )
    return TrainConfig(**{**settings, **overrides})


def _frozen_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if k.startswith(FROZEN_PREFIXES)}


# -- overfitting -----------------------------------------------------------------------------


def _taught_preset(directory) -> str:
    """A tiny SSLAM preset whose frozen RLM has learnt to answer from the text surrogate.

    A random RLM cannot be steered: its logits are bounded by its 0.02-scale embeddings, so
    no input moves its loss far from ln(vocab). This one was first taught (text only) to
    answer the pitch question from a metadata sentence, as the paper's RLM answers from
    A_text; training the audio path must then replace the metadata with the tone.
    """
    preset = load_preset("tiny-al-sslam-r")
    set_seed(0)
    rlm = Qwen3ForCausalLM(Qwen3Config(**preset.pop("text_config")))
    tokenizer = load_tokenizer("tiny")
    examples = [build_example(tokenizer, [f"A pure {n} tone.\n", PROMPT], target=tone_target(n), eos=True)
                for n in PITCHES]  # fmt: skip
    batch = collate(examples, tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(rlm.parameters(), lr=1e-2)
    for _ in range(150):
        rlm(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    rlm.save_pretrained(os.path.join(directory, "rlm"))
    preset.update(text_model=os.path.join(directory, "rlm"), preset="tiny-taught-sslam")
    path = os.path.join(directory, "taught.json")
    with open(path, "w") as f:
        json.dump(preset, f)
    return path


@torch.no_grad()
def _pitch_accuracy(model, root: str) -> float:
    """Share of training tones for which the model finds its own pitch's answer the most likely."""
    records = load_corpus(os.path.join(root, "corpus.jsonl"), "train")
    fmt = ChatFormat.from_model(model, system="", eos=True)  # as trained below
    losses = []
    for name in PITCHES:
        rows = [dataclasses.replace(r, response=tone_target(name)) for r in records]
        dataset = TrainingDataset(rows, fmt, audio_root=root, max_seq_len=4096, max_audio_seconds=60)
        batch = Collator(fmt.pad_token_id)([dataset[i] for i in range(len(rows))])
        logits = model.eval()(batch.input_ids, batch.attention_mask, audio=batch.audio).logits
        ce = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), batch.labels[:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
        )
        losses.append(ce.sum(1))
    chosen = torch.stack(losses).argmin(0)
    truth = torch.tensor([[tone_target(n) for n in PITCHES].index(r.response) for r in records])
    return float((chosen == truth).float().mean())


def test_overfitting_32_tones_cuts_the_loss_by_80_percent_and_learns_to_listen(tones, tmp_path):
    preset = _taught_preset(tmp_path)
    extract_features(build_model(preset), load_corpus(tones, "train"), audio_root=tones, out=tmp_path / "cache",
                     num_workers=0, progress=False)  # fmt: skip
    config = _config(
        tones,
        tmp_path / "run",
        preset=preset,
        features=str(tmp_path / "cache"),
        system_prompt="",
        train_eos=True,  # calibrated with the end-of-turn token trained (the demo's setting)
        learning_rate=1e-2,
        warmup_steps=10,
        max_steps=150,
        effective_batch_size=8,
        micro_batch_size=8,
        val_split="",
    )
    records = []
    trainer = Trainer(config, callbacks=[records.append])
    listener = build_model(preset)  # the trainer's model has no encoder networks (cache): listen with this one
    listener.load_state_dict(trainer.unwrapped.trainable_state_dict(), strict=False)
    before = _pitch_accuracy(listener, tones)
    trainer.run()
    first, last = records[0].loss, sum(r.loss for r in records[-5:]) / 5
    assert last <= 0.2 * first, f"loss {first:.3f} -> {last:.3f}"
    listener.load_state_dict(trainer.unwrapped.trainable_state_dict(), strict=False)
    after = _pitch_accuracy(listener, tones)
    assert after >= 0.9 > before, f"pitch chosen right {before:.0%} before, {after:.0%} after"


def test_frozen_parts_in_bfloat16_train_stay_bit_identical_and_save_fp32_weights(tones, tmp_path):
    """CPU, no autocast: the RLM and the encoder run in bf16, the audio path and AdamW in fp32."""
    preset = _taught_preset(tmp_path)
    config = _config(
        tones,
        tmp_path / "run",
        preset=preset,
        frozen_dtype="bfloat16",
        system_prompt="",
        train_eos=True,  # calibrated with the end-of-turn token trained (the demo's setting)
        learning_rate=1e-2,
        warmup_steps=5,
        max_steps=20,
        effective_batch_size=8,
        micro_batch_size=8,
        val_split="",
    )
    records = []
    trainer = Trainer(config, callbacks=[records.append])
    model = trainer.unwrapped
    frozen = _frozen_state(model)
    assert {k.split(".")[0] for k in frozen} == {"language_model", "encoders"}  # online: the encoder is there
    assert {v.dtype for v in frozen.values() if v.is_floating_point()} == {torch.bfloat16}
    rotary = [b for name, b in model.named_buffers() if name.endswith("inv_freq")]  # not in the state dict
    assert rotary and {b.dtype for b in rotary} == {torch.float32}  # positions stay exact
    assert {p.dtype for p in trainer.trainable} == {torch.float32}
    trainer.run()

    first, last = records[0].loss, sum(r.loss for r in records[-5:]) / 5
    assert last <= 0.5 * first, f"loss {first:.3f} -> {last:.3f}"  # measured 0.90 -> 0.27
    moments = [v for state in trainer.optimizer.state.values() for v in state.values() if v.dim() > 0]
    assert moments and {v.dtype for v in moments} == {torch.float32}
    for key, value in _frozen_state(model).items():
        assert value.dtype == frozen[key].dtype and torch.equal(value, frozen[key]), key
    saved = load_file(tmp_path / "run/final/model.safetensors")
    assert saved.keys() == model.trainable_state_dict().keys()  # trainable only
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {torch.float32}
    rebuilt = build_model(str(tmp_path / "run/final"))  # loads like any saved model (frozen parts in fp32)
    for key, value in rebuilt.trainable_state_dict().items():
        assert torch.equal(value, model.trainable_state_dict()[key]), key


# -- resume ----------------------------------------------------------------------------------

CA = "tiny-alarm-ca"  # dropout in the fusion (RNG state matters) and BatchNorm in the Whisper branch


@pytest.fixture(scope="module")
def ca_cache(tones, tmp_path_factory):
    out = tmp_path_factory.mktemp("ca-cache")
    records = load_corpus(tones, "train")[:16] + load_corpus(tones, "validation")[:2]
    extract_features(build_model(CA), records, audio_root=tones, out=out, num_workers=0, progress=False)
    corpus = out / "corpus.jsonl"
    from alarm.corpus.schema import write_jsonl

    write_jsonl(records, corpus)
    return str(out), str(corpus)


class Interrupted(Exception):
    pass


def _kill_at(step: int):
    def callback(record) -> None:
        if record.step == step:
            raise Interrupted

    return callback


def _csv(path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_kill_and_resume_repeats_the_uninterrupted_run(tones, ca_cache, tmp_path):
    """20 steps straight == 10 steps, a kill at step 12, resume from the step-10 checkpoint.

    Tolerance: losses within 1e-6 absolute and final weights within 1e-7 (CPU runs are
    bit-identical; the tolerance only allows for a different BLAS on another machine).
    """
    cache, corpus = ca_cache
    common = dict(
        preset=CA,
        corpus=corpus,
        features=cache,
        max_steps=20,  # 4 steps per epoch: the resume lands mid-epoch (epoch 2, step 2)
        effective_batch_size=4,
        micro_batch_size=2,  # 2 micro-batches accumulated per step
        warmup_steps=3,
        learning_rate=3e-3,
        save_every=5,
        eval_every=10,
        val_batches=0,
        num_samples=1,
        sample_max_new_tokens=6,
        sample_thinking_budget=3,
    )
    straight = []
    trainer = Trainer(_config(tones, tmp_path / "a", **common), callbacks=[straight.append])
    fresh_frozen = _frozen_state(trainer.unwrapped)
    trainer.run()

    first = []
    with pytest.raises(Interrupted):
        Trainer(_config(tones, tmp_path / "b", **common), callbacks=[first.append, _kill_at(12)]).run()
    assert latest_checkpoint(str(tmp_path / "b")).endswith("step-0000010")
    rest = []
    Trainer(_config(tones, tmp_path / "b", **common), resume=True, callbacks=[rest.append]).run()

    assert [r.step for r in rest] == list(range(11, 21))
    resumed = [r.loss for r in first[:10] + rest]
    assert resumed == pytest.approx([r.loss for r in straight], abs=1e-6)
    assert [r.grad_norm for r in first[:10] + rest] == pytest.approx([r.grad_norm for r in straight], abs=1e-6)
    a, b = load_file(tmp_path / "a/final/model.safetensors"), load_file(tmp_path / "b/final/model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-7)
    # nothing lost or duplicated in the run's records
    rows_a, rows_b = _csv(tmp_path / "a/metrics.csv"), _csv(tmp_path / "b/metrics.csv")
    assert [int(r["step"]) for r in rows_b] == list(range(1, 21))
    assert [r["loss"] for r in rows_b] == [r["loss"] for r in rows_a]
    assert rows_b[-1]["val_loss"] == rows_a[-1]["val_loss"] != ""
    samples = [json.loads(line)["step"] for line in open(tmp_path / "b/samples.jsonl")]
    assert samples == [10, 20]
    # frozen parameters are bit-identical after training
    for key, value in _frozen_state(trainer.unwrapped).items():
        assert torch.equal(value, fresh_frozen[key]), key
    assert sorted(os.listdir(tmp_path / "a/checkpoints")) == ["step-0000010", "step-0000015", "step-0000020"]
    mid = load_file(tmp_path / "a/checkpoints/step-0000010/model.safetensors")
    assert any(not torch.equal(a[k], mid[k]) for k in a)  # it did train
    with pytest.raises(ValueError, match="learning_rate"):
        Trainer(_config(tones, tmp_path / "b", **{**common, "learning_rate": 1.0}), resume=True)


def _scripted_validation(trainer: Trainer, losses: dict[int, float]) -> None:
    """Make the validation loss at each evaluated step the scripted one (the loop's choice is under test)."""
    trainer.evaluate = lambda: losses[trainer.state.step]


def test_best_final_weights_survive_pruning_and_resume(tones, ca_cache, tmp_path):
    cache, corpus = ca_cache
    common = dict(preset=CA, corpus=corpus, features=cache, max_steps=20, effective_batch_size=4,
                  micro_batch_size=2, warmup_steps=3, learning_rate=3e-3, save_every=5, eval_every=5,
                  keep_checkpoints=1, num_samples=0, final_weights="best")  # fmt: skip
    losses = {5: 3.0, 10: 1.0, 15: 2.0, 20: 2.5}  # best at step 10, which pruning would otherwise delete

    trainer = Trainer(_config(tones, tmp_path / "a", **common))
    _scripted_validation(trainer, losses)
    result = trainer.run()
    assert (result.final_step, result.best_val_loss, result.steps) == (10, 1.0, 20)
    assert sorted(os.listdir(tmp_path / "a/checkpoints")) == ["step-0000010", "step-0000020"]
    final = load_file(tmp_path / "a/final/model.safetensors")
    best = load_file(tmp_path / "a/checkpoints/step-0000010/model.safetensors")
    last = load_file(tmp_path / "a/checkpoints/step-0000020/model.safetensors")
    assert all(torch.equal(final[k], best[k]) for k in final)
    assert any(not torch.equal(final[k], last[k]) for k in final)

    # killed after the best step: the resumed run still knows it (the checkpoint's state carries it)
    with pytest.raises(Interrupted):
        killed = Trainer(_config(tones, tmp_path / "b", **common), callbacks=[_kill_at(17)])
        _scripted_validation(killed, losses)
        killed.run()
    resumed = Trainer(_config(tones, tmp_path / "b", **common), resume=True)
    _scripted_validation(resumed, losses)
    assert resumed.run().final_step == 10
    again = load_file(tmp_path / "b/final/model.safetensors")
    assert all(torch.equal(again[k], final[k]) for k in final)

    plain = Trainer(_config(tones, tmp_path / "c", **{**common, "final_weights": "last"}))
    _scripted_validation(plain, losses)
    assert plain.run().final_step == 20
    assert sorted(os.listdir(tmp_path / "c/checkpoints")) == ["step-0000020"]


# -- stage-wise recipe -----------------------------------------------------------------------


def _single_encoder_checkpoint(preset: str, directory) -> dict[str, torch.Tensor]:
    """A stand-in for a trained single-encoder model: its branch moved away from the init."""
    model = build_model(preset)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("branches."):
                param.add_(torch.randn_like(param) * 0.1)
    model.save_pretrained(directory)
    return model.trainable_state_dict()


@pytest.mark.parametrize("frozen_batchnorm", ["train", "eval"])
def test_fusion_stage_starts_from_single_encoder_branches_and_trains_only_the_fusion(
    tones, ca_cache, tmp_path, frozen_batchnorm
):
    """The documented CA recipe: the fusion and the boundaries train, the branches stay frozen.

    ``frozen_batchnorm`` ``train`` (the official code's default) moves the frozen Whisper
    adapter's BatchNorm running statistics, never its weights; ``eval`` keeps them bit-identical.
    """
    cache, corpus = ca_cache
    whisper = _single_encoder_checkpoint("tiny-al-whisper-r", tmp_path / "whisper")
    sslam = _single_encoder_checkpoint("tiny-al-sslam-r", tmp_path / "sslam")
    config = _config(
        tones,
        tmp_path / "ca",
        preset=CA,
        corpus=corpus,
        features=cache,
        init_branches={"whisper": str(tmp_path / "whisper"), "sslam": str(tmp_path / "sslam")},
        train_modules=("fusion", "audio_boundaries"),
        frozen_batchnorm=frozen_batchnorm,
        max_steps=3,
        effective_batch_size=4,
        micro_batch_size=4,
        warmup_steps=1,
        learning_rate=1e-2,
        val_split="",
    )
    set_seed(config.seed)
    initial = build_model(CA).trainable_state_dict()  # what the trainer builds before loading anything
    trainer = Trainer(config)
    trainer.run()
    after = trainer.unwrapped.state_dict()
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    for key, value in after.items():
        if key.startswith("branches.whisper."):
            moves = frozen_batchnorm == "train" and key.endswith(statistics)
            assert torch.equal(value, whisper[key]) != moves, key
        elif key.startswith("branches.sslam."):
            assert torch.equal(value, sslam[key]), key
        elif key.startswith("branches."):
            assert torch.equal(value, initial[key]), key
    changed = [k for k in initial if k.startswith("fusion.") and not torch.equal(after[k], initial[k])]
    assert len(changed) > 10
    assert not torch.equal(after["audio_boundaries"], initial["audio_boundaries"])  # trainable, as officially
    saved = build_model(str(tmp_path / "ca" / "final"))  # a complete model: every trainable tensor saved
    for key, value in saved.trainable_state_dict().items():
        assert torch.equal(value, after[key]), key


def test_recipe_errors_name_the_problem(tones, ca_cache, tmp_path):
    cache, corpus = ca_cache
    base = dict(preset=CA, corpus=corpus, features=cache, max_steps=1, effective_batch_size=4, micro_batch_size=4)
    with pytest.raises(ValueError, match=r"train_modules \['fusoin'\] match no trainable parameter"):
        Trainer(_config(tones, tmp_path / "x", **base, train_modules=("fusoin",)))
    with pytest.raises(ValueError, match="init_branches names 'clap'"):
        Trainer(_config(tones, tmp_path / "y", **base, init_branches={"clap": str(tmp_path)}))


# -- loss on target positions only ------------------------------------------------------------


def _uneven_batch(tones, system):
    """A tiny model and a batch of 3 rows whose targets differ in length (their spans sit at other positions)."""
    set_seed(0)
    model = build_model("tiny-al-sslam-r")
    fmt = ChatFormat.from_model(model, system=system)
    records = load_corpus(os.path.join(tones, "corpus.jsonl"), "train")[:3]
    records = [dataclasses.replace(r, response="x" * (3 + 9 * i)) for i, r in enumerate(records)]
    dataset = TrainingDataset(records, fmt, audio_root=tones, max_seq_len=4096, max_audio_seconds=60)
    return model, Collator(fmt.pad_token_id)([dataset[i] for i in range(len(records))])


def test_loss_on_target_positions_equals_the_full_logit_loss_with_uneven_rows(tones):
    """The loss asks the RLM for target positions only; it must match CE over every logit."""
    from alarm.training.recipe import target_positions, token_loss_sum

    model, batch = _uneven_batch(tones, system="")
    with torch.no_grad():
        logits = model(batch.input_ids, batch.attention_mask, audio=batch.audio).logits
        full = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1), batch.labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        kept = token_loss_sum(model, batch)
    positions = target_positions(batch.labels)
    assert 0 < len(positions) < batch.input_ids.shape[1] - 1
    assert torch.allclose(kept, full, rtol=1e-5)


def test_the_shared_prefix_runs_once_with_the_same_loss_and_gradients(tones):
    """A system prompt every row shares runs once without gradient; loss and gradients do not change."""
    from alarm.training.recipe import MIN_SHARED_PREFIX, _prefix_start, shared_prefix_length, token_loss_sum

    model, batch = _uneven_batch(tones, system="You are a careful listener. Answer in one short sentence, please.")
    start = shared_prefix_length(batch, model.audio_token_id)
    first_audio = int((batch.input_ids == model.audio_token_id).int().argmax(1).min())
    assert MIN_SHARED_PREFIX <= start <= first_audio  # the system prompt, up to the audio
    params = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads(prefix_cache):
        model.zero_grad(set_to_none=True)
        loss = token_loss_sum(model, batch, prefix_cache=prefix_cache)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in params]

    full, full_grads = loss_and_grads(False)
    cached, cached_grads = loss_and_grads(True)
    assert torch.allclose(cached, full, rtol=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(cached_grads, full_grads))
    assert any(float(g.abs().sum()) > 0 for g in cached_grads)
    with torch.no_grad():  # the rows are the tensors' rows, not the ids (a benchmark builds batches without ids)
        assert torch.allclose(token_loss_sum(model, dataclasses.replace(batch, ids=[])), full, rtol=1e-5)
    assert _prefix_start(model, batch) == start
    model.language_model.get_input_embeddings().weight.requires_grad_(True)  # an RLM that trains: no shortcut
    assert _prefix_start(model, batch) == 0
    # rows that differ from the first token on share nothing: the plain path
    other = dataclasses.replace(batch, input_ids=batch.input_ids.clone())
    other.input_ids[1, 0] = (int(other.input_ids[0, 0]) + 1) % 50
    assert shared_prefix_length(other, model.audio_token_id) == 0
