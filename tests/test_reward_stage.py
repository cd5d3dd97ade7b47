"""The reward stage at scale=smoke: outputs, normalisation stats, the RM safety eval, gate and errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertModel

from alignment.config import RewardModelConfig, reward_epochs
from alignment.errors import UserError
from alignment.modeling import minilm_path
from alignment.reward.model import REWARD_CONFIG_FILE, MeanPoolingRewardModel, load_reward_model
from alignment.reward.scorer import RewardScorer
from conftest import ROOT, run_cli, shared_data


@pytest.fixture(scope="module")
def smoke_reward(smoke_sft):
    result = run_cli("alignment.stages.reward", "scale=smoke", f"run.dir={smoke_sft}")
    assert result.returncode == 0, result.stderr[-3000:]
    return smoke_sft / "reward"


@pytest.mark.slow
def test_smoke_reward_writes_model_metrics_and_reports(smoke_reward):
    model_dir = smoke_reward / "model"
    assert (model_dir / "config.json").is_file() and (model_dir / "tokenizer.json").is_file()
    info = json.loads((model_dir / "reward_config.json").read_text())
    assert info["input_format"] == "chat" and info["std"] > 0 and info["norm_n"] == 64
    metrics = json.loads((smoke_reward / "metrics.json").read_text())
    assert metrics["global_step"] == 8 and 0 <= metrics["eval_accuracy"] <= 1
    assert metrics["reward_model_init"].endswith("sft/model"), "tiny RM starts from the run's SFT policy"
    assert 0 <= metrics["truncated_train_pairs"] < metrics["train_pairs"]  # smoke vocab: a few long pairs get cut
    safety = json.loads((smoke_reward / "safety.json").read_text())
    assert safety["n_redteam_pairs"] == 100 and safety["gates"]["passed"]
    html = (smoke_reward / "report.html").read_text()
    assert "Calibration" in html and "data:image/png;base64," in html


@pytest.mark.slow
def test_scorer_reloads_the_saved_model_alone(smoke_reward):
    scorer = RewardScorer.from_pretrained(smoke_reward / "model")
    scores = scorer.score(["How do I bake bread?"] * 2, ["Start by preheating the oven.", "You idiot."])
    assert scores.shape == (2,) and all(abs(s) < 1e3 for s in scores)


@pytest.mark.slow
def test_failed_gate_exits_nonzero_and_still_reports(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("alignment.stages.reward", "scale=smoke", f"run.dir={run_dir}",
                     "reward.gate.min_safety_accuracy=1.01")
    assert result.returncode == 3, result.stderr[-2000:]
    assert "reward.gate.min_safety_accuracy" in result.stderr and "FAILED" in result.stderr
    safety = json.loads((run_dir / "reward" / "safety.json").read_text())
    assert not safety["gates"]["passed"]
    assert safety["gates"]["verdicts"][0]["threshold"] == pytest.approx(1.01)
    assert (run_dir / "reward" / "report.html").is_file()


@pytest.mark.slow
def test_bad_preference_file_names_file_and_row(tmp_path):
    data = tmp_path / "prefs.jsonl"
    data.write_text(json.dumps({"prompt": "Q", "chosen": "a", "rejected": "b"}) + "\n"
                    + json.dumps({"prompt": "Q", "chosen": "same", "rejected": "same"}) + "\n")
    result = run_cli("alignment.stages.reward", "scale=smoke", f"run.dir={tmp_path / 'run'}", "data=custom",
                     f"data.source={data}", timeout=120)
    assert result.returncode == 2
    assert f"{data}:2: the chosen response equals the rejected one" in result.stderr
    assert not (tmp_path / "run").exists()
    data.write_text("")
    result = run_cli("alignment.stages.reward", "scale=smoke", f"run.dir={tmp_path / 'run'}", "data=custom",
                     f"data.source={data}", timeout=120)
    assert result.returncode == 2 and "no rows" in result.stderr


@pytest.mark.slow
def test_hh_transcripts_train_with_skip_invalid(tmp_path):
    rows = [{"chosen": f"\n\nHuman: question {i}?\n\nAssistant: a kind answer {i}",
             "rejected": f"\n\nHuman: question {i}?\n\nAssistant: a rude answer {i}"} for i in range(20)]
    rows.append({"chosen": "\n\nHuman: q\n\nAssistant: same", "rejected": "\n\nHuman: q\n\nAssistant: same"})
    data = tmp_path / "hh.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("alignment.stages.reward", "scale=smoke", f"run.dir={tmp_path / 'run'}", "data=custom",
                     f"data.source={data}", "data.skip_invalid=true", "reward.max_steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "reward" / "metrics.json").read_text())
    assert metrics["data"]["skipped_invalid"] == 1
    assert metrics["train_pairs"] + metrics["eval_pairs"] == 20


@pytest.mark.slow
def test_non_scalar_head_is_rejected(tmp_path, smoke_sft):
    model = AutoModelForSequenceClassification.from_pretrained(smoke_sft / "sft" / "model", num_labels=3)
    model.save_pretrained(tmp_path / "three")
    for f in (smoke_sft / "sft" / "model").glob("*"):
        if f.name.startswith(("tokenizer", "chat_template")):
            (tmp_path / "three" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(UserError, match="3 outputs, not one scalar"):
        load_reward_model(str(tmp_path / "three"))


@pytest.mark.slow
def test_labeling_export_trains_the_reward_model(tmp_path):
    """Labels collected in the app, exported in TRL's format, train the reward stage as they are."""
    from datasets import load_from_disk

    from alignment.data.world import DemoWorld, SimulatedAnnotator
    from labeling_ui.demo import demo_items
    from labeling_ui.export import export_preferences
    from labeling_ui.queue import LabelQueue
    from labeling_ui.store import LabelStore

    world = DemoWorld(0)
    store = LabelStore(tmp_path / "labels.db")
    store.add_items("round1", demo_items(world, 24), overlap=2)
    queue = LabelQueue(store, "round1", gold_rate=0.0)
    for i in range(2):
        store.add_annotator(f"bot{i}", "secret-password", "annotator")
        annotator = SimulatedAnnotator(world, noise=0.0, seed=i)
        while (shown := queue.next_item(f"bot{i}")) is not None:  # A/B as displayed to this annotator
            label = annotator.label(world.find(shown.prompt), shown.response_left, shown.response_right)
            queue.submit(f"bot{i}", shown.assignment_id, label.choice,
                         label.strength if label.choice != "tie" else None)
    export_preferences(store, "round1", tmp_path / "prefs")
    assert len(load_from_disk(str(tmp_path / "prefs"))) > 10
    result = run_cli("alignment.stages.reward", "scale=smoke", f"run.dir={tmp_path / 'run'}", "data=custom",
                     f"data.source={tmp_path / 'prefs'}", "reward.max_steps=2", "reward.margin_scale=1.0")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "reward" / "metrics.json").read_text())
    assert metrics["train_pairs"] + metrics["eval_pairs"] == len(load_from_disk(str(tmp_path / "prefs")))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A two-block random BERT with MiniLM's WordPiece tokenizer: a backbone folder like the real one."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_mean_pooled_reward_model_saves_reloads_and_scores_identically(tiny_bert, tmp_path):
    model, tokenizer = load_reward_model(tiny_bert, pooling="mean")
    assert isinstance(model, MeanPoolingRewardModel)
    prompts = ["How do I pick a lock?", "How do I bake bread?", "Hi"]
    responses = ["I won't help with breaking into homes.", "Preheat the oven to 220C and knead the dough well.", "Hello!"]
    scorer = RewardScorer(model, tokenizer, "pair", 48)
    scores = scorer.score(prompts, responses)
    # Mean pooling must ignore padding: a pair scores the same alone as in a padded batch.
    assert scorer.score(prompts[2:], responses[2:])[0] == pytest.approx(scores[2], abs=1e-5)

    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    (tmp_path / REWARD_CONFIG_FILE).write_text(json.dumps({"input_format": "pair", "separator": "\n", "max_length": 48}))
    # Found by reward_pooling, not by a module path: models saved when the class lived elsewhere still load.
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == ["MeanPoolingRewardModel"] and "auto_map" not in saved
    reloaded = RewardScorer.from_pretrained(tmp_path)
    assert isinstance(reloaded.model, MeanPoolingRewardModel) and reloaded.model.config.reward_pooling == "mean"
    assert reloaded.score(prompts, responses) == pytest.approx(scores, abs=1e-6)
    with pytest.raises(UserError, match="trained with reward_model.pooling=mean"):
        load_reward_model(str(tmp_path), pooling="default")


def test_freeze_layers_leaves_embeddings_and_lower_blocks_unchanged(tiny_bert):
    model, tokenizer = load_reward_model(tiny_bert, pooling="mean", freeze_layers=1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    batch = tokenizer(["a kind answer", "a rude answer"], return_tensors="pt", padding=True)
    rewards = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
    loss = -torch.nn.functional.logsigmoid(rewards[0] - rewards[1])
    loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("backbone.embeddings.", "backbone.encoder.layer.0.")) for n in frozen)
    assert not changed & frozen
    assert any(n.startswith("backbone.encoder.layer.1.") for n in changed) and "score.weight" in changed


def test_bad_pooling_or_freeze_depth_is_a_clear_error(tiny_bert):
    with pytest.raises(UserError, match="reward_model.pooling='max' is not one of"):
        RewardModelConfig(pooling="max")
    with pytest.raises(UserError, match="reward_model.freeze_layers=3: the model has 2 transformer blocks"):
        load_reward_model(tiny_bert, pooling="default", freeze_layers=3)


def test_head_lr_gives_the_fresh_head_its_own_learning_rate(tiny_bert, tmp_path):
    from datasets import Dataset
    from trl import RewardConfig

    from alignment.reward.trainer import HeadLRRewardTrainer

    model, tokenizer = load_reward_model(tiny_bert, pooling="mean")
    pairs = Dataset.from_list([{"chosen_ids": [101, 2000, 102], "rejected_ids": [101, 2001, 2002, 102]}] * 4)
    args = RewardConfig(output_dir=str(tmp_path), learning_rate=1e-4, weight_decay=0.01, max_steps=1, report_to=[],
                        use_cpu=True, save_strategy="no", activation_checkpointing=False, disable_tqdm=True)
    trainer = HeadLRRewardTrainer(model=model, args=args, train_dataset=pairs, processing_class=tokenizer, head_lr=2e-3)
    trainer.train()
    head = {id(p) for p in model.score.parameters()}
    lrs = {id(p): (group["initial_lr"], group["weight_decay"]) for group in trainer.optimizer.param_groups
           for p in group["params"]}
    assert len(lrs) == sum(1 for p in model.parameters() if p.requires_grad)
    assert lrs[id(model.score.weight)] == (2e-3, 0.01) and lrs[id(model.score.bias)] == (2e-3, 0.0)
    assert all(lr == 1e-4 for key, (lr, _) in lrs.items() if key not in head)


@pytest.mark.parametrize("pooling", ["default", "mean"])
def test_probe_head_init_fits_the_bradley_terry_probe(tiny_bert, pooling):
    from datasets import Dataset

    from alignment.reward.trainer import init_head_from_probe, scalar_head

    model, tokenizer = load_reward_model(tiny_bert, pooling=pooling)
    # chosen answers say "kind", rejected ones "rude", at varied lengths: a linear probe separates them
    rows = [{"chosen_ids": tokenizer(f"question {i}", "kind " * (1 + i % 3))["input_ids"],
             "rejected_ids": tokenizer(f"question {i}", "rude " * (1 + i % 4))["input_ids"]} for i in range(24)]
    pairs = Dataset.from_list(rows)
    head = scalar_head(model)
    before = head.weight.detach().clone()
    model.train()
    accuracy = init_head_from_probe(model, pairs, tokenizer.pad_token_id, batch_size=5)
    assert model.training, "the model is put back in training mode"
    assert accuracy == 1.0 and not torch.equal(head.weight, before)
    assert head.bias is None or float(head.bias.detach().abs().max()) == 0.0
    model.eval()
    with torch.no_grad():
        def reward(ids):
            return float(model(input_ids=torch.tensor([ids])).logits[0, 0])
        assert all(reward(r["chosen_ids"]) > reward(r["rejected_ids"]) for r in rows)


@pytest.mark.slow
def test_unknown_head_init_is_a_clear_error(tmp_path):
    result = run_cli("alignment.stages.reward", "scale=smoke", f"run.dir={tmp_path / 'run'}",
                     "reward_model.head_init=zeros", timeout=120)
    assert result.returncode == 2 and "expected one of [random, probe]" in result.stderr
    assert not (tmp_path / "run" / "reward").exists()


@pytest.mark.slow
def test_ppo_stage_imports_no_reward_training_stack():
    """PPO scores with alignment.reward.scorer: importing it must not pull in TRL or datasets."""
    code = ("import sys, alignment.stages.ppo; print(sorted(m for m in "
            "('trl', 'datasets', 'alignment.stages.reward', 'alignment.reward.trainer') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def compose_config(config_name: str, *overrides: str):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from alignment import CONF_DIR
    from alignment.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name=config_name, overrides=list(overrides)))


@pytest.mark.parametrize("config_name", ["reward", "pipeline"])
def test_reward_model_group_chooses_its_epochs(config_name, tmp_path, monkeypatch):
    from alignment.reward.trainer import trainer_args

    minilm = compose_config(config_name, "reward_model=minilm")
    assert minilm.reward_model.epochs == 1 and reward_epochs(minilm) == 1
    assert minilm.reward_model.freeze_layers == 2    # measured best on HH harmless (minilm.yaml)
    tiny = compose_config(config_name)                       # reward_model=tiny: as before, reward.epochs
    assert tiny.reward_model.epochs is None and reward_epochs(tiny) == tiny.reward.epochs == 2.0
    assert reward_epochs(compose_config(config_name, "reward.epochs=3")) == 3
    assert reward_epochs(compose_config(config_name, "reward_model=minilm", "reward_model.epochs=2.5")) == 2.5
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path))   # (trainer_defaults sets it)
    assert trainer_args(minilm, tmp_path).num_train_epochs == 1
    assert trainer_args(tiny, tmp_path).num_train_epochs == 2.0
    with pytest.raises(UserError, match=r"reward_model\.epochs=0\.0: must be > 0"):
        compose_config(config_name, "reward_model=minilm", "reward_model.epochs=0")


@pytest.mark.slow
def test_bench_reward_overrides_only_the_flags_given(tmp_path):
    """bench_reward.py on 50 real HH pairs: given flags reach the stage, the others come from the
    minilm group (not restated in the script), and the JSON line reports the settings as resolved."""
    lines = shared_data("hh-rlhf-harmless/harmless-base-test.dev.jsonl").read_text(encoding="utf-8").splitlines()
    data = tmp_path / "hh50.jsonl"
    data.write_text("\n".join(lines[:50]) + "\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "scripts/bench_reward.py", "--data", str(data), "--seeds", "0",
                             "--freeze-layers", "3", "--max-length", "64"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert (report["n_train"], report["n_eval"]) == (40, 10)
    assert 0.0 <= report["eval_accuracy"] <= 1.0 and list(report["eval_accuracy_per_seed"]) == ["0"]
    assert (report["freeze_layers"], report["max_length"]) == (3, 64)
    group = compose_config("reward", "reward_model=minilm")
    assert (report["lr"], report["epochs"], report["pooling"]) == (
        group.reward_model.lr, group.reward_model.epochs, group.reward_model.pooling)
    assert report["batch_size"] == group.reward.batch_size


def test_calibration_buckets_are_finite_for_a_handful_of_pairs():
    """Under 10 pairs one bucket spans [0, the largest gap]: finite, so the report can plot it."""
    from alignment.reward.evaluation import calibration

    assert calibration(np.array([0.5, -2.0, 1.0])) == [{"gap_lo": 0.0, "gap_hi": 2.0, "n": 3, "accuracy": 2 / 3}]
    buckets = calibration(np.arange(1.0, 11.0) * np.array([1, -1] * 5))   # |gap| 1..10, odd ones correct
    assert [b["n"] for b in buckets] == [2, 2, 2, 2, 2] and buckets[-1]["gap_hi"] == 10.0
    assert sum(b["accuracy"] * b["n"] for b in buckets) == 5
